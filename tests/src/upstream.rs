//! A real upstream for end-to-end tests: a blocking HTTP/1.1 server on its own threads that
//! records every request it receives (connection, method, target, fields, body) and every raw
//! byte of every connection, and answers as the test's [`Behavior`] says, including
//! misbehaving on purpose (see [`Upstream::start_early`] for one that answers before the body).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

/// What the upstream saw of one request.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Which accepted connection (0, 1, ...) carried it.
    pub connection: usize,
    pub method: String,
    pub target: String,
    pub version: u8,
    /// Fields in arrival order, names as sent.
    pub fields: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The raw head bytes, for byte-exact assertions.
    pub raw_head: Vec<u8>,
    /// Whether the body came chunked.
    pub chunked: bool,
}

impl Recorded {
    /// The value of the first field named `name` (case-insensitive).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of fields named `name`.
    pub fn fields_named(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// How the upstream answers a request.
#[derive(Clone)]
pub enum Reply {
    /// Send these bytes verbatim, keep the connection open.
    Raw(Vec<u8>),
    /// Send these bytes, then close the connection.
    RawThenClose(Vec<u8>),
    /// Wait, then send the bytes.
    Delayed(Duration, Vec<u8>),
    /// Send the first bytes, wait, then send the second unasked (a misbehaving upstream whose
    /// extra bytes arrive while the connection idles in a pool).
    ThenLater(Vec<u8>, Duration, Vec<u8>),
    /// Close without answering.
    Close,
    /// Reset the connection (RST) without answering.
    Reset,
}

/// Decides the reply for each recorded request.
pub type Behavior = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// A 200 response with `body` and a correct Content-Length.
pub fn ok(body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A 200 response whose body is sent chunked, in pieces of `piece` bytes.
pub fn ok_chunked(body: &[u8], piece: usize) -> Vec<u8> {
    let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for chunk in body.chunks(piece.max(1)) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Echoes what it saw: `METHOD TARGET` and the X-Forwarded-For it received, one per line.
pub fn echo() -> Behavior {
    Arc::new(|req: &Recorded| {
        let body = format!(
            "{} {}\nx-forwarded-for: {}\nbody-bytes: {}\n",
            req.method,
            req.target,
            req.field("x-forwarded-for").unwrap_or("-"),
            req.body.len()
        );
        Reply::Raw(ok(body.as_bytes()))
    })
}

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    arrived: Condvar,
    connections: AtomicUsize,
    /// Every byte received, per connection (indexed by [`Recorded::connection`]).
    received: Mutex<Vec<Vec<u8>>>,
    /// Answer after the head, without reading the body (see [`Upstream::start_early`]).
    early: bool,
    stop: AtomicBool,
    /// A second handle on each connection still served (indexed by connection), so
    /// [`Upstream::kill`] can close them; dropped when its connection ends.
    open: Mutex<Vec<Option<TcpStream>>>,
    /// The accept loop, joined by [`Upstream::kill`] so the port is closed when it returns.
    acceptor: Mutex<Option<thread::JoinHandle<()>>>,
}

/// A running recording upstream. Dropping it stops accepting.
pub struct Upstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Upstream {
    /// Starts on an ephemeral loopback port.
    pub fn start(behavior: Behavior) -> Upstream {
        Upstream::start_with(behavior, false)
    }

    /// Starts a naive upstream that answers each request as soon as its head arrived, without
    /// reading the body: whatever follows the head on the connection is read as the next
    /// request (a body that looks like a request is taken for one). Recorded bodies are empty.
    /// Proxies must not reuse a connection to such a server after an early answer.
    pub fn start_early(behavior: Behavior) -> Upstream {
        Upstream::start_with(behavior, true)
    }

    /// Starts on `addr`: the address of an upstream that was killed, to bring it back.
    pub fn start_at(addr: SocketAddr, behavior: Behavior) -> Upstream {
        let listener = TcpListener::bind(addr).expect("bind the upstream's address again");
        Upstream::serve_on(listener, behavior, false)
    }

    fn start_with(behavior: Behavior, early: bool) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        Upstream::serve_on(listener, behavior, early)
    }

    fn serve_on(listener: TcpListener, behavior: Behavior, early: bool) -> Upstream {
        let addr = listener.local_addr().expect("upstream address");
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            arrived: Condvar::new(),
            connections: AtomicUsize::new(0),
            received: Mutex::new(Vec::new()),
            early,
            stop: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
            acceptor: Mutex::new(None),
        });
        let accept_shared = shared.clone();
        let acceptor = thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                accept_shared
                    .open
                    .lock()
                    .unwrap()
                    .push(stream.try_clone().ok());
                let id = accept_shared.connections.fetch_add(1, Ordering::SeqCst);
                accept_shared.received.lock().unwrap().push(Vec::new());
                let shared = accept_shared.clone();
                let behavior = behavior.clone();
                thread::spawn(move || serve(stream, id, shared, behavior));
            }
        });
        *shared.acceptor.lock().unwrap() = Some(acceptor);
        Upstream { addr, shared }
    }

    /// Stops as a crashed server would: the port is closed (connects are refused from the
    /// moment this returns) and every open connection is closed.
    pub fn kill(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag, and wait until it closed the listener.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.shared.acceptor.lock().unwrap().take() {
            let _ = acceptor.join();
        }
        for stream in self.shared.open.lock().unwrap().drain(..).flatten() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Every byte received so far on connection `connection` (0 for the first accepted).
    pub fn received(&self, connection: usize) -> Vec<u8> {
        self.shared
            .received
            .lock()
            .unwrap()
            .get(connection)
            .cloned()
            .unwrap_or_default()
    }

    /// Every byte received so far, all connections in the order they were accepted.
    pub fn received_all(&self) -> Vec<u8> {
        self.shared.received.lock().unwrap().concat()
    }

    /// Every request recorded so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until at least `n` requests arrived, and returns them.
    pub fn wait_for(&self, n: usize) -> Vec<Recorded> {
        let guard = self.shared.requests.lock().unwrap();
        let (guard, _) = self
            .shared
            .arrived
            .wait_timeout_while(guard, Duration::from_secs(10), |reqs| reqs.len() < n)
            .unwrap();
        guard.clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if self.shared.stop.swap(true, Ordering::SeqCst) {
            return;
        }
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Serves one connection, then lets go of the second handle [`Upstream::kill`] keeps.
fn serve(stream: TcpStream, id: usize, shared: Arc<Shared>, behavior: Behavior) {
    serve_requests(stream, id, shared.clone(), behavior);
    if let Some(slot) = shared.open.lock().unwrap().get_mut(id) {
        *slot = None;
    }
}

fn serve_requests(stream: TcpStream, id: usize, shared: Arc<Shared>, behavior: Behavior) {
    let _ = stream.set_nodelay(true);
    let mut stream = Recording {
        stream,
        id,
        shared: shared.clone(),
    };
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut pending, id, shared.early) else {
            return;
        };
        let reply = behavior(&request);
        let record = |request: Recorded| {
            let mut requests = shared.requests.lock().unwrap();
            requests.push(request);
            shared.arrived.notify_all();
        };
        // An early-answering upstream is seen to have the request only once its answer is on
        // the wire, so a test that waits for the request and then sends the body knows the
        // answer came first (not merely the head).
        let (request, reply) = if shared.early {
            (Some(request), reply)
        } else {
            record(request);
            (None, reply)
        };
        let ok = match reply {
            Reply::Raw(bytes) => stream.stream.write_all(&bytes).is_ok(),
            Reply::RawThenClose(bytes) => {
                let _ = stream.stream.write_all(&bytes);
                let _ = stream.stream.shutdown(Shutdown::Both);
                false
            }
            Reply::Delayed(delay, bytes) => {
                thread::sleep(delay);
                stream.stream.write_all(&bytes).is_ok()
            }
            Reply::ThenLater(now, delay, later) => {
                let sent = stream.stream.write_all(&now).is_ok();
                thread::sleep(delay);
                sent && stream.stream.write_all(&later).is_ok()
            }
            Reply::Close => {
                let _ = stream.stream.shutdown(Shutdown::Both);
                false
            }
            Reply::Reset => {
                let _ = socket2::SockRef::from(&stream.stream).set_linger(Some(Duration::ZERO));
                false
            }
        };
        if let Some(request) = request {
            record(request);
        }
        if !ok {
            return;
        }
    }
}

