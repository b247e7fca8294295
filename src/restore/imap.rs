//! A small synchronous IMAP4rev1 client: just what restoring needs (login,
//! LIST, CREATE, SELECT, APPEND, FETCH of Message-IDs) and what tests need
//! to read messages back. TLS (implicit or STARTTLS) is rustls.
//!
//! Responses are read whole, literals included, and kept as their raw wire
//! bytes, within the deadlines and bounds of [`crate::restore::wire`]; [`parse_values`] turns the part after `* ` into [`Value`]s when a
//! caller needs structure.

use std::collections::HashSet;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine;

use crate::mutf7;
use crate::restore::cancel::Cancel;
use crate::restore::secret::{read_small_file, Owner, CA_FILE_MAX};
use crate::restore::target::{ImapSpec, TlsMode};
use crate::restore::wire::{self, Conn, ImapError, MAX_LITERAL};

/// One parsed IMAP data item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// An atom, number or flag (`FLAGS`, `42`, `\Seen`, `BODY[]`).
    Atom(String),
    /// A quoted string or a literal.
    Str(Vec<u8>),
    Nil,
    List(Vec<Value>),
}

impl Value {
    pub fn as_atom(&self) -> Option<&str> {
        match self {
            Value::Atom(a) => Some(a),
            _ => None,
        }
    }
    /// An atom or string as text.
    pub fn text(&self) -> Option<String> {
        match self {
            Value::Atom(a) => Some(a.clone()),
            Value::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            _ => None,
        }
    }
}

/// An untagged response (the bytes after `* `, literals inline).
#[derive(Clone, Debug)]
pub struct Untagged(pub Vec<u8>);

impl Untagged {
    pub fn values(&self) -> Result<Vec<Value>> {
        parse_values(&self.0)
    }
    /// The first word (`OK`, `CAPABILITY`, or the number of `42 FETCH`).
    pub fn first_word(&self) -> &[u8] {
        self.0.split(|&b| b == b' ').next().unwrap_or(&[])
    }
}

/// One message as FETCHed by [`ImapClient::fetch_all`].
#[derive(Clone, Debug)]
pub struct FetchedMessage {
    pub uid: u32,
    pub flags: Vec<String>,
    /// As the server sent it: `"12-Jul-2013 15:03:00 +0000"` without quotes.
    pub internal_date: String,
    pub body: Vec<u8>,
}

/// A mailbox as LISTed.
#[derive(Clone, Debug)]
pub struct ListedMailbox {
    pub attributes: Vec<String>,
    pub delimiter: Option<char>,
    /// The name as on the wire (modified UTF-7).
    pub raw_name: String,
    /// The name decoded from modified UTF-7.
    pub name: String,
}

pub struct ImapClient {
    conn: Conn,
    tag: u32,
    capabilities: HashSet<String>,
    selected: Option<String>,
}

/// How long one command may take unless the target says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

impl ImapClient {
    /// Connect (with TLS as `spec` says), log in and read capabilities.
    pub fn connect(spec: &ImapSpec, password: &str) -> Result<ImapClient> {
        ImapClient::connect_with(spec, password, &Arc::new(Cancel::default()))
    }

