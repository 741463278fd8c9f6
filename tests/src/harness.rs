//! Starting coregate in-process for a test: a configuration text (or file) in, a running server
//! on an ephemeral port out, stopped (drained for zero seconds) when dropped. Also: configuration
//! files a test can rewrite (for reloads), and a client for the admin API.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use coregate_engine::config::{Config, Plan, Resolve};
use coregate_engine::runtime::{Server, StartError};

use crate::client::{Client, Response};
use crate::upstream::Upstream;

/// A running coregate.
pub struct Coregate {
    server: Option<Server>,
    addr: SocketAddr,
}

impl Coregate {
    /// Starts coregate with `toml`; its first listener should bind `127.0.0.1:0`.
    pub fn start(toml: &str) -> Coregate {
        let config = Config::parse(toml, "test.toml")
            .unwrap_or_else(|errors| panic!("test config invalid:\n{errors}"));
        Coregate::start_config(config)
    }

    /// Starts coregate with `toml`, resolving upstream names with `resolver` (when the file
    /// loads, on reloads and for `resolve_every`).
    pub fn start_with_resolver(toml: &str, resolver: Arc<dyn Resolve + Send + Sync>) -> Coregate {
        let config = Config::parse_with(toml, "test.toml", &*resolver)
            .unwrap_or_else(|errors| panic!("test config invalid:\n{errors}"));
        let plan = Plan::for_config(&config)
            .unwrap_or_else(|errors| panic!("test plan invalid:\n{errors}"));
        let first = FirstListener::of(&config);
        let server = Server::start_with(Arc::new(config), &plan, resolver, Default::default());
        Coregate::serving(server, first)
    }

    /// Starts coregate from a file, as `coregate run` does, so that it can be reloaded.
    pub fn start_file(path: &Path) -> Coregate {
        let config =
            Config::load(path).unwrap_or_else(|errors| panic!("test config invalid:\n{errors}"));
        Coregate::start_config(config)
    }

    fn start_config(config: Config) -> Coregate {
        let plan = Plan::for_config(&config)
            .unwrap_or_else(|errors| panic!("test plan invalid:\n{errors}"));
        let first = FirstListener::of(&config);
        Coregate::serving(Server::start(Arc::new(config), &plan), first)
    }

    /// The started `server`, its first listener's address noted as speaking TLS or not, for
    /// the clients of [`Client::connect`]. Both ways: a port a stopped TLS proxy had may be
    /// bound next by a plain one (tests run in parallel), whose clients must then speak plain
    /// HTTP.
    fn serving(server: Result<Server, StartError>, first: FirstListener) -> Coregate {
        let server = server.unwrap_or_else(|err| panic!("coregate did not start: {err}"));
        let addr = server
            .listener_addr(&first.name)
            .expect("the first listener is bound");
        crate::tls::note_speaks_tls(addr, first.tls);
        Coregate {
            server: Some(server),
            addr,
        }
    }

    /// The first listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    /// The admin listener's address (the configuration must have `[admin]`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.server()
            .admin_addr()
            .expect("the configuration has an [admin] section")
    }

    /// Drains with `grace` and waits for every shard to exit.
    pub fn shutdown(mut self, grace: Duration) {
        if let Some(server) = self.server.take() {
            server.shutdown(grace);
            server.wait();
        }
    }
}

impl Drop for Coregate {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown(Duration::ZERO);
            server.wait();
        }
    }
}

/// The name of a configuration's first listener, and whether it terminates TLS.
struct FirstListener {
    name: String,
    tls: bool,
}

impl FirstListener {
    fn of(config: &Config) -> FirstListener {
        FirstListener {
            name: config.listeners[0].name.to_string(),
            tls: config.listeners[0].tls.is_some(),
        }
    }
}

/// A route that sends every request to the upstream "up" of [`config`].
pub const FORWARD_ALL: &str = "[[route]]\npath_prefix = \"/\"\nupstream = \"up\"\n";

