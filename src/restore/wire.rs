//! The byte level of the IMAP client: a connection that never waits past
//! a deadline, never reads more than it was told it may, and stops at
//! once when its job is stopped.
//!
//! - Every command gets a deadline ([`Conn::arm`]); a read or write still
//!   waiting then fails with [`ImapError::Timeout`], whatever the server
//!   trickles in meanwhile.
//! - A line may be at most [`MAX_LINE`] bytes, a literal at most
//!   [`MAX_LITERAL`]; literals are read as their bytes arrive (a size
//!   announced is never allocated up front), and all the responses to one
//!   command together at most [`MAX_RESPONSE`].
//! - The socket is registered with the job's [`Cancel`].

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::restore::cancel::Cancel;

/// The longest response line (without literals).
pub const MAX_LINE: usize = 1 << 20;
/// The largest literal accepted from a server.
pub const MAX_LITERAL: usize = 128 << 20;
/// The most bytes of responses accepted for one command.
pub const MAX_RESPONSE: usize = 160 << 20;

/// Why talking to the server failed.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// A tagged NO or BAD: the server's words.
    #[error("the server said: {0}")]
    Refused(String),
    #[error("timed out: no answer from the server within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error("the connection was lost: {0}")]
    Lost(String),
    #[error("the server broke the protocol: {0}")]
    Protocol(String),
    #[error("stopped")]
    Stopped,
}

impl ImapError {
    /// Whether a new connection may do better (not a refusal).
    pub fn is_connection_problem(&self) -> bool {
        !matches!(self, ImapError::Refused(_) | ImapError::Stopped)
    }
}

/// Whether an error (or one of its causes) is a connection problem.
pub fn is_connection_problem(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<ImapError>()
            .is_some_and(ImapError::is_connection_problem)
    })
}

/// Whether an error (or one of its causes) is the server breaking the
/// protocol: talking to it again would not help.
pub fn is_protocol_error(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref::<ImapError>(), Some(ImapError::Protocol(_))))
}

/// Whether an error (or one of its causes) is a stop.
pub fn is_stopped(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|c| matches!(c.downcast_ref::<ImapError>(), Some(ImapError::Stopped)))
}

pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

pub struct Conn {
    stream: Stream,
    /// The socket below the stream: timeouts are set on it.
    tcp: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    deadline: Instant,
    timeout: Duration,
    /// Response bytes still allowed for the current command.
    budget: usize,
    cancel: Arc<Cancel>,
}

/// Open a TCP connection within `timeout`, registered with `cancel`.
pub fn connect(
    host: &str,
    port: u16,
    timeout: Duration,
    cancel: &Arc<Cancel>,
) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address");
    for addr in (host, port).to_socket_addrs()? {
        if cancel.is_cancelled() {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "stopped"));
        }
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                cancel.register(&s);
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Conn {
    pub fn new(tcp: TcpStream, timeout: Duration, cancel: Arc<Cancel>) -> io::Result<Conn> {
        let under = tcp.try_clone()?;
        Ok(Conn {
            stream: Stream::Plain(tcp),
            tcp: under,
            buf: Vec::new(),
            pos: 0,
            deadline: Instant::now() + timeout,
            timeout,
            budget: MAX_RESPONSE,
            cancel,
        })
    }

    /// Start a command: its deadline is the timeout from now, plus `extra`
    /// (time to send a large message).
    pub fn arm(&mut self, extra: Duration) {
        self.deadline = Instant::now() + self.timeout + extra;
        self.budget = MAX_RESPONSE;
    }

    /// Bytes received but not consumed (must be none before STARTTLS).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Put TLS on the connection (implicit TLS or after STARTTLS).
    pub fn wrap_tls(
        &mut self,
        wrap: impl FnOnce(
            TcpStream,
        )
            -> anyhow::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>,
    ) -> anyhow::Result<()> {
        let Stream::Plain(tcp) = &self.stream else {
            anyhow::bail!("TLS on a TLS connection");
        };
        let tcp = tcp.try_clone()?;
        self.set_timeouts()?;
        self.stream = Stream::Tls(Box::new(wrap(tcp)?));
        Ok(())
    }

    fn remaining(&self) -> Result<Duration, ImapError> {
        if self.cancel.is_cancelled() {
            return Err(ImapError::Stopped);
        }
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ImapError::Timeout(self.timeout));
        }
        Ok(left)
    }

    fn set_timeouts(&self) -> Result<(), ImapError> {
        let left = self.remaining()?;
        let apply = self
            .tcp
            .set_read_timeout(Some(left))
            .and_then(|_| self.tcp.set_write_timeout(Some(left)));
        apply.map_err(|e| self.io_error(e))
    }

    fn io_error(&self, e: io::Error) -> ImapError {
        if self.cancel.is_cancelled() {
            return ImapError::Stopped;
        }
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ImapError::Timeout(self.timeout),
            _ => ImapError::Lost(e.to_string()),
        }
    }

    /// Read more bytes into the buffer.
    fn fill(&mut self) -> Result<(), ImapError> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            self.set_timeouts()?;
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(if self.cancel.is_cancelled() {
                        ImapError::Stopped
                    } else {
                        ImapError::Lost("the server closed the connection".into())
                    })
                }
                Ok(n) => {
                    self.charge(n)?;
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.io_error(e)),
            }
        }
    }

    fn charge(&mut self, n: usize) -> Result<(), ImapError> {
        self.budget = self.budget.checked_sub(n).ok_or_else(|| {
            ImapError::Protocol(format!(
                "more than {} MiB of responses to one command",
                MAX_RESPONSE >> 20
            ))
        })?;
        Ok(())
    }

    /// One line, without its line end, appended to `out`.
    pub fn read_line(&mut self, out: &mut Vec<u8>) -> Result<(), ImapError> {
        let start = out.len();
        loop {
            let avail = &self.buf[self.pos..];
            if let Some(i) = avail.iter().position(|&b| b == b'\n') {
                out.extend_from_slice(&avail[..i]);
                self.pos += i + 1;
                if out.ends_with(b"\r") {
                    out.pop();
                }
                return Ok(());
            }
            out.extend_from_slice(avail);
            self.pos = self.buf.len();
            if out.len() - start > MAX_LINE {
                return Err(ImapError::Protocol(format!(
                    "a response line longer than {} KiB",
                    MAX_LINE >> 10
                )));
            }
            self.fill()?;
        }
    }

    /// Exactly `n` more bytes appended to `out`, as they arrive.
    pub fn read_exact_into(&mut self, out: &mut Vec<u8>, mut n: usize) -> Result<(), ImapError> {
        loop {
            let avail = &self.buf[self.pos..];
            let take = avail.len().min(n);
            out.extend_from_slice(&avail[..take]);
            self.pos += take;
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill()?;
        }
    }

    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), ImapError> {
        self.set_timeouts()?;
        let r = self
            .stream
            .write_all(bytes)
            .and_then(|_| self.stream.flush());
        r.map_err(|e| self.io_error(e))
    }

    /// Close the socket now (a stop, or a connection given up).
    pub fn shutdown(&self) {
        let _ = self.tcp.shutdown(std::net::Shutdown::Both);
    }
}
