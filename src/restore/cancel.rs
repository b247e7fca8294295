//! Stopping a running job at once, whatever it waits on: the job's
//! connections register their sockets here, and [`Cancel::cancel`] shuts
//! them down, so a read or write blocked on a slow or silent server
//! returns immediately.

use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// One job's stop switch (a fresh one per run).
#[derive(Default)]
pub struct Cancel {
    stopped: AtomicBool,
    sockets: Mutex<Vec<TcpStream>>,
}

impl Cancel {
    /// Stop: every registered socket is shut down, and later ones too.
    pub fn cancel(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        for s in self.sockets.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Watch a socket (a clone of it is kept until the job ends).
    pub fn register(&self, socket: &TcpStream) {
        let mut sockets = self.sockets.lock().unwrap();
        if self.is_cancelled() {
            let _ = socket.shutdown(Shutdown::Both);
            return;
        }
        // Sockets of closed connections are dropped from time to time.
        sockets.retain(|s| s.peer_addr().is_ok());
        if let Ok(c) = socket.try_clone() {
            sockets.push(c);
        }
    }
}
