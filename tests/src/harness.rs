//! Starting coregate in-process for a test: a configuration text in, a running server on an
//! ephemeral port out, stopped (drained for zero seconds) when dropped.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use coregate_engine::config::{Config, Plan};
use coregate_engine::runtime::Server;

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
        let plan = Plan::for_config(&config)
            .unwrap_or_else(|errors| panic!("test plan invalid:\n{errors}"));
        let name = config.listeners[0].name.clone();
        let server = Server::start(Arc::new(config), &plan)
            .unwrap_or_else(|err| panic!("coregate did not start: {err}"));
        let addr = server
            .listener_addr(&name)
            .expect("the first listener is bound");
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

/// A configuration with one listener on an ephemeral port, one upstream at `upstream` and the
/// given extra TOML (routes and any other sections) appended. `io` is "uring" or "glommio".
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
/// and `extra`.
pub fn config_with_upstreams(io: &str, cores: &str, upstreams: &str, extra: &str) -> String {
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

{upstreams}

{extra}
"#
    )
}

/// The mechanisms every end-to-end behaviour is checked with.
pub const MECHANISMS: [&str; 2] = ["uring", "glommio"];