/// coregate on one shard (CPU 0) in front of `upstream`, with `extra` TOML (routes and any
/// other sections).
pub fn start(io: &str, upstream: &Upstream, extra: &str) -> Coregate {
    Coregate::start(&config(io, "0", upstream.addr(), extra))
}

/// Sends raw `request` bytes on a new connection to `proxy`; the response and whether coregate
/// then closed the connection.
pub fn exchange(proxy: &Coregate, request: &[u8]) -> (Response, bool) {
    let mut client = Client::connect(proxy.addr());
    client.send_until_refused(request);
    let response = client
        .read_response(false)
        .unwrap_or_else(|| panic!("no response to {:?}", String::from_utf8_lossy(request)));
    let closed = client.is_closed();
    (response, closed)
}

/// A configuration with one listener on an ephemeral port, one upstream at `upstream` and the
/// given extra TOML (routes and any other sections) appended. `io` is one of [`MECHANISMS`].
pub fn config(io: &str, cores: &str, upstream: SocketAddr, extra: &str) -> String {
    config_with(io, cores, &format!("endpoints = [\"{upstream}\"]"), extra)
}

/// Like [`config`], with the body of the `[[upstream]]` table (named "up") written out, for
/// tests that set pool limits or timeouts.
pub fn config_with(io: &str, cores: &str, upstream_body: &str, extra: &str) -> String {
    config_with_upstreams(
        io,
        cores,
        &format!("[[upstream]]\nname = \"up\"\n{upstream_body}\n"),
        extra,
    )
}

/// The runtime and listener every test uses, then `upstreams` (whole `[[upstream]]` tables)
/// and `extra`. With `io` = [`TLS`], the listener terminates TLS with the test certificate.
pub fn config_with_upstreams(io: &str, cores: &str, upstreams: &str, extra: &str) -> String {
    let (io, tls) = match io {
        TLS => ("uring", crate::tls::listener_tls()),
        io => (io, String::new()),
    };
    format!(
        r#"
[runtime]
cores = "{cores}"
io = "{io}"
buffers_per_shard = 512

[runtime.glommio]
io_memory = "1MiB"

[[listener]]
name = "test"
bind = "127.0.0.1:0"
{tls}

{upstreams}

{extra}
"#
    )
}

/// The I/O mechanisms every end-to-end behaviour is checked with: each shard's own io_uring,
/// the only one since glommio's `TcpStream` path was retired. A new way of carrying the same
/// requests (a transport such as TLS) joins this list, so every case runs over it too.
pub const MECHANISMS: [&str; 1] = ["uring"];

/// The ring with TLS terminated on the listener: a transport over [`MECHANISMS`]' ring.
pub const TLS: &str = "uring+tls";

/// What the conformance suite's cases loop over: every mechanism in plain text, and the ring
/// with TLS (clients made by [`Client::connect`] and [`exchange`] speak TLS to it).
pub const TRANSPORTS: [&str; 2] = ["uring", TLS];

/// A configuration file in the temporary directory, unique to the test that made it; rewrite it
/// and reload to change what coregate runs. Removed when dropped.
pub struct ConfigFile {
    path: PathBuf,
}

impl ConfigFile {
    pub fn new(text: &str) -> ConfigFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("coregate-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the test directory");
        let path = dir.join(format!(
            "config-{}.toml",
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let file = ConfigFile { path };
        file.write(text);
        file
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&self, text: &str) {
        std::fs::write(&self.path, text).expect("write the test configuration");
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// An admin API answer: the status and the body as text.
#[derive(Debug)]
pub struct AdminReply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Sends one request to the admin API (`method path`, with a bearer token when given) and
/// reads the answer to the end (the admin API closes after each response).
pub fn admin(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> AdminReply {
    let mut stream = TcpStream::connect(addr).expect("connect to the admin API");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nhost: admin\r\ncontent-length: 0\r\n");
    if let Some(token) = token {
        request.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("send to the admin API");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the admin answer");
    let text = String::from_utf8(raw).expect("the admin API answers text");
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("a complete head from the admin API");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status code");
    AdminReply {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    }
}
