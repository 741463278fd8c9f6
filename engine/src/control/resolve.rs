//! Endpoint names resolved again while coregate runs, for upstreams that set `resolve_every`:
//! endpoints behind DNS (a service whose instances come and go) follow it without a reload.
//!
//! Owns the schedule of each upstream and [`re_resolve`], the pure step: each name is resolved
//! again; a name that resolves to nothing or fails keeps the addresses it had (a resolver
//! outage must not empty an upstream); the endpoints written as addresses stay as they are.
//! When the set of addresses changes, the control plane runs the amended configuration as a
//! new generation on every shard, through the same mailboxes and acknowledgements as a reload
//! ([`ControlPlane::amend`]): pools and health of the endpoints that stay are kept, new ones
//! start in slow start when it is configured. Every change and failure is logged (a failure
//! once, until the name resolves again) and counted for `/metrics`.
//!
//! Runs on a thread of its own (`coregate-resolve`, started by `runtime`): a resolver that
//! takes seconds to answer delays nothing else.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::plane::ControlPlane;
use crate::config::{Config, Resolve, UpstreamConfig};

/// Longest the thread sleeps: how soon it notices a reload or a shutdown.
const IDLE_WAIT: Duration = Duration::from_millis(100);

/// What resolving an upstream's names again found.
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The names resolved (host, port, weight), to check they are still the upstream's.
    pub of: Vec<(Box<str>, u16, u32)>,
    pub endpoints: Vec<SocketAddr>,
    pub weights: Vec<u32>,
    /// Each name with what it resolves to now (or still, when it failed).
    pub addrs: Vec<Vec<SocketAddr>>,
    /// Names whose addresses changed: `(host:port, before, after)`.
    pub changes: Vec<(String, Vec<SocketAddr>, Vec<SocketAddr>)>,
    /// Names that did not resolve (kept their addresses): `(host:port, why)`.
    pub failures: Vec<(String, String)>,
}

/// Resolves `upstream`'s names again with `resolver`.
pub fn re_resolve(upstream: &UpstreamConfig, resolver: &dyn Resolve) -> Resolved {
    let named: Vec<SocketAddr> = upstream
        .names
        .iter()
        .flat_map(|name| name.addrs.iter().copied())
        .collect();
    let mut endpoints = Vec::new();
    let mut weights = Vec::new();
    // The endpoints written as addresses first, as they were.
    for (addr, weight) in upstream.endpoints.iter().zip(&upstream.weights) {
        if !named.contains(addr) {
            endpoints.push(*addr);
            weights.push(*weight);
        }
    }
    let mut resolved = Resolved {
        of: names_of(upstream),
        endpoints: Vec::new(),
        weights: Vec::new(),
        addrs: Vec::new(),
        changes: Vec::new(),
        failures: Vec::new(),
    };
    for name in &upstream.names {
        let label = format!("{}:{}", name.host, name.port);
        let now = match resolver.resolve(&name.host, name.port) {
            Ok(addrs) if !addrs.is_empty() => addrs,
            Ok(_) => {
                resolved
                    .failures
                    .push((label, "resolves to no address".into()));
                name.addrs.clone()
            }
            Err(err) => {
                resolved.failures.push((label, err.to_string()));
                name.addrs.clone()
            }
        };
        let mut before = name.addrs.clone();
        let mut after = now.clone();
        before.sort();
        after.sort();
        if before != after {
            resolved
                .changes
                .push((format!("{}:{}", name.host, name.port), before, after));
        }
        for addr in &now {
            if !endpoints.contains(addr) {
                endpoints.push(*addr);
                weights.push(name.weight);
            }
        }
        resolved.addrs.push(now);
    }
    resolved.endpoints = endpoints;
    resolved.weights = weights;
    resolved
}

fn names_of(upstream: &UpstreamConfig) -> Vec<(Box<str>, u16, u32)> {
    upstream
        .names
        .iter()
        .map(|name| (name.host.clone(), name.port, name.weight))
        .collect()
}

/// The resolve thread: resolves each upstream's names when due until the plane stops.
pub(crate) fn run(plane: &ControlPlane, resolver: &dyn Resolve) {
    let mut due: HashMap<Box<str>, Instant> = HashMap::new();
    // Names whose last resolution failed, so a lasting failure is logged once.
    let mut failing: HashSet<String> = HashSet::new();
    while !plane.stopping() {
        let now = Instant::now();
        let config = plane.config();
        let mut next = now + IDLE_WAIT;
        let mut results: Vec<(Box<str>, Resolved)> = Vec::new();
        for upstream in &config.upstreams {
            let Some(every) = upstream.resolve_every else {
                continue;
            };
            if upstream.names.is_empty() {
                continue;
            }
            let at = *due.entry(upstream.name.clone()).or_insert(now + every);
            if at > now {
                next = next.min(at);
                continue;
            }
            due.insert(upstream.name.clone(), now + every);
            results.push((upstream.name.clone(), re_resolve(upstream, resolver)));
        }
        for (upstream, resolved) in &results {
            report(plane, upstream, resolved, &mut failing);
        }
        let changed: Vec<&(Box<str>, Resolved)> = results
            .iter()
            .filter(|(_, resolved)| !resolved.changes.is_empty())
            .collect();
        if !changed.is_empty() {
            let amended = plane.amend(|current| amend(current, &changed));
            if let Some(Err(err)) = amended {
                eprintln!("coregate: applying re-resolved endpoints: {err}");
            }
        }
        std::thread::sleep(
            next.saturating_duration_since(Instant::now())
                .min(IDLE_WAIT),
        );
    }
}

