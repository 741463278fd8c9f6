//! A raw HTTP/1.1 test client: writes exact bytes, reads responses strictly by their framing, and
//! can tell whether the server closed the connection.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::upstream::find;

/// One response as received.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    pub version: u8,
    pub fields: Vec<(String, String)>,
    /// The decoded body (chunked framing removed).
    pub body: Vec<u8>,
    /// The head bytes as received.
    pub raw_head: Vec<u8>,
    pub chunked: bool,
    /// The heads of interim (1xx) answers that came first, as received.
    pub interim: Vec<Vec<u8>>,
}

impl Response {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn fields_named(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A client connection.
pub struct Client {
    stream: Transport,
    pending: Vec<u8>,
}

/// The bytes' way to coregate: the socket itself, or a TLS session over it.
enum Transport {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Transport {
    fn socket(&self) -> &TcpStream {
        match self {
            Transport::Plain(stream) => stream,
            Transport::Tls(tls) => &tls.sock,
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(stream) => stream.read(buf),
            Transport::Tls(tls) => match tls.read(buf) {
                // A peer that closes without close_notify has ended the stream all the same.
                Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(stream) => stream.write(buf),
            Transport::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Transport::Plain(stream) => stream.flush(),
            Transport::Tls(tls) => tls.flush(),
        }
    }
}

impl Client {
    /// Connects to coregate; over TLS (asking for [`crate::tls::TEST_NAME`]) when the proxy
    /// at `addr` serves TLS.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect to coregate");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        let stream = if crate::tls::speaks_tls(addr) {
            let session =
                crate::tls::client_session(crate::tls::client_config(&[]), crate::tls::TEST_NAME);
            Transport::Tls(Box::new(rustls::StreamOwned::new(session, stream)))
        } else {
            Transport::Plain(stream)
        };
        Client {
            stream,
            pending: Vec::new(),
        }
    }

    /// Connects over TLS with `config`, asking for `name` (an IP address sends no SNI), and
    /// finishes the handshake; its error when the handshake fails.
    pub fn connect_tls(
        addr: SocketAddr,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: &str,
    ) -> Result<Client, std::io::Error> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        let mut session = crate::tls::client_session(config, name);
        while session.is_handshaking() {
            session.complete_io(&mut stream)?;
        }
        Ok(Client {
            stream: Transport::Tls(Box::new(rustls::StreamOwned::new(session, stream))),
            pending: Vec::new(),
        })
    }

    /// The TLS session, when the client speaks TLS.
    pub fn tls(&self) -> Option<&rustls::ClientConnection> {
        match &self.stream {
            Transport::Tls(tls) => Some(&tls.conn),
            Transport::Plain(_) => None,
        }
    }

    /// Sends a TLS 1.3 key update: a record that carries no application data.
    ///
    /// # Panics
    /// On a plain connection, or if the key update cannot be sent.
    pub fn send_key_update(&mut self) {
        let Transport::Tls(tls) = &mut self.stream else {
            panic!("a key update on a plain connection");
        };
        tls.conn.refresh_traffic_keys().expect("a TLS 1.3 session");
        std::io::Write::flush(tls).expect("send the key update");
    }

    /// The socket (under TLS, the one the session runs over).
    pub fn stream(&self) -> &TcpStream {
        self.stream.socket()
    }

    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream
            .socket()
            .set_read_timeout(Some(timeout))
            .unwrap();
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write request");
        self.stream.flush().expect("write request");
    }

    /// Sends what it can of `bytes`: a server that refuses a request may answer and close
    /// before the rest of it (a body, say) was written, and the answer is what counts.
    pub fn send_until_refused(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
        let _ = self.stream.flush();
    }

