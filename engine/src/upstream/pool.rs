//! Keep-alive connections from one shard to one upstream endpoint.
//!
//! Each shard has its own pool per endpoint: no locks, no sharing. Idle connections are reused
//! last-in first-out (the most recently used one is the most likely to still be open and warm),
//! dropped when idle longer than the idle timeout, and retired after a maximum number of
//! requests. While a connection idles, anything its upstream sends (or a close) is noticed (a
//! poll on the shard's ring, see `io::Conn::watch_while_idle`), and such a connection is closed
//! instead of reused: bytes that arrive unasked would be read as the next client's response. A
//! pooled connection can still turn out dead when used (closed just then); the pipeline then
//! retries an idempotent request once on a fresh connection.
//!
//! A pool of a TLS upstream ([`PoolTls`]) runs the TLS handshake on every new connection
//! before lending it; a failed handshake (an untrusted certificate, say) is a failed connect,
//! answered 502, and said in one log line with rustls's reason.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::client::ClientConfig;
use rustls::pki_types::ServerName;

use crate::io::{Conn, IoShard};

/// Pool limits; changeable on reload without dropping the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolSettings {
    /// Idle connections kept at most (per shard, per endpoint).
    pub max_idle: usize,
    /// An idle connection older than this is closed instead of reused.
    pub idle_timeout: Duration,
    /// Requests served on one connection before it is retired; 0 means no limit.
    pub max_requests: u32,
}

/// Counters and gauges of one pool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// New connections established.
    pub connects: u64,
    /// Connection attempts that failed (refused, unreachable, timed out).
    pub connect_failures: u64,
    /// Requests that went out on a pooled connection.
    pub reuses: u64,
    /// Connections checked out right now.
    pub active: u64,
    /// Idle connections right now.
    pub idle: u64,
}

struct Idle {
    conn: Conn,
    since: Instant,
    served: u32,
}

/// One shard's connections to one endpoint.
pub struct EndpointPool {
    addr: SocketAddr,
    idle: RefCell<Vec<Idle>>,
    settings: Cell<PoolSettings>,
    stats: Cell<PoolStats>,
    /// The shard drains: connections given back are closed (see [`EndpointPool::stop_pooling`]).
    closed: Cell<bool>,
    /// TLS towards the endpoint, when its upstream has `tls`.
    tls: Option<PoolTls>,
}

/// TLS towards one endpoint: the shard's client configuration and the name sent and verified.
pub struct PoolTls {
    pub config: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

/// A connection taken from (or made for) a pool. Give it back with [`EndpointPool::give_back`]
/// when the exchange left it reusable; dropping it closes it.
pub struct Checkout {
    pool: Rc<EndpointPool>,
    conn: Option<Conn>,
    served: u32,
    reused: bool,
}

impl Checkout {
    pub fn conn(&mut self) -> &mut Conn {
        self.conn
            .as_mut()
            .expect("checkout holds its connection until given back")
    }

    /// Whether this connection served earlier requests (and so may have been closed by the
    /// upstream while idle).
    pub fn reused(&self) -> bool {
        self.reused
    }

    pub fn pool(&self) -> &Rc<EndpointPool> {
        &self.pool
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        self.pool.update(|stats| stats.active -= 1);
    }
}

impl EndpointPool {
    pub fn new(addr: SocketAddr, settings: PoolSettings) -> Rc<EndpointPool> {
        EndpointPool::with_tls(addr, settings, None)
    }