/// Logs and counts what a resolution found.
fn report(
    plane: &ControlPlane,
    upstream: &str,
    resolved: &Resolved,
    failing: &mut HashSet<String>,
) {
    for (name, before, after) in &resolved.changes {
        eprintln!(
            "coregate: upstream {upstream:?}: {name} now resolves to {after:?} (was {before:?})"
        );
    }
    // Keyed by upstream and name ("up svc.test:80"); upstream names have no spaces.
    let prefix = format!("{upstream} ");
    let failed: Vec<String> = resolved
        .failures
        .iter()
        .map(|(name, _)| format!("{prefix}{name}"))
        .collect();
    for ((name, why), key) in resolved.failures.iter().zip(&failed) {
        if failing.insert(key.clone()) {
            eprintln!(
                "coregate: upstream {upstream:?}: cannot resolve {name} ({why}); keeping its \
                 last addresses"
            );
        }
    }
    failing.retain(|key| !key.starts_with(&prefix) || failed.contains(key));
    plane.count_resolution(
        upstream,
        resolved.changes.len() as u64,
        resolved.failures.len() as u64,
    );
}

/// `current` with the re-resolved endpoints of `changed` (upstreams a reload removed or
/// rewrote since are skipped); `None` when nothing differs any more.
fn amend(current: &Config, changed: &[&(Box<str>, Resolved)]) -> Option<Config> {
    let mut config = current.clone();
    let mut any = false;
    for (name, resolved) in changed {
        let Some(upstream) = config.upstreams.iter_mut().find(|u| u.name == *name) else {
            continue;
        };
        if names_of(upstream) != resolved.of
            || (upstream.endpoints == resolved.endpoints && upstream.weights == resolved.weights)
        {
            continue;
        }
        upstream.endpoints = resolved.endpoints.clone();
        upstream.weights = resolved.weights.clone();
        for (named, addrs) in upstream.names.iter_mut().zip(&resolved.addrs) {
            named.addrs = addrs.clone();
        }
        any = true;
    }
    any.then_some(config)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Mutex;

    use super::*;
    use crate::config::NamedEndpoint;

    /// Answers `svc.test` from a list the test changes; an empty list is an error.
    struct Changing(Mutex<Vec<&'static str>>);

    impl Resolve for Changing {
        fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
            let ips = self.0.lock().unwrap().clone();
            if host != "svc.test" || ips.is_empty() {
                return Err(io::Error::other("no such host"));
            }
            Ok(ips
                .iter()
                .map(|ip| SocketAddr::new(ip.parse().unwrap(), port))
                .collect())
        }
    }

    fn upstream() -> UpstreamConfig {
        let text = r#"
[[listener]]
name = "l"
bind = "127.0.0.1:0"
[[upstream]]
name = "up"
endpoints = ["10.0.0.1:80", { address = "svc.test:80", weight = 2 }]
resolve_every = "1s"
"#;
        let resolver = Changing(Mutex::new(vec!["10.0.1.1", "10.0.1.2"]));
        let config = Config::parse_with(text, "t.toml", &resolver).unwrap();
        config.upstreams[0].clone()
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_changed_name_changes_only_its_endpoints() {
        let upstream = upstream();
        assert_eq!(
            upstream.names,
            vec![NamedEndpoint {
                host: "svc.test".into(),
                port: 80,
                weight: 2,
                addrs: vec![addr("10.0.1.1:80"), addr("10.0.1.2:80")],
            }]
        );
        let resolver = Changing(Mutex::new(vec!["10.0.1.2", "10.0.1.3"]));
        let resolved = re_resolve(&upstream, &resolver);
        assert_eq!(
            resolved.endpoints,
            vec![
                addr("10.0.0.1:80"),
                addr("10.0.1.2:80"),
                addr("10.0.1.3:80")
            ]
        );
        assert_eq!(resolved.weights, vec![1, 2, 2]);
        assert_eq!(resolved.changes.len(), 1);
        assert!(resolved.failures.is_empty());
    }

    #[test]
    fn a_name_that_stops_resolving_keeps_its_last_addresses() {
        let upstream = upstream();
        let resolver = Changing(Mutex::new(Vec::new()));
        let resolved = re_resolve(&upstream, &resolver);
        assert_eq!(resolved.endpoints, upstream.endpoints);
        assert!(resolved.changes.is_empty());
        assert_eq!(resolved.failures.len(), 1);
    }

    #[test]
    fn the_same_addresses_in_another_order_are_no_change() {
        let upstream = upstream();
        let resolver = Changing(Mutex::new(vec!["10.0.1.2", "10.0.1.1"]));
        assert!(re_resolve(&upstream, &resolver).changes.is_empty());
    }
}