    /// Sends a minimal GET with the given extra field lines (each without CRLF).
    pub fn get(&mut self, path: &str, extra: &[&str]) -> Response {
        let mut request = format!("GET {path} HTTP/1.1\r\nhost: test.local\r\n");
        for line in extra {
            request.push_str(line);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        self.send(request.as_bytes());
        self.read_response(false).expect("a response")
    }

    /// Reads one response. `head_request` says the request was HEAD (no body follows).
    /// `None` if the connection closed before a complete head arrived.
    pub fn read_response(&mut self, head_request: bool) -> Option<Response> {
        let mut interim = Vec::new();
        loop {
            let head_end = loop {
                if let Some(at) = find(&self.pending, b"\r\n\r\n") {
                    break at + 4;
                }
                if !self.fill() {
                    return None;
                }
            };
            let raw_head = self.pending[..head_end].to_vec();
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut parsed = httparse::Response::new(&mut headers);
            parsed
                .parse(&raw_head)
                .expect("coregate sent a parseable head");
            let status = parsed.code.expect("status");
            let version = parsed.version.expect("version");
            let fields: Vec<(String, String)> = parsed
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            self.pending.drain(..head_end);
            if (100..200).contains(&status) && status != 101 {
                interim.push(raw_head);
                continue; // informational: the final response follows
            }
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            let chunked = field("transfer-encoding")
                .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
            let no_body = head_request || status == 204 || status == 304;
            let body = if no_body {
                Vec::new()
            } else if chunked {
                self.read_chunked()?
            } else if let Some(len) = field("content-length") {
                let len: usize = len.trim().parse().expect("numeric content-length");
                while self.pending.len() < len {
                    if !self.fill() {
                        return None;
                    }
                }
                self.pending.drain(..len).collect()
            } else {
                // Close-delimited.
                while self.fill() {}
                std::mem::take(&mut self.pending)
            };
            return Some(Response {
                status,
                version,
                fields,
                body,
                raw_head,
                chunked,
                interim,
            });
        }
    }

    /// Stops sending: a TLS client sends `close_notify` first; then the socket's write half is
    /// shut down (what is sent back can still be read).
    pub fn finish_sending(&mut self) {
        if let Transport::Tls(tls) = &mut self.stream {
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
        let _ = self.stream.socket().shutdown(std::net::Shutdown::Write);
    }

    /// Reads exactly `n` bytes (an interim answer, say); panics if the connection ends first.
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        while self.pending.len() < n {
            assert!(self.fill(), "the connection ended before {n} bytes");
        }
        self.pending.drain(..n).collect()
    }

    /// Reads everything until the server closes; the raw bytes.
    pub fn read_to_close(&mut self) -> Vec<u8> {
        while self.fill() {}
        std::mem::take(&mut self.pending)
    }

    /// True if the server closed the connection (reads end) within the read timeout, with no
    /// further bytes.
    pub fn is_closed(&mut self) -> bool {
        if !self.pending.is_empty() {
            return false;
        }
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => {
                self.pending.push(byte[0]);
                false
            }
            Err(err) => err.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }

    fn read_chunked(&mut self) -> Option<Vec<u8>> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(at) = find(&self.pending, b"\r\n") {
                    break at;
                }
                if !self.fill() {
                    return None;
                }
            };
            let line = String::from_utf8_lossy(&self.pending[..line_end]).into_owned();
            let size =
                usize::from_str_radix(line.split(';').next()?.trim(), 16).expect("hex chunk size");
            self.pending.drain(..line_end + 2);
            if size == 0 {
                loop {
                    let end = loop {
                        if let Some(at) = find(&self.pending, b"\r\n") {
                            break at;
                        }
                        if !self.fill() {
                            return None;
                        }
                    };
                    self.pending.drain(..end + 2);
                    if end == 0 {
                        return Some(body);
                    }
                }
            }
            while self.pending.len() < size + 2 {
                if !self.fill() {
                    return None;
                }
            }
            body.extend_from_slice(&self.pending[..size]);
            assert_eq!(
                &self.pending[size..size + 2],
                b"\r\n",
                "chunk data ends with CRLF"
            );
            self.pending.drain(..size + 2);
        }
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 65536];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.pending.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }
}