    /// [`ImapClient::connect`], stopped at once by `cancel`.
    pub fn connect_with(
        spec: &ImapSpec,
        password: &str,
        cancel: &Arc<Cancel>,
    ) -> Result<ImapClient> {
        let addr = format!("{}:{}", spec.host, spec.port);
        let timeout = spec.timeout();
        let tcp = wire::connect(&spec.host, spec.port, timeout, cancel).map_err(|e| {
            if cancel.is_cancelled() {
                anyhow!(ImapError::Stopped)
            } else {
                anyhow!(ImapError::Lost(e.to_string())).context(format!("cannot connect to {addr}"))
            }
        })?;
        let mut c = ImapClient {
            conn: Conn::new(tcp, timeout, cancel.clone())?,
            tag: 0,
            capabilities: HashSet::new(),
            selected: None,
        };
        if spec.tls == TlsMode::Implicit {
            c.conn.wrap_tls(|tcp| tls_wrap(spec, tcp))?;
        }
        c.conn.arm(Duration::ZERO);
        let greeting = c.read_response()?;
        if greeting.starts_with(b"* BYE") {
            bail!("{addr} refused the connection: {}", lossy(&greeting));
        }
        let preauth = greeting.starts_with(b"* PREAUTH");
        c.capability()?;
        if spec.tls == TlsMode::StartTls {
            if !c.has_cap("STARTTLS") {
                bail!("{addr} does not offer STARTTLS");
            }
            c.command("STARTTLS")?;
            if c.conn.buffered() > 0 {
                bail!("{addr} sent data after STARTTLS before the TLS handshake");
            }
            c.conn.arm(Duration::ZERO);
            c.conn.wrap_tls(|tcp| tls_wrap(spec, tcp))?;
            c.capability()?;
        }
        if !preauth {
            c.login(&spec.user, password)
                .with_context(|| format!("cannot log in to {addr} as {}", spec.user))?;
            c.capability()?;
        }
        Ok(c)
    }

    pub fn has_cap(&self, cap: &str) -> bool {
        self.capabilities.contains(&cap.to_ascii_uppercase())
    }

    fn capability(&mut self) -> Result<()> {
        let resp = self.command("CAPABILITY")?;
        self.capabilities.clear();
        for u in resp {
            if u.first_word().eq_ignore_ascii_case(b"CAPABILITY") {
                for w in lossy(&u.0).split_whitespace().skip(1) {
                    self.capabilities.insert(w.to_ascii_uppercase());
                }
            }
        }
        Ok(())
    }

    fn login(&mut self, user: &str, password: &str) -> Result<()> {
        if self.has_cap("AUTH=PLAIN") {
            let token =
                base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
            if self.has_cap("SASL-IR") {
                self.command(&format!("AUTHENTICATE PLAIN {token}"))?;
            } else {
                let tag = self.send_tagged("AUTHENTICATE PLAIN", Duration::ZERO)?;
                self.wait_continuation(&tag)?;
                self.conn.write_all(format!("{token}\r\n").as_bytes())?;
                self.finish_tagged(&tag)?;
            }
            return Ok(());
        }
        if self.has_cap("LOGINDISABLED") {
            bail!("the server disables LOGIN on this connection (use imaps:// or ?starttls)");
        }
        let cmd = format!("LOGIN {} {}", quote(user)?, quote(password)?);
        self.command(&cmd)?;
        Ok(())
    }

    /// Run a command without literals; the untagged responses on success.
    pub fn command(&mut self, cmd: &str) -> Result<Vec<Untagged>> {
        let tag = self.send_tagged(cmd, Duration::ZERO)?;
        Ok(self.finish_tagged(&tag)?)
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("m{}", self.tag)
    }

    /// Send a command line with a fresh deadline (plus `extra`).
    fn send_tagged(&mut self, cmd: &str, extra: Duration) -> Result<String, ImapError> {
        let tag = self.next_tag();
        self.conn.arm(extra);
        self.conn.write_all(format!("{tag} {cmd}\r\n").as_bytes())?;
        Ok(tag)
    }

    /// Read responses until `tag`'s; [`ImapError::Refused`] on NO/BAD.
    fn finish_tagged(&mut self, tag: &str) -> Result<Vec<Untagged>, ImapError> {
        let mut untagged = Vec::new();
        loop {
            let resp = self.read_response()?;
            if let Some(rest) = resp.strip_prefix(b"* ") {
                untagged.push(Untagged(rest.to_vec()));
                continue;
            }
            if resp.starts_with(b"+") {
                return Err(ImapError::Protocol(format!(
                    "unexpected continuation request: {}",
                    lossy(&resp)
                )));
            }
            let prefix = format!("{tag} ");
            let Some(rest) = resp.strip_prefix(prefix.as_bytes()) else {
                return Err(ImapError::Protocol(format!(
                    "unexpected response: {}",
                    lossy(&resp)
                )));
            };
            if rest.len() >= 2 && rest[..2].eq_ignore_ascii_case(b"OK") {
                return Ok(untagged);
            }
            return Err(ImapError::Refused(lossy(rest).trim_end().to_string()));
        }
    }

