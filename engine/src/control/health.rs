//! Upstream health, decided in one place for every shard: the control plane's health thread.
//!
//! Owns the [`Board`]: per upstream and endpoint, the authoritative ejection (until when, how
//! many in a row), the active check's finding and its rise/fall counts, and when each next
//! check is due. The thread (`run`, started by `runtime`) waits for three things:
//!
//! - a shard's [`Report`] that its outcomes ejected an endpoint: the board confirms it (and
//!   sets its length: the n-th ejection in a row lasts n base ejection times, up to the
//!   maximum; each base ejection time back in rotation forgives one) or refuses it when the
//!   upstream already has `max_ejection_percent` of its endpoints out;
//! - the end of an ejection;
//! - an active check falling due, or finishing (`probe.rs` runs them, all at once, without
//!   blocking on any).
//!
//! Each decision becomes a [`Verdict`] sent to every shard's mailbox at once, the reporting
//! shard included, so every shard applies the same state within a mailbox's latency (the
//! target is 100 ms; a report is relayed within microseconds, since the thread blocks on the
//! report channel itself). No shard ever asks anything: verdicts are pushed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::plane::ControlPlane;
use super::probe::{Probe, Prober};
use crate::config::Config;
use crate::upstream::outlier::{ejection_time, max_ejected};
use crate::upstream::{Change, HealthCheck, OutlierSettings, Report, Verdict};

/// Longest the thread sleeps with nothing due: how soon it notices a reload or a shutdown.
pub const IDLE_WAIT: Duration = Duration::from_millis(100);

/// One endpoint of one upstream, as the board knows it.
#[derive(Clone, Debug)]
struct EndpointRecord {
    addr: SocketAddr,
    ejected_until: Option<Instant>,
    /// Ejections in a row (forgiven one per base ejection time back in rotation).
    ejections: u32,
    /// When its last ejection ended.
    returned_at: Option<Instant>,
    /// The active check finds it down.
    down: bool,
    /// Active checks in a row that passed / failed.
    passes: u32,
    fails: u32,
    /// When its next active check starts.
    next_check: Option<Instant>,
}

impl EndpointRecord {
    fn new(addr: SocketAddr) -> EndpointRecord {
        EndpointRecord {
            addr,
            ejected_until: None,
            ejections: 0,
            returned_at: None,
            down: false,
            passes: 0,
            fails: 0,
            next_check: None,
        }
    }

    fn ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }
}

/// One upstream, as the board knows it.
#[derive(Debug)]
struct UpstreamRecord {
    name: Box<str>,
    outlier: OutlierSettings,
    check: Option<HealthCheck>,
    endpoints: Vec<EndpointRecord>,
}

/// The control plane's record of every upstream's health.
#[derive(Debug, Default)]
pub struct Board {
    upstreams: Vec<UpstreamRecord>,
    /// The configuration the board follows (compared by pointer).
    config: Option<Arc<Config>>,
}

impl Board {
    /// Follows `config`: upstreams and endpoints it still names keep their records; new ones
    /// start healthy, their first active check due within one interval (spread, so checks do
    /// not all start at once).
    pub fn follow(&mut self, config: &Arc<Config>, now: Instant) {
        if self.config.as_ref().is_some_and(|c| Arc::ptr_eq(c, config)) {
            return;
        }
        let mut old: HashMap<(Box<str>, SocketAddr), EndpointRecord> = HashMap::new();
        for upstream in self.upstreams.drain(..) {
            for endpoint in upstream.endpoints {
                old.insert((upstream.name.clone(), endpoint.addr), endpoint);
            }
        }
        for upstream in &config.upstreams {
            let check = upstream.health_check.clone();
            let count = upstream.endpoints.len().max(1) as u32;
            let endpoints = upstream
                .endpoints
                .iter()
                .enumerate()
                .map(|(i, addr)| {
                    let mut record = old
                        .remove(&(upstream.name.clone(), *addr))
                        .unwrap_or_else(|| EndpointRecord::new(*addr));
                    match &check {
                        Some(check) if record.next_check.is_none() => {
                            record.next_check = Some(now + check.interval * i as u32 / count);
                        }
                        Some(_) => {}
                        None => {
                            record.next_check = None;
                            record.down = false;
                        }
                    }
                    record
                })
                .collect();
            self.upstreams.push(UpstreamRecord {
                name: upstream.name.clone(),
                outlier: upstream.settings.outlier,
                check,
                endpoints,
            });
        }
        self.config = Some(config.clone());
    }

