//! Upstreams as one shard sees them: named groups of endpoints with their timeouts, each
//! endpoint with the shard's own keep-alive pool, and the choice of endpoint per request.
//!
//! Pools outlive configuration snapshots: [`Pools`] keeps one pool per endpoint address (and, for
//! a TLS upstream, per TLS settings: `tls::UpstreamTls::pool_key`), and a new snapshot that
//! still names an endpoint gets the same pool back (no reconnect storm on reload).

pub mod balance;
pub mod pool;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

pub use balance::RoundRobin;
pub use pool::{Checkout, EndpointPool, PoolSettings, PoolStats, PoolTls};

use crate::request::RequestView;
use crate::tls::UpstreamTls;

/// How long each step of an exchange with an upstream may take.
#[derive(Clone, Copy, Debug)]
pub struct UpstreamTimeouts {
    /// To establish a connection.
    pub connect: Duration,
    /// From the request's last byte to the response head.
    pub response: Duration,
    /// For the next piece of either body to move.
    pub body: Duration,
}

/// One configured upstream, as built for one snapshot on one shard.
pub struct UpstreamGroup {
    pub name: Box<str>,
    endpoints: Vec<Rc<EndpointPool>>,
    pub timeouts: UpstreamTimeouts,
    balance: RoundRobin,
}

impl UpstreamGroup {
    pub fn new(
        name: Box<str>,
        endpoints: Vec<Rc<EndpointPool>>,
        timeouts: UpstreamTimeouts,
        shard_index: usize,
    ) -> UpstreamGroup {
        debug_assert!(!endpoints.is_empty(), "validated configs have endpoints");
        UpstreamGroup {
            name,
            endpoints,
            timeouts,
            balance: RoundRobin::starting_at(shard_index),
        }
    }

    /// The endpoint for `request`. Policies that hash (a header, a cookie, the client's
    /// address) read the request; round-robin does not.
    pub fn pick(&self, request: &RequestView<'_>) -> &Rc<EndpointPool> {
        &self.endpoints[self.balance.pick(self.endpoints.len(), request)]
    }

    pub fn endpoints(&self) -> &[Rc<EndpointPool>] {
        &self.endpoints
    }
}

/// Every endpoint pool of one shard, by address and TLS settings (`None`: plain).
#[derive(Default)]
pub struct Pools {
    by_addr: HashMap<(SocketAddr, Option<Arc<str>>), Rc<EndpointPool>>,
}

impl Pools {
    /// The pool for `addr`, created if new, with `settings` applied either way.
    pub fn get_or_create(&mut self, addr: SocketAddr, settings: PoolSettings) -> Rc<EndpointPool> {
        self.get_or_create_tls(addr, settings, None)
    }

    /// The pool for `addr` with these TLS settings (connections made with other settings are
    /// never lent to it), created if new with the shard's own client configuration.
    pub fn get_or_create_tls(
        &mut self,
        addr: SocketAddr,
        settings: PoolSettings,
        tls: Option<&UpstreamTls>,
    ) -> Rc<EndpointPool> {
        let key = (addr, tls.map(|tls| tls.pool_key.clone()));
        let pool = self.by_addr.entry(key).or_insert_with(|| {
            let tls = tls.map(|tls| PoolTls {
                config: tls.client_config(),
                name: tls.server_name(addr),
            });
            EndpointPool::with_tls(addr, settings, tls)
        });
        if pool.settings() != settings {
            pool.set_settings(settings);
        }
        pool.clone()
    }

    /// Closes and forgets pools whose endpoint is not in `keep`.
    pub fn retain(&mut self, keep: impl Fn(&SocketAddr) -> bool) {
        self.retain_keyed(|addr, _| keep(addr));
    }

    /// Closes and forgets pools whose endpoint and TLS settings (`UpstreamTls::pool_key`) are
    /// not in `keep`.
    pub fn retain_keyed(&mut self, keep: impl Fn(&SocketAddr, Option<&str>) -> bool) {
        self.by_addr.retain(|(addr, tls), pool| {
            let kept = keep(addr, tls.as_deref());
            if !kept {
                pool.clear();
            }
            kept
        });
    }

    pub fn iter(&self) -> impl Iterator<Item = &Rc<EndpointPool>> {
        self.by_addr.values()
    }

    /// Closes every idle connection.
    pub fn clear_idle(&self) {
        for pool in self.by_addr.values() {
            pool.clear();
        }
    }
}