    /// Wait for a `+` continuation (untagged responses before it are
    /// dropped); a tagged answer instead is a refusal.
    fn wait_continuation(&mut self, tag: &str) -> Result<(), ImapError> {
        loop {
            let resp = self.read_response()?;
            if resp.starts_with(b"+") {
                return Ok(());
            }
            if resp.starts_with(b"* ") {
                continue;
            }
            if resp.starts_with(format!("{tag} ").as_bytes()) {
                return Err(ImapError::Refused(
                    lossy(&resp[tag.len() + 1..]).trim_end().to_string(),
                ));
            }
            return Err(ImapError::Protocol(format!(
                "unexpected response: {}",
                lossy(&resp)
            )));
        }
    }

    /// One response: a line, plus every literal it announces and the lines
    /// that follow them. Without the final CRLF. Bounded as `wire` says.
    fn read_response(&mut self) -> Result<Vec<u8>, ImapError> {
        let mut out = Vec::new();
        loop {
            let start = out.len();
            self.conn.read_line(&mut out)?;
            match literal_len(&out[start..]) {
                Some(len) if len > MAX_LITERAL => {
                    return Err(ImapError::Protocol(format!(
                        "a literal of {len} bytes (at most {} MiB are accepted)",
                        MAX_LITERAL >> 20
                    )))
                }
                Some(len) => {
                    out.extend_from_slice(b"\r\n");
                    self.conn.read_exact_into(&mut out, len)?;
                }
                None => return Ok(out),
            }
        }
    }

    /// The hierarchy delimiter (`LIST "" ""`), if the server has one.
    pub fn delimiter(&mut self) -> Result<Option<char>> {
        let resp = self.command("LIST \"\" \"\"")?;
        for u in resp {
            if u.first_word().eq_ignore_ascii_case(b"LIST") {
                if let Some(m) = parse_list(&u)? {
                    return Ok(m.delimiter);
                }
            }
        }
        Ok(None)
    }