    /// A shard's ejection: confirmed (with its length), or refused when the upstream has
    /// `max_ejection_percent` of its endpoints out already. An endpoint already ejected gets its
    /// current verdict again (another shard reported it first).
    pub fn reported(&mut self, report: &Report, now: Instant) -> Option<Verdict> {
        let upstream = self
            .upstreams
            .iter_mut()
            .find(|u| u.name == report.upstream)?;
        let ejected = upstream.endpoints.iter().filter(|e| e.ejected(now)).count();
        let limit = max_ejected(&upstream.outlier, upstream.endpoints.len());
        let outlier = upstream.outlier;
        let record = upstream
            .endpoints
            .iter_mut()
            .find(|e| e.addr == report.endpoint)?;
        let change = if record.ejected(now) {
            Change::Ejected {
                until: record.ejected_until?,
                ejections: record.ejections,
            }
        } else if ejected >= limit {
            Change::Refused
        } else {
            if let Some(returned) = record.returned_at {
                let back = now.saturating_duration_since(returned);
                let base = outlier.base_ejection_time.as_nanos().max(1);
                let forgiven = (back.as_nanos() / base).min(u128::from(u32::MAX)) as u32;
                record.ejections = record.ejections.saturating_sub(forgiven);
            }
            record.ejections = record.ejections.saturating_add(1);
            let until = now + ejection_time(&outlier, record.ejections);
            record.ejected_until = Some(until);
            Change::Ejected {
                until,
                ejections: record.ejections,
            }
        };
        Some(Verdict {
            upstream: upstream.name.clone(),
            endpoint: record.addr,
            change,
        })
    }

    /// Ends the ejections due by `now`.
    pub fn returns(&mut self, now: Instant, verdicts: &mut Vec<Verdict>) {
        for upstream in &mut self.upstreams {
            for record in &mut upstream.endpoints {
                if let Some(until) = record.ejected_until
                    && until <= now
                {
                    record.ejected_until = None;
                    record.returned_at = Some(until);
                    verdicts.push(Verdict {
                        upstream: upstream.name.clone(),
                        endpoint: record.addr,
                        change: Change::Returned,
                    });
                }
            }
        }
    }

    /// Active checks due by `now`, each scheduled again one interval later.
    pub fn due_checks(&mut self, now: Instant) -> Vec<Probe> {
        let mut due = Vec::new();
        for upstream in &mut self.upstreams {
            let Some(check) = &upstream.check else {
                continue;
            };
            for record in &mut upstream.endpoints {
                if record.next_check.is_some_and(|at| at <= now) {
                    record.next_check = Some(now + check.interval);
                    due.push(Probe::start(
                        upstream.name.clone(),
                        record.addr,
                        check,
                        now + check.timeout,
                    ));
                }
            }
        }
        due
    }

    /// A finished active check: after `fall` failures in a row the endpoint is down, after
    /// `rise` passes in a row it is up again.
    pub fn checked(
        &mut self,
        upstream: &str,
        endpoint: SocketAddr,
        passed: bool,
    ) -> Option<Verdict> {
        let upstream = self.upstreams.iter_mut().find(|u| &*u.name == upstream)?;
        let check = upstream.check.as_ref()?;
        let record = upstream.endpoints.iter_mut().find(|e| e.addr == endpoint)?;
        if passed {
            record.passes = record.passes.saturating_add(1);
            record.fails = 0;
        } else {
            record.fails = record.fails.saturating_add(1);
            record.passes = 0;
        }
        let change = if !record.down && record.fails >= check.fall {
            record.down = true;
            Change::Down
        } else if record.down && record.passes >= check.rise {
            record.down = false;
            Change::Up
        } else {
            return None;
        };
        Some(Verdict {
            upstream: upstream.name.clone(),
            endpoint,
            change,
        })
    }

    /// When something next falls due: an ejection ends or a check starts.
    pub fn next_due(&self) -> Option<Instant> {
        self.upstreams
            .iter()
            .flat_map(|u| &u.endpoints)
            .flat_map(|e| [e.ejected_until, e.next_check])
            .flatten()
            .min()
    }
}