    /// A pool whose connections speak TLS when `tls` is given.
    pub fn with_tls(
        addr: SocketAddr,
        settings: PoolSettings,
        tls: Option<PoolTls>,
    ) -> Rc<EndpointPool> {
        Rc::new(EndpointPool {
            addr,
            idle: RefCell::new(Vec::with_capacity(settings.max_idle)),
            settings: Cell::new(settings),
            stats: Cell::new(PoolStats::default()),
            closed: Cell::new(false),
            tls,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn settings(&self) -> PoolSettings {
        self.settings.get()
    }

    /// Applies new limits (reload); excess idle connections are closed.
    pub fn set_settings(&self, settings: PoolSettings) {
        self.settings.set(settings);
        let mut idle = self.idle.borrow_mut();
        if idle.len() > settings.max_idle {
            let excess = idle.len() - settings.max_idle;
            idle.drain(..excess);
        }
        let count = idle.len() as u64;
        drop(idle);
        self.update(|stats| stats.idle = count);
    }

    pub fn stats(&self) -> PoolStats {
        self.stats.get()
    }

    fn update(&self, f: impl FnOnce(&mut PoolStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    /// The most recently returned idle connection that has not idled too long.
    pub fn take_idle(self: &Rc<Self>, now: Instant) -> Option<Checkout> {
        let idle_timeout = self.settings.get().idle_timeout;
        let mut idle = self.idle.borrow_mut();
        while let Some(mut entry) = idle.pop() {
            // An upstream that sent anything while idle (or closed) is not asked again.
            if now.saturating_duration_since(entry.since) < idle_timeout
                && entry.conn.end_idle_watch()
            {
                let count = idle.len() as u64;
                drop(idle);
                self.update(|stats| {
                    stats.idle = count;
                    stats.active += 1;
                    stats.reuses += 1;
                });
                return Some(Checkout {
                    pool: self.clone(),
                    conn: Some(entry.conn),
                    served: entry.served,
                    reused: true,
                });
            }
            // Too old: dropping it closes it.
        }
        drop(idle);
        self.update(|stats| stats.idle = 0);
        None
    }

    /// Opens a new connection to the endpoint.
    pub async fn connect(
        self: &Rc<Self>,
        io: &Rc<IoShard>,
        deadline: Instant,
    ) -> io::Result<Checkout> {
        let connected = match io.connect(self.addr, deadline).await {
            Ok(conn) => self.start_tls(conn, deadline).await,
            Err(err) => Err(err),
        };
        match connected {
            Ok(conn) => {
                self.update(|stats| {
                    stats.connects += 1;
                    stats.active += 1;
                });
                Ok(Checkout {
                    pool: self.clone(),
                    conn: Some(conn),
                    served: 0,
                    reused: false,
                })
            }
            Err(err) => {
                self.update(|stats| stats.connect_failures += 1);
                Err(err)
            }
        }
    }

    /// The TLS handshake of a new connection, when the upstream speaks TLS. A failure is an
    /// `InvalidData` error (a timeout stays `TimedOut`), logged once with rustls's reason.
    async fn start_tls(&self, mut conn: Conn, deadline: Instant) -> io::Result<Conn> {
        let Some(tls) = &self.tls else {
            return Ok(conn);
        };
        conn.start_tls_client(tls.config.clone(), tls.name.clone())?;
        match conn.handshake_with_error(Some(deadline)).await {
            Ok(_) => Ok(conn),
            Err((failure, reason)) => {
                eprintln!(
                    "coregate: upstream {} ({}): TLS handshake failed, answering 502: {reason}",
                    self.addr,
                    tls.name.to_str()
                );
                let kind = match failure {
                    crate::io::HandshakeFailure::Timeout => io::ErrorKind::TimedOut,
                    _ => io::ErrorKind::InvalidData,
                };
                Err(io::Error::new(kind, reason))
            }
        }
    }

    /// Returns a connection after a complete, clean exchange. It is closed instead when the pool
    /// is full, the connection served its maximum number of requests, or the pool stopped
    /// pooling (the shard drains).
    pub fn give_back(&self, mut checkout: Checkout, now: Instant) {
        let settings = self.settings.get();
        let served = checkout.served.saturating_add(1);
        let retired = settings.max_requests != 0 && served >= settings.max_requests;
        let mut idle = self.idle.borrow_mut();
        if retired || idle.len() >= settings.max_idle || self.closed.get() {
            return;
        }
        let mut conn = checkout
            .conn
            .take()
            .expect("checkout holds its connection until given back");
        conn.watch_while_idle();
        idle.push(Idle {
            conn,
            since: now,
            served,
        });
        let count = idle.len() as u64;
        drop(idle);
        self.update(|stats| stats.idle = count);
    }

    /// Closes every idle connection and every connection given back from now on: the shard
    /// drains, so nothing will be reused, and an idle connection's watch would only keep the
    /// shard's ring busy while it stops.
    pub fn stop_pooling(&self) {
        self.closed.set(true);
        self.clear();
    }

    /// Closes every idle connection (shutdown, or the endpoint left the configuration).
    pub fn clear(&self) {
        self.idle.borrow_mut().clear();
        self.update(|stats| stats.idle = 0);
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::{Duration, Instant};

    use super::{EndpointPool, PoolSettings};
    use crate::io::testing;

    /// A connection given back once the shard drains is closed, not pooled: a pooled one would
    /// start a watch on a ring that is stopping. Before: it went back to the pool after the
    /// drain had cleared it (`idle` 1).
    #[test]
    fn a_connection_given_back_while_draining_is_closed() {
        let shard = testing::shard();
        let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
        let pool = EndpointPool::new(
            upstream.local_addr().unwrap(),
            PoolSettings {
                max_idle: 8,
                idle_timeout: Duration::from_secs(60),
                max_requests: 0,
            },
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        let checkout = testing::run(&shard, pool.connect(&shard, deadline)).unwrap();
        pool.stop_pooling();
        pool.give_back(checkout, shard.now());
        assert_eq!(pool.stats().idle, 0);
        assert_eq!(shard.ring_in_flight(), 0, "no watch was started");
    }
}