/// An accepted connection whose received bytes are all logged in [`Shared::received`].
struct Recording {
    stream: TcpStream,
    id: usize,
    shared: Arc<Shared>,
}

impl Read for Recording {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.stream.read(buf)?;
        if let Some(log) = self.shared.received.lock().unwrap().get_mut(self.id) {
            log.extend_from_slice(&buf[..n]);
        }
        Ok(n)
    }
}

/// Reads one request (head and body by Content-Length or chunked; only the head when `early`).
/// `None` on close or garbage.
fn read_request(
    stream: &mut impl Read,
    pending: &mut Vec<u8>,
    connection: usize,
    early: bool,
) -> Option<Recorded> {
    let head_end = loop {
        if let Some(at) = find(pending, b"\r\n\r\n") {
            break at + 4;
        }
        if !fill(stream, pending) {
            return None;
        }
    };
    let raw_head = pending[..head_end].to_vec();
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut parsed = httparse::Request::new(&mut headers);
    parsed.parse(&raw_head).ok()?;
    let method = parsed.method?.to_string();
    let target = parsed.path?.to_string();
    let version = parsed.version?;
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
    pending.drain(..head_end);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let chunked =
        field("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let body = if early {
        Vec::new()
    } else if chunked {
        read_chunked(stream, pending)?
    } else {
        let len: usize = field("content-length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while pending.len() < len {
            if !fill(stream, pending) {
                return None;
            }
        }
        pending.drain(..len).collect()
    };
    Some(Recorded {
        connection,
        method,
        target,
        version,
        fields,
        body,
        raw_head,
        chunked,
    })
}