/// The health thread: relays and decides until the control plane stops.
pub(crate) fn run(plane: &ControlPlane, reports: Receiver<Report>) {
    let mut board = Board::default();
    let mut prober = Prober::default();
    while !plane.stopping() {
        let now = Instant::now();
        board.follow(&plane.config(), now);
        let mut verdicts = Vec::new();
        let wait = match (board.next_due(), prober.is_empty()) {
            (_, false) => Duration::ZERO,
            (Some(due), true) => due.saturating_duration_since(now).min(IDLE_WAIT),
            (None, true) => IDLE_WAIT,
        };
        match reports.recv_timeout(wait) {
            Ok(report) => verdicts.extend(board.reported(&report, Instant::now())),
            Err(RecvTimeoutError::Timeout) => {}
            // Every shard is gone: the process is stopping.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(wait.max(IDLE_WAIT)),
        }
        while let Ok(report) = reports.try_recv() {
            verdicts.extend(board.reported(&report, Instant::now()));
        }
        let now = Instant::now();
        board.returns(now, &mut verdicts);
        for probe in board.due_checks(now) {
            prober.add(probe);
        }
        if !prober.is_empty() {
            for (upstream, endpoint, passed) in prober.poll(super::probe::POLL_WAIT) {
                verdicts.extend(board.checked(&upstream, endpoint, passed));
            }
        }
        if !verdicts.is_empty() {
            plane.broadcast_health(verdicts);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Arc<Config> {
        Arc::new(Config::parse(text, "t.toml").unwrap())
    }

    const THREE: &str = r#"
[[listener]]
name = "l"
bind = "127.0.0.1:0"
[[upstream]]
name = "up"
endpoints = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"]
"#;

    fn report(port: u16) -> Report {
        Report {
            shard: 0,
            upstream: "up".into(),
            endpoint: format!("127.0.0.1:{port}").parse().unwrap(),
            trip: crate::upstream::Trip::ConsecutiveFailures,
        }
    }

    #[test]
    fn a_reported_ejection_is_confirmed_and_then_refused_beyond_the_limit() {
        let mut board = Board::default();
        let now = Instant::now();
        board.follow(&config(THREE), now);
        let verdict = board.reported(&report(9001), now).unwrap();
        assert_eq!(
            verdict.change,
            Change::Ejected {
                until: now + Duration::from_secs(10),
                ejections: 1
            }
        );
        // Another shard reports the same endpoint: it gets the same verdict.
        let again = board.reported(&report(9001), now + Duration::from_millis(5));
        assert_eq!(again.unwrap().change, verdict.change);
        // 50% of three endpoints is one: a second is refused.
        let refused = board.reported(&report(9002), now).unwrap();
        assert_eq!(refused.change, Change::Refused);
    }

    #[test]
    fn ejections_end_and_grow_when_repeated_and_are_forgiven_in_time() {
        let mut board = Board::default();
        let now = Instant::now();
        board.follow(&config(THREE), now);
        board.reported(&report(9001), now);
        let mut verdicts = Vec::new();
        board.returns(now + Duration::from_secs(9), &mut verdicts);
        assert!(verdicts.is_empty());
        let back = now + Duration::from_secs(10);
        board.returns(back, &mut verdicts);
        assert_eq!(verdicts.len(), 1);
        assert_eq!(verdicts[0].change, Change::Returned);
        // Ejected again at once: twice as long.
        let second = board.reported(&report(9001), back).unwrap();
        assert_eq!(
            second.change,
            Change::Ejected {
                until: back + Duration::from_secs(20),
                ejections: 2
            }
        );
        // Back for 20 s (two base ejection times): both forgiven, the next is 10 s again.
        let back = back + Duration::from_secs(20);
        board.returns(back, &mut verdicts);
        let later = back + Duration::from_secs(20);
        let third = board.reported(&report(9001), later).unwrap();
        assert_eq!(
            third.change,
            Change::Ejected {
                until: later + Duration::from_secs(10),
                ejections: 1
            }
        );
    }

    #[test]
    fn a_reload_keeps_the_records_of_endpoints_it_still_names() {
        let mut board = Board::default();
        let now = Instant::now();
        board.follow(&config(THREE), now);
        board.reported(&report(9002), now);
        board.follow(
            &config(&THREE.replace("127.0.0.1:9001", "127.0.0.1:9004")),
            now,
        );
        let again = board.reported(&report(9002), now).unwrap();
        assert!(matches!(again.change, Change::Ejected { ejections: 1, .. }));
        assert!(board.reported(&report(9001), now).is_none(), "gone");
    }

    #[test]
    fn fall_and_rise_decide_down_and_up() {
        let text = format!(
            "{THREE}[upstream.health_check]\npath = \"/healthz\"\ninterval = \"1s\"\n\
             rise = 2\nfall = 3\n"
        );
        let mut board = Board::default();
        let now = Instant::now();
        board.follow(&config(&text), now);
        let addr: SocketAddr = "127.0.0.1:9003".parse().unwrap();
        assert!(board.checked("up", addr, false).is_none());
        assert!(board.checked("up", addr, false).is_none());
        assert_eq!(
            board.checked("up", addr, false).unwrap().change,
            Change::Down
        );
        assert!(board.checked("up", addr, false).is_none(), "already down");
        assert!(board.checked("up", addr, true).is_none());
        assert_eq!(board.checked("up", addr, true).unwrap().change, Change::Up);
        // Checks are spread over the first interval, then every interval.
        let due = board.due_checks(now + Duration::from_secs(1));
        assert_eq!(due.len(), 3);
        assert!(
            board
                .due_checks(now + Duration::from_millis(1500))
                .is_empty()
        );
    }
}