    /// Every mailbox (`LIST "" "*"`).
    pub fn list(&mut self) -> Result<Vec<ListedMailbox>> {
        let resp = self.command("LIST \"\" \"*\"")?;
        let mut out = Vec::new();
        for u in resp {
            if u.first_word().eq_ignore_ascii_case(b"LIST") {
                if let Some(m) = parse_list(&u)? {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }

    /// CREATE; a mailbox that already exists is fine.
    pub fn create(&mut self, raw_name: &str) -> Result<()> {
        match self.command(&format!("CREATE {}", quote(raw_name)?)) {
            Ok(_) => Ok(()),
            Err(e) if e.to_string().to_ascii_uppercase().contains("ALREADYEXISTS") => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot create mailbox {raw_name}")),
        }
    }

    /// SELECT (read-only EXAMINE would do, but SELECT is what every server
    /// supports alike); returns the EXISTS count. No-op if selected already.
    pub fn select(&mut self, raw_name: &str) -> Result<u32> {
        let resp = self
            .command(&format!("SELECT {}", quote(raw_name)?))
            .with_context(|| format!("cannot select mailbox {raw_name}"))?;
        self.selected = Some(raw_name.to_string());
        let mut exists = 0;
        for u in resp {
            let text = lossy(&u.0);
            let mut words = text.split_whitespace();
            if let (Some(n), Some(w)) = (words.next(), words.next()) {
                if w.eq_ignore_ascii_case("EXISTS") {
                    exists = n.parse().unwrap_or(0);
                }
            }
        }
        Ok(exists)
    }

    pub fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    /// (UID, RFC822.SIZE) of every message in the selected mailbox.
    pub fn sizes(&mut self) -> Result<Vec<(u32, u64)>> {
        let resp = self.command("UID FETCH 1:* (UID RFC822.SIZE)")?;
        let mut out = Vec::new();
        for u in resp {
            let (mut uid, mut size) = (None, None);
            for (key, v) in fetch_items(&u)? {
                let n = v.text().and_then(|t| t.parse::<u64>().ok());
                match key.to_ascii_uppercase().as_str() {
                    "UID" => uid = n.and_then(|n| u32::try_from(n).ok()),
                    "RFC822.SIZE" => size = n,
                    _ => {}
                }
            }
            if let (Some(uid), Some(size)) = (uid, size) {
                out.push((uid, size));
            }
        }
        Ok(out)
    }

    /// The whole bytes of the messages `uids` of the selected mailbox.
    pub fn bodies(&mut self, uids: &[u32]) -> Result<Vec<(u32, Vec<u8>)>> {
        if uids.is_empty() {
            return Ok(Vec::new());
        }
        let set: Vec<String> = uids.iter().map(u32::to_string).collect();
        let resp = self.command(&format!("UID FETCH {} (UID BODY.PEEK[])", set.join(",")))?;
        let mut out = Vec::new();
        for u in resp {
            let (mut uid, mut body) = (None, None);
            for (key, v) in fetch_items(&u)? {
                match (key.to_ascii_uppercase().as_str(), v) {
                    ("UID", v) => uid = v.text().and_then(|t| t.parse().ok()),
                    ("BODY[]", Value::Str(b)) => body = Some(b),
                    _ => {}
                }
            }
            if let (Some(uid), Some(body)) = (uid, body) {
                out.push((uid, body));
            }
        }
        Ok(out)
    }

    /// Every message of the selected mailbox, whole, in UID order.
    pub fn fetch_all(&mut self) -> Result<Vec<FetchedMessage>> {
        let resp = self.command("UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])")?;
        let mut out = Vec::new();
        for u in resp {
            let items = fetch_items(&u)?;
            if items.is_empty() {
                continue;
            }
            let mut m = FetchedMessage {
                uid: 0,
                flags: Vec::new(),
                internal_date: String::new(),
                body: Vec::new(),
            };
            for (key, v) in items {
                match (key.to_ascii_uppercase().as_str(), v) {
                    ("UID", v) => m.uid = v.text().and_then(|t| t.parse().ok()).unwrap_or(0),
                    ("FLAGS", Value::List(l)) => {
                        m.flags = l.iter().filter_map(Value::text).collect();
                    }
                    ("INTERNALDATE", v) => m.internal_date = v.text().unwrap_or_default(),
                    ("BODY[]", Value::Str(s)) => m.body = s,
                    _ => {}
                }
            }
            out.push(m);
        }
        out.sort_by_key(|m| m.uid);
        Ok(out)
    }

    /// APPEND one message with flags and an internal date
    /// (`"dd-Mon-yyyy hh:mm:ss +0000"`). Uses a non-synchronising literal
    /// when the server offers LITERAL+ (or LITERAL- and the message is at
    /// most 4096 bytes), and BINARY's `~{n}` when the message has NULs.
    pub fn append(
        &mut self,
        raw_mailbox: &str,
        flags: &[&str],
        internal_date: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let binary = bytes.contains(&0);
        if binary && !self.has_cap("BINARY") {
            bail!("the message contains NUL bytes and the server lacks BINARY");
        }
        let sync = !(self.has_cap("LITERAL+") || (self.has_cap("LITERAL-") && bytes.len() <= 4096));
        let tag = self.next_tag();
        let head = format!(
            "{tag} APPEND {} ({}) \"{internal_date}\" {}{{{}{}}}\r\n",
            quote(raw_mailbox)?,
            flags.join(" "),
            if binary { "~" } else { "" },
            bytes.len(),
            if sync { "" } else { "+" }
        );
        // Time to send the message: one more second per MiB.
        self.conn.arm(Duration::from_secs(bytes.len() as u64 >> 20));
        if sync {
            self.conn.write_all(head.as_bytes())?;
            self.wait_continuation(&tag)?;
            let mut body = Vec::with_capacity(bytes.len() + 2);
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
            self.conn.write_all(&body)?;
        } else {
            // One write: command, literal and line end leave in as few
            // segments as the size allows.
            let mut buf = Vec::with_capacity(head.len() + bytes.len() + 2);
            buf.extend_from_slice(head.as_bytes());
            buf.extend_from_slice(bytes);
            buf.extend_from_slice(b"\r\n");
            self.conn.write_all(&buf)?;
        }
        self.finish_tagged(&tag)?;
        Ok(())
    }

    pub fn logout(&mut self) -> Result<()> {
        self.command("LOGOUT")?;
        Ok(())
    }
}

fn tls_wrap(
    spec: &ImapSpec,
    tcp: TcpStream,
) -> Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = &spec.ca_file {
        for cert in read_pem_certs(ca)? {
            roots
                .add(cert)
                .with_context(|| format!("bad certificate in {}", ca.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(spec.host.clone())
        .map_err(|e| anyhow!("bad TLS server name {:?}: {e}", spec.host))?;
    let conn = rustls::ClientConnection::new(Arc::new(config), name)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    // Handshake now so certificate errors name the server.
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .with_context(|| format!("TLS handshake with {}:{} failed", spec.host, spec.port))?;
    }
    Ok(s)
}

/// The certificates of a PEM file (a regular file of at most 1 MiB).
pub fn read_pem_certs(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let bytes = read_small_file("CA file", path, CA_FILE_MAX, Owner::Any)?;
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("bad PEM in {}", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}

/// `{123}` or `{123+}` / `{123-}` / `~{123}` at the end of a line.
fn literal_len(line: &[u8]) -> Option<usize> {
    let body = line.strip_suffix(b"}")?;
    let open = body.iter().rposition(|&b| b == b'{')?;
    let digits = &body[open + 1..];
    let digits = digits
        .strip_suffix(b"+")
        .or_else(|| digits.strip_suffix(b"-"))
        .unwrap_or(digits);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A quoted string; refuses what a quoted string cannot hold.
pub fn quote(s: &str) -> Result<String> {
    if s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        bail!("{s:?} cannot be sent in an IMAP quoted string");
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        if ch == '"' || ch == '\\' {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('"');
    Ok(out)
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn parse_list(u: &Untagged) -> Result<Option<ListedMailbox>> {
    let v = u.values()?;
    let (Some(Value::List(attrs)), Some(delim), Some(name)) = (v.get(1), v.get(2), v.get(3)) else {
        return Ok(None);
    };
    let raw_name = name.text().unwrap_or_default();
    Ok(Some(ListedMailbox {
        attributes: attrs.iter().filter_map(Value::text).collect(),
        delimiter: delim.text().and_then(|d| d.chars().next()),
        name: mutf7::decode_lossy(&raw_name),
        raw_name,
    }))
}

/// The `(KEY value ...)` pairs of a `N FETCH (...)` response; empty for
/// anything else.
fn fetch_items(u: &Untagged) -> Result<Vec<(String, Value)>> {
    let v = u.values()?;
    match (v.get(1).and_then(Value::as_atom), v.get(2)) {
        (Some(w), Some(Value::List(items))) if w.eq_ignore_ascii_case("FETCH") => {
            let mut out = Vec::new();
            let mut it = items.iter();
            while let (Some(k), Some(val)) = (it.next(), it.next()) {
                out.push((k.text().unwrap_or_default(), val.clone()));
            }
            Ok(out)
        }
        _ => Ok(Vec::new()),
    }
}

/// Parse IMAP data: atoms (with `[...]` sections kept whole), quoted
/// strings, literals (`{n}\r\n` + n bytes, also `~{n}`), NIL, lists.
pub fn parse_values(input: &[u8]) -> Result<Vec<Value>> {
    let mut pos = 0;
    let mut stack: Vec<Vec<Value>> = vec![Vec::new()];
    while pos < input.len() {
        let b = input[pos];
        match b {
            b' ' => pos += 1,
            b'(' => {
                stack.push(Vec::new());
                pos += 1;
            }
            b')' => {
                let list = stack.pop().filter(|_| !stack.is_empty());
                let list = list.ok_or_else(|| anyhow!("unbalanced ')' in response"))?;
                stack.last_mut().expect("checked").push(Value::List(list));
                pos += 1;
            }
            b'"' => {
                let mut s = Vec::new();
                pos += 1;
                loop {
                    let c = *input
                        .get(pos)
                        .ok_or_else(|| anyhow!("unterminated string"))?;
                    pos += 1;
                    match c {
                        b'\\' => {
                            s.push(*input.get(pos).ok_or_else(|| anyhow!("bad escape"))?);
                            pos += 1;
                        }
                        b'"' => break,
                        _ => s.push(c),
                    }
                }
                stack.last_mut().expect("non-empty").push(Value::Str(s));
            }
            b'{' | b'~' if b == b'{' || input.get(pos + 1) == Some(&b'{') => {
                let open = if b == b'~' { pos + 1 } else { pos };
                let close = input[open..]
                    .iter()
                    .position(|&c| c == b'}')
                    .map(|i| open + i)
                    .ok_or_else(|| anyhow!("bad literal"))?;
                let len =
                    literal_len(&input[open..=close]).ok_or_else(|| anyhow!("bad literal"))?;
                let start = close + 3; // "}\r\n"
                let data = input
                    .get(start..start + len)
                    .ok_or_else(|| anyhow!("short literal"))?;
                stack
                    .last_mut()
                    .expect("non-empty")
                    .push(Value::Str(data.to_vec()));
                pos = start + len;
            }
            _ => {
                let start = pos;
                let mut depth = 0;
                while pos < input.len() {
                    let c = input[pos];
                    if depth == 0 && (c == b' ' || c == b'(' || c == b')') {
                        break;
                    }
                    if c == b'[' {
                        depth += 1;
                    } else if c == b']' && depth > 0 {
                        depth -= 1;
                    }
                    pos += 1;
                }
                let atom = lossy(&input[start..pos]);
                let v = if atom.eq_ignore_ascii_case("NIL") {
                    Value::Nil
                } else {
                    Value::Atom(atom)
                };
                stack.last_mut().expect("non-empty").push(v);
            }
        }
    }
    if stack.len() != 1 {
        bail!("unbalanced '(' in response");
    }
    Ok(stack.pop().expect("one level"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fetch() {
        let raw = b"1 FETCH (UID 7 FLAGS (\\Seen $X) INTERNALDATE \"12-Jul-2013 15:03:00 +0000\" BODY[HEADER.FIELDS (MESSAGE-ID)] {5}\r\nab\r\nc BODY[] ~{2}\r\n\0x)";
        let v = parse_values(raw).unwrap();
        let items = fetch_items(&Untagged(raw.to_vec())).unwrap();
        assert_eq!(v[0], Value::Atom("1".into()));
        assert_eq!(items[0], ("UID".into(), Value::Atom("7".into())));
        assert_eq!(
            items[1].1,
            Value::List(vec![Value::Atom("\\Seen".into()), Value::Atom("$X".into())])
        );
        assert_eq!(items[3].0, "BODY[HEADER.FIELDS (MESSAGE-ID)]");
        assert_eq!(items[3].1, Value::Str(b"ab\r\nc".to_vec()));
        assert_eq!(items[4].1, Value::Str(b"\0x".to_vec()));
    }

    #[test]
    fn parses_list_and_literals() {
        let u = Untagged(b"LIST (\\HasNoChildren) \".\" \"INBOX.Entw&APw-rfe\"".to_vec());
        let m = parse_list(&u).unwrap().unwrap();
        assert_eq!(m.delimiter, Some('.'));
        assert_eq!(m.name, "INBOX.Entwürfe");
        let u = Untagged(b"LIST () NIL {3}\r\na\"b".to_vec());
        let m = parse_list(&u).unwrap().unwrap();
        assert_eq!((m.delimiter, m.raw_name.as_str()), (None, "a\"b"));
        assert_eq!(literal_len(b"* 1 FETCH (BODY[] {12}"), Some(12));
        assert_eq!(literal_len(b"A APPEND x {12+}"), Some(12));
        assert_eq!(literal_len(b"* OK {x}"), None);
        assert_eq!(quote("a\"\\b").unwrap(), "\"a\\\"\\\\b\"");
        assert!(quote("a\r\n").is_err());
    }
}
