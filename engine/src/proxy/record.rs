//! `record`: what one exchange did ([`Outcome`], filled in as it goes) and, once it ends, the
//! metrics it counts and its access-log line. The metrics and the log read nothing else.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::access_log::{self, Capture, CapturedField};
use crate::http1::{Method, Version};
use crate::metrics::RouteStatsId;
use crate::request::Fields;
use crate::shard::Shard;

use super::Session;

/// NGINX's status for a request whose client closed the connection before the answer.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// What one exchange did. Lives in the exchange's frame, never in an idle session.
pub struct Outcome {
    /// When the first byte of the request arrived.
    pub started: Instant,
    /// The parsed request's method and version; `None` when its head was refused or never
    /// completed.
    pub parsed: Option<(Method, Version)>,
    /// The status answered; 0 while nothing was.
    pub status: u16,
    pub route: Option<RouteStatsId>,
    pub endpoint: Option<SocketAddr>,
    /// Response bytes written to the client.
    pub bytes: u64,
    /// From sending the request upstream to having its response head.
    pub upstream_time: Option<Duration>,
    /// When the answer was complete, if that is before the exchange ends (a `101` is complete
    /// when sent; the tunnel after it is not part of its latency).
    pub finished: Option<Instant>,
    /// The request's text fields, copied only while the access log is on.
    pub log: Capture,
}

impl Outcome {
    pub fn new(started: Instant) -> Outcome {
        Outcome {
            started,
            parsed: None,
            status: 0,
            route: None,
            endpoint: None,
            bytes: 0,
            upstream_time: None,
            finished: None,
            log: Capture::none(),
        }
    }

    fn elapsed(&self, shard: &Shard) -> Duration {
        self.finished
            .unwrap_or_else(|| shard.io.now())
            .saturating_duration_since(self.started)
    }

    /// Copies what the access-log line shows of a parsed request (when the log is on), with its
    /// id: the client's when it was safe to keep, else the one coregate made.
    pub fn capture(
        &mut self,
        shard: &Shard,
        method: &[u8],
        target: &[u8],
        id: &[u8],
        fields: Fields<'_>,
    ) {
        if !shard.log.enabled() {
            return;
        }
        let log = &mut self.log;
        *log = Capture::from_pool(shard.io.pool());
        log.set(CapturedField::Method, method);
        log.set(CapturedField::Target, target);
        log.set(CapturedField::RequestId, id);
        // The last of repeated fields, as a server reading them in order would keep.
        let last = |name: &[u8]| fields.all(name).last().unwrap_or(b"");
        log.set(CapturedField::Referer, last(b"referer"));
        log.set(CapturedField::UserAgent, last(b"user-agent"));
    }
}

impl Session {
    /// Counts the exchange and writes its access-log line. A request whose head was read but
    /// that got no answer (the client left first) counts as 499, as NGINX logs it.
    pub(super) fn record(&self, outcome: &Outcome) {
        let shard = &self.shard;
        let status = match (outcome.parsed, outcome.status) {
            // The connection ended before a head arrived: nothing was asked.
            (None, 0) => return,
            (Some(_), 0) => CLIENT_CLOSED_REQUEST,
            (_, status) => status,
        };
        let total_time = outcome.elapsed(shard);
        shard.metrics.response(outcome.route, status, total_time);
        if shard.log.enabled() {
            self.log_line(outcome, status, total_time);
        }
    }

    fn log_line(&self, outcome: &Outcome, status: u16, total_time: Duration) {
        let shard = &self.shard;
        // A request refused before its head parsed (400, 408, 414, 431) is logged with `-` for
        // what is not known: those are the lines an attack leaves.
        let fields = &outcome.log;
        let (method, version) = match outcome.parsed {
            Some((method, version)) => (method, Some(version)),
            None => (Method::Other, None),
        };
        let parsed = |field: CapturedField| match outcome.parsed {
            Some(_) => fields.get(field),
            None => b"-",
        };
        shard.metrics.with_route_name(outcome.route, |route_name| {
            shard.log.write(&access_log::Entry {
                time: std::time::SystemTime::now(),
                client: self.client.peer_addr(),
                request_id: fields.get(CapturedField::RequestId),
                method,
                method_text: parsed(CapturedField::Method),
                target: parsed(CapturedField::Target),
                version,
                route: route_name,
                upstream: outcome.endpoint,
                status,
                bytes: outcome.bytes,
                upstream_time: outcome.upstream_time,
                total_time,
                referer: fields.get(CapturedField::Referer),
                user_agent: fields.get(CapturedField::UserAgent),
                tls: self.context.tls.as_ref().map(|tls| access_log::TlsLog {
                    version: tls.version.as_str(),
                    sni: tls.sni.as_deref().map_or(b"", str::as_bytes),
                    alpn: tls.alpn.as_deref().unwrap_or(b""),
                }),
            })
        });
    }
}