fn read_chunked(stream: &mut impl Read, pending: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(at) = find(pending, b"\r\n") {
                break at;
            }
            if !fill(stream, pending) {
                return None;
            }
        };
        let line = String::from_utf8_lossy(&pending[..line_end]).into_owned();
        let size = usize::from_str_radix(line.split(';').next()?.trim(), 16).ok()?;
        pending.drain(..line_end + 2);
        if size == 0 {
            // Trailers until the empty line.
            loop {
                let end = loop {
                    if let Some(at) = find(pending, b"\r\n") {
                        break at;
                    }
                    if !fill(stream, pending) {
                        return None;
                    }
                };
                pending.drain(..end + 2);
                if end == 0 {
                    return Some(body);
                }
            }
        }
        while pending.len() < size + 2 {
            if !fill(stream, pending) {
                return None;
            }
        }
        body.extend_from_slice(&pending[..size]);
        pending.drain(..size + 2);
    }
}

fn fill(stream: &mut impl Read, pending: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16384];
    match stream.read(&mut chunk) {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            pending.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An upstream that switches protocols: answers `101`, then sends back every byte it gets in
/// upper case until EOF, then `bye` and closes.
pub fn switcher() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        use std::io::{Read, Write};
        let Ok((mut stream, _)) = listener.accept() else {
            return;
        };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        let _ = stream.write_all(
            b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n",
        );
        let mut chunk = [0u8; 65536];
        loop {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let upper: Vec<u8> = chunk[..n].iter().map(u8::to_ascii_uppercase).collect();
                    if stream.write_all(&upper).is_err() {
                        return;
                    }
                }
            }
        }
        let _ = stream.write_all(b"bye");
    });
    addr
}
