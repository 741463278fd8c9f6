//! The control plane's side of metrics: merges the shards' [`ShardReport`]s and writes them in
//! the Prometheus text exposition format (version 0.0.4), for the admin API's `/metrics`.
//!
//! Runs on the control plane's thread at scrape time, never on a shard. What is summed and what
//! keeps a `shard` label: totals that operators alert on (responses by route, rejections,
//! latency, upstream pools) are merged over shards; what shows per-core skew (requests,
//! connections, buffers, the ring, the configuration generation) is labelled by shard.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::SocketAddr;

use hdrhistogram::Histogram;

use super::names::*;
use super::{RETRY_REASONS, Reject, ShardReport};
use crate::ratelimit::LimiterCounters;
use crate::upstream::load::LoadReport;
use crate::upstream::{Overflow, PoolStats, Standing};

/// Upper bounds of the latency histogram's buckets, in seconds: 100 µs to 10 s, roughly three
/// per decade, which resolves both a proxy's sub-millisecond overhead and a slow upstream.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The latency quantiles exported as gauges, computed exactly from the merged histogram.
pub const LATENCY_QUANTILES: [f64; 3] = [0.5, 0.99, 0.999];

/// What the scrape could gather.
pub struct Scrape<'a> {
    /// The latest report of every shard that ever answered.
    pub reports: &'a [ShardReport],
    /// Shards that run.
    pub shards: usize,
    /// Shards whose report is from this scrape (the others' are their previous one).
    pub fresh: usize,
    /// Access-log lines the writer could not write.
    pub log_lines_lost: u64,
    /// Per upstream: address changes and failures of its re-resolved names.
    pub resolutions: &'a [(Box<str>, u64, u64)],
}

/// Writes the whole exposition.
pub fn render(scrape: &Scrape<'_>) -> String {
    let mut out = String::with_capacity(16 * 1024);
    // Writing into a String cannot fail.
    let _ = write_all(&mut out, scrape);
    out
}

fn write_all(out: &mut String, scrape: &Scrape<'_>) -> std::fmt::Result {
    let reports = scrape.reports;
    family(out, SHARDS, "gauge", "Shards running.")?;
    writeln!(out, "{SHARDS} {}", scrape.shards)?;
    family(
        out,
        SHARDS_REPORTING,
        "gauge",
        "Shards that answered this scrape in time (the others are shown with their previous figures).",
    )?;
    writeln!(out, "{SHARDS_REPORTING} {}", scrape.fresh)?;
    per_shard(out, reports, &REQUEST_SERIES)?;
    responses(out, reports)?;
    rejected(out, reports)?;
    latency(out, reports)?;
    tls(out, reports)?;
    per_shard(out, reports, &CONNECTION_SERIES)?;
    upstreams(out, reports)?;
    retries(out, reports)?;
    health(out, reports)?;
    resolutions(out, scrape.resolutions)?;
    per_shard(out, reports, &IO_SERIES)?;
    limits(out, reports)?;
    per_shard(out, reports, &ACCESS_LOG_SERIES)?;
    family(
        out,
        ACCESS_LOG_LINES_LOST,
        "counter",
        "Access-log lines the writer could not write (file missing, disk full).",
    )?;
    writeln!(out, "{ACCESS_LOG_LINES_LOST} {}", scrape.log_lines_lost)
}

/// A family with one series per shard: its name, type, help, and the value a report gives.
type PerShard = (
    &'static str,
    &'static str,
    &'static str,
    fn(&ShardReport) -> u64,
);

const REQUEST_SERIES: [PerShard; 2] = [
    (
        CONFIG_GENERATION,
        "gauge",
        "Configuration generation each shard runs.",
        |r| r.generation,
    ),
    (
        REQUESTS_TOTAL,
        "counter",
        "Requests whose head was read (answered or refused).",
        |r| r.counters.requests,
    ),
];

const CONNECTION_SERIES: [PerShard; 4] = [
    (CONNECTIONS_OPEN, "gauge", "Client connections open.", |r| {
        r.counters.connections_open
    }),
    (
        CONNECTIONS_PARKED,
        "gauge",
        "Open client connections parked: idle long enough to have given up their task.",
        |r| r.counters.connections_parked,
    ),
    (
        EXCHANGE_FRAMES,
        "gauge",
        "Exchange frames held, in use or kept for reuse: the most requests in progress at once \
         since parked connections last gave memory back.",
        |r| r.counters.exchange_frames,
    ),
    (
        CONNECTIONS_ACCEPTED,
        "counter",
        "Client connections accepted.",
        |r| r.counters.connections_accepted,
    ),
];

const IO_SERIES: [PerShard; 9] = [
    (
        BUFFERS_FREE,
        "gauge",
        "I/O buffers neither in use nor offered to the kernel.",
        |r| r.buffers_free as u64,
    ),
    (BUFFERS_TOTAL, "gauge", "I/O buffers per shard.", |r| {
        r.buffers_total as u64
    }),
    (
        RING_ENTERS,
        "counter",
        "io_uring_enter system calls (submission and reaping, batched).",
        |r| r.ring.enters,
    ),
    (
        RING_IN_FLIGHT,
        "gauge",
        "io_uring operations the kernel owns: submitted and not yet completed.",
        |r| r.ring_in_flight as u64,
    ),
    (
        RING_COMPLETIONS,
        "counter",
        "io_uring completions reaped.",
        |r| r.ring.completions,
    ),
    (
        RING_CQ_OVERFLOWS,
        "counter",
        "Passes that found the io_uring completion queue full: the kernel kept completions \
         aside in its overflow list (none lost; the queue is small for the load).",
        |r| r.ring.cq_overflows,
    ),
    (
        RING_COMPLETIONS_DROPPED,
        "counter",
        "io_uring completions the kernel dropped (its queue full and no memory to keep them \
         aside): each leaves an operation that never completes. Should stay 0.",
        |r| r.ring.dropped,
    ),
    (
        RING_OPERATIONS_ABANDONED,
        "counter",
        "io_uring operations a stopping shard gave up on because their completion was \
         dropped.",
        |r| r.ring.abandoned,
    ),
    (
        RING_SUBMIT_ERRORS,
        "counter",
        "io_uring submissions the kernel refused (retried on the next pass).",
        |r| r.ring.submit_errors,
    ),
];

const ACCESS_LOG_SERIES: [PerShard; 1] = [(
    ACCESS_LOG_DROPPED,
    "counter",
    "Access-log lines dropped because the writer fell behind or could not write.",
    |r| r.access_log_dropped,
)];

/// Each family of `series`, one line per shard.
fn per_shard(out: &mut String, reports: &[ShardReport], series: &[PerShard]) -> std::fmt::Result {
    for &(name, kind, help, value) in series {
        family(out, name, kind, help)?;
        for r in reports {
            writeln!(out, "{name}{{shard=\"{}\"}} {}", r.shard, value(r))?;
        }
    }
    Ok(())
}

/// Responses by status class: per shard, and per route summed over shards.
fn responses(out: &mut String, reports: &[ShardReport]) -> std::fmt::Result {
    family(
        out,
        RESPONSES_TOTAL,
        "counter",
        "Responses by status class, per shard.",
    )?;
    for r in reports {
        for (class, count) in r.counters.responses_by_class.iter().enumerate().skip(1) {
            writeln!(
                out,
                "{RESPONSES_TOTAL}{{shard=\"{}\",class=\"{class}xx\"}} {count}",
                r.shard
            )?;
        }
    }
    family(
        out,
        ROUTE_RESPONSES_TOTAL,
        "counter",
        "Responses by route and status class, summed over shards.",
    )?;
    let mut routes: BTreeMap<&str, [u64; 6]> = BTreeMap::new();
    for r in reports {
        for route in &r.routes {
            let sum = routes.entry(&route.name).or_default();
            for (total, count) in sum.iter_mut().zip(route.responses_by_class) {
                *total += count;
            }
        }
    }
    for (name, by_class) in &routes {
        for (class, count) in by_class.iter().enumerate().skip(1) {
            writeln!(
                out,
                "{ROUTE_RESPONSES_TOTAL}{{route=\"{}\",class=\"{class}xx\"}} {count}",
                escape(name)
            )?;
        }
    }
    Ok(())
}

/// Requests coregate answered itself, by reason, summed over shards.
fn rejected(out: &mut String, reports: &[ShardReport]) -> std::fmt::Result {
    family(
        out,
        REJECTED_TOTAL,
        "counter",
        "Requests coregate answered itself with an error, by reason, summed over shards.",
    )?;
    for reason in Reject::ALL {
        let total: u64 = reports
            .iter()
            .map(|r| r.counters.rejected[reason as usize])
            .sum();
        writeln!(
            out,
            "{REJECTED_TOTAL}{{reason=\"{}\"}} {total}",
            reason.label()
        )?;
    }
    Ok(())
}

/// Upstream retries: per shard, and by the failure that caused them summed over shards.
fn retries(out: &mut String, reports: &[ShardReport]) -> std::fmt::Result {
    per_shard(
        out,
        reports,
        &[(
            UPSTREAM_RETRIES,
            "counter",
            "Requests sent again: on a fresh connection after a pooled one turned out closed, or to another endpoint (see the route's retry policy).",
            |r| r.counters.upstream_retries,
        )],
    )?;
    family(
        out,
        UPSTREAM_RETRIES_BY_REASON,
        "counter",
        "Retries by the failure that caused them, summed over shards.",
    )?;
    for (at, reason) in RETRY_REASONS.iter().enumerate() {
        let total: u64 = reports
            .iter()
            .map(|r| r.counters.retries_by_reason[at])
            .sum();
        writeln!(
            out,
            "{UPSTREAM_RETRIES_BY_REASON}{{reason=\"{reason}\"}} {total}"
        )?;
    }
    Ok(())
}

/// Re-resolved endpoint names: address changes and failures, per upstream.
fn resolutions(out: &mut String, resolutions: &[(Box<str>, u64, u64)]) -> std::fmt::Result {
    family(
        out,
        UPSTREAM_RESOLVE_CHANGES,
        "counter",
        "Endpoint names whose addresses changed when resolved again (resolve_every).",
    )?;
    for (upstream, changes, _) in resolutions {
        writeln!(
            out,
            "{UPSTREAM_RESOLVE_CHANGES}{{upstream=\"{}\"}} {changes}",
            escape(upstream)
        )?;
    }
    family(
        out,
        UPSTREAM_RESOLVE_FAILURES,
        "counter",
        "Endpoint names that did not resolve when resolved again (their last addresses are kept).",
    )?;
    for (upstream, _, failures) in resolutions {
        writeln!(
            out,
            "{UPSTREAM_RESOLVE_FAILURES}{{upstream=\"{}\"}} {failures}",
            escape(upstream)
        )?;
    }
    Ok(())
}

/// The merged latency histogram (cumulative buckets, sum, count) and its quantile gauges.
fn latency(out: &mut String, reports: &[ShardReport]) -> std::fmt::Result {
    let mut merged: Option<Histogram<u64>> = None;
    let mut sum_us: u64 = 0;
    for r in reports {
        sum_us = sum_us.saturating_add(r.latency_sum_us);
        match &mut merged {
            None => merged = Some(r.latency.clone()),
            // Every shard's histogram has the same bounds, so adding cannot fail.
            Some(total) => {
                let _ = total.add(&r.latency);
            }
        }
    }
    family(
        out,
        REQUEST_DURATION,
        "histogram",
        "Time from a request's first byte to its response's last byte, summed over shards.",
    )?;
    let count = merged.as_ref().map_or(0, Histogram::len);
    for le in LATENCY_BUCKETS {
        let le_us = (le * 1e6) as u64;
        let below = merged.as_ref().map_or(0, |h| h.count_between(0, le_us));
        writeln!(out, "{REQUEST_DURATION}_bucket{{le=\"{le}\"}} {below}")?;
    }
    writeln!(out, "{REQUEST_DURATION}_bucket{{le=\"+Inf\"}} {count}")?;
    writeln!(out, "{REQUEST_DURATION}_sum {}", sum_us as f64 / 1e6)?;
    writeln!(out, "{REQUEST_DURATION}_count {count}")?;

    family(
        out,
        REQUEST_DURATION_QUANTILE,
        "gauge",
        "Latency quantiles since start, from the merged histogram (microsecond resolution).",
    )?;
    for quantile in LATENCY_QUANTILES {
        let micros = merged
            .as_ref()
            .filter(|h| !h.is_empty())
            .map_or(0, |h| h.value_at_quantile(quantile));
        writeln!(
            out,
            "{REQUEST_DURATION_QUANTILE}{{quantile=\"{quantile}\"}} {}",
            micros as f64 / 1e6
        )?;
    }
    Ok(())
}

/// What every endpoint of an upstream is across the shards.
#[derive(Default)]
struct EndpointSum {
    /// Shards seeing it in each standing, indexed like [`STANDINGS`].
    states: [u64; 4],
    /// The lowest effective weight any shard gives it (slow start lowers it).
    weight: Option<f64>,
    ejections: u64,
}

const STANDINGS: [Standing; 4] = [
    Standing::Serving,
    Standing::SlowStart,
    Standing::Ejected,
    Standing::Down,
];

/// Per-endpoint health and per-upstream load, merged over shards.
fn health(out: &mut String, reports: &[ShardReport]) -> std::fmt::Result {
    let mut endpoints: BTreeMap<(&str, SocketAddr), EndpointSum> = BTreeMap::new();
    let mut upstreams: BTreeMap<&str, LoadReport> = BTreeMap::new();
    for r in reports {
        for upstream in &r.upstreams {
            let load = upstreams.entry(&upstream.upstream).or_default();
            load.requests += upstream.load.requests;
            for (total, count) in load.overflows.iter_mut().zip(upstream.load.overflows) {
                *total += count;
            }
            for e in &upstream.endpoints {
                let sum = endpoints
                    .entry((&upstream.upstream, e.endpoint))
                    .or_default();
                if let Some(at) = STANDINGS.iter().position(|s| *s == e.standing) {
                    sum.states[at] += 1;
                }
                let weight = f64::from(e.weight) * f64::from(e.share_percent) / 100.0;
                sum.weight = Some(sum.weight.map_or(weight, |w| w.min(weight)));
                sum.ejections += e.trips;
            }
        }
    }
    family(
        out,
        UPSTREAM_ENDPOINT_STATE,
        "gauge",
        "Shards seeing the endpoint in each state: serving, slow_start, ejected (passive detection), down (active check).",
    )?;
    for ((upstream, endpoint), sum) in &endpoints {
        for (standing, count) in STANDINGS.iter().zip(sum.states) {
            writeln!(
                out,
                "{UPSTREAM_ENDPOINT_STATE}{{upstream=\"{}\",endpoint=\"{endpoint}\",state=\"{}\"}} {count}",
                escape(upstream),
                standing.label()
            )?;
        }
    }
    family(
        out,
        UPSTREAM_ENDPOINT_WEIGHT,
        "gauge",
        "The endpoint's weight as picks use it: its configured weight, lowered during slow start (the lowest over shards).",
    )?;
    for ((upstream, endpoint), sum) in &endpoints {
        writeln!(
            out,
            "{UPSTREAM_ENDPOINT_WEIGHT}{{upstream=\"{}\",endpoint=\"{endpoint}\"}} {}",
            escape(upstream),
            sum.weight.unwrap_or(0.0)
        )?;
    }
    family(
        out,
        UPSTREAM_EJECTIONS,
        "counter",
        "Ejections made by passive outlier detection on the shards, summed over shards.",
    )?;
    for ((upstream, endpoint), sum) in &endpoints {
        writeln!(
            out,
            "{UPSTREAM_EJECTIONS}{{upstream=\"{}\",endpoint=\"{endpoint}\"}} {}",
            escape(upstream),
            sum.ejections
        )?;
    }
    family(
        out,
        UPSTREAM_REQUESTS_IN_FLIGHT,
        "gauge",
        "Requests in flight to the upstream, summed over shards.",
    )?;
    for (upstream, load) in &upstreams {
        writeln!(
            out,
            "{UPSTREAM_REQUESTS_IN_FLIGHT}{{upstream=\"{}\"}} {}",
            escape(upstream),
            load.requests
        )?;
    }
    family(
        out,
        UPSTREAM_OVERFLOWS,
        "counter",
        "Requests answered 503 by a circuit breaker, and retries not made, by limit, summed over shards.",
    )?;
    for (upstream, load) in &upstreams {
        for overflow in Overflow::ALL {
            writeln!(
                out,
                "{UPSTREAM_OVERFLOWS}{{upstream=\"{}\",limit=\"{}\"}} {}",
                escape(upstream),
                overflow.label(),
                load.overflows[overflow as usize]
            )?;
        }
    }
    Ok(())
}

/// Rate-limit decisions per route, summed over shards.
fn limits(out: &mut String, reports: &[ShardReport]) -> std::fmt::Result {
    let mut routes: BTreeMap<&str, LimiterCounters> = BTreeMap::new();
    for r in reports {
        for (route, counters) in &r.limiters {
            let sum = routes.entry(route).or_default();
            sum.allowed += counters.allowed;
            sum.limited += counters.limited;
            sum.evictions += counters.evictions;
        }
    }
    family(
        out,
        RATE_LIMIT_DECISIONS,
        "counter",
        "Requests checked against a route's rate limit, by decision.",
    )?;
    for (route, counters) in &routes {
        let route = escape(route);
        writeln!(
            out,
            "{RATE_LIMIT_DECISIONS}{{route=\"{route}\",decision=\"allowed\"}} {}",
            counters.allowed
        )?;
        writeln!(
            out,
            "{RATE_LIMIT_DECISIONS}{{route=\"{route}\",decision=\"limited\"}} {}",
            counters.limited
        )?;
    }
    family(
        out,
        RATE_LIMIT_EVICTIONS,
        "counter",
        "Active rate-limit keys evicted to make room (the table is at its cap).",
    )?;
    for (route, counters) in &routes {
        writeln!(
            out,
            "{RATE_LIMIT_EVICTIONS}{{route=\"{}\"}} {}",
            escape(route),
            counters.evictions
        )?;
    }
    Ok(())
}

/// Pool counters and gauges per endpoint, summed over shards.
/// A family with one series per endpoint pool: its name, type, help and the pool's value.
type PoolSeries = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PoolStats) -> u64,
);

fn upstreams(out: &mut String, reports: &[ShardReport]) -> std::fmt::Result {
    let mut pools: BTreeMap<(&str, SocketAddr), PoolStats> = BTreeMap::new();
    for r in reports {
        for endpoint in &r.endpoints {
            let sum = pools
                .entry((&endpoint.upstream, endpoint.endpoint))
                .or_default();
            sum.connects += endpoint.stats.connects;
            sum.connect_failures += endpoint.stats.connect_failures;
            sum.reuses += endpoint.stats.reuses;
            sum.active += endpoint.stats.active;
            sum.idle += endpoint.stats.idle;
        }
    }
    let series: [PoolSeries; 5] = [
        (
            UPSTREAM_CONNECTS,
            "counter",
            "Upstream connections established.",
            |s| s.connects,
        ),
        (
            UPSTREAM_CONNECT_FAILURES,
            "counter",
            "Upstream connection attempts that failed (refused, unreachable, timed out).",
            |s| s.connect_failures,
        ),
        (
            UPSTREAM_REUSES,
            "counter",
            "Requests sent on a pooled keep-alive upstream connection.",
            |s| s.reuses,
        ),
        (
            UPSTREAM_IDLE,
            "gauge",
            "Idle pooled upstream connections.",
            |s| s.idle,
        ),
        (
            UPSTREAM_ACTIVE,
            "gauge",
            "Upstream connections carrying a request.",
            |s| s.active,
        ),
    ];
    for (name, kind, help, value) in series {
        family(out, name, kind, help)?;
        for ((upstream, endpoint), stats) in &pools {
            writeln!(
                out,
                "{name}{{upstream=\"{}\",endpoint=\"{endpoint}\"}} {}",
                escape(upstream),
                value(stats)
            )?;
        }
    }
    Ok(())
}

/// A ring counter's name, help text and reading.
/// TLS handshakes and connections, summed over shards.
fn tls(out: &mut String, reports: &[ShardReport]) -> std::fmt::Result {
    use super::TlsCounters;
    use crate::io::HandshakeFailure;
    family(
        out,
        TLS_HANDSHAKES,
        "counter",
        "TLS handshakes completed, full or resumed (session ticket or id), summed over shards.",
    )?;
    for (i, kind) in TlsCounters::KINDS.iter().enumerate() {
        let total: u64 = reports.iter().map(|r| r.counters.tls.handshakes[i]).sum();
        writeln!(out, "{TLS_HANDSHAKES}{{kind=\"{kind}\"}} {total}")?;
    }
    family(
        out,
        TLS_HANDSHAKE_FAILURES,
        "counter",
        "TLS handshakes that failed, by reason, summed over shards.",
    )?;
    for (i, failure) in HandshakeFailure::ALL.iter().enumerate() {
        let total: u64 = reports.iter().map(|r| r.counters.tls.failures[i]).sum();
        writeln!(
            out,
            "{TLS_HANDSHAKE_FAILURES}{{reason=\"{}\"}} {total}",
            failure.as_str()
        )?;
    }
    family(
        out,
        TLS_CONNECTIONS,
        "counter",
        "TLS connections by protocol version and negotiated ALPN protocol, summed over shards.",
    )?;
    for (v, version) in TlsCounters::VERSIONS.iter().enumerate() {
        for (a, alpn) in TlsCounters::ALPN.iter().enumerate() {
            let total: u64 = reports
                .iter()
                .map(|r| r.counters.tls.connections[v][a])
                .sum();
            writeln!(
                out,
                "{TLS_CONNECTIONS}{{version=\"{version}\",alpn=\"{alpn}\"}} {total}"
            )?;
        }
    }
    Ok(())
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) -> std::fmt::Result {
    writeln!(out, "# HELP {name} {help}")?;
    writeln!(out, "# TYPE {name} {kind}")
}

/// A label value: backslash, double quote and line feed escaped, as the format requires.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::RingStats;
    use crate::metrics::{Counters, EndpointReport, RouteCounters};

    fn report(shard: usize, latencies_us: &[u64]) -> ShardReport {
        let mut latency = Histogram::new_with_bounds(1, super::super::LATENCY_MAX_US, 3).unwrap();
        for &us in latencies_us {
            latency.record(us).unwrap();
        }
        let mut counters = Counters {
            requests: latencies_us.len() as u64,
            ..Counters::default()
        };
        counters.responses_by_class[2] = latencies_us.len() as u64;
        counters.rejected[Reject::NoRoute as usize] = 1;
        ShardReport {
            shard,
            cpu: shard,
            generation: 3,
            counters,
            latency,
            latency_sum_us: latencies_us.iter().sum(),
            routes: vec![RouteCounters {
                name: "api \"v1\"".into(),
                responses_by_class: [0, 0, latencies_us.len() as u64, 0, 0, 0],
            }],
            endpoints: vec![EndpointReport {
                upstream: "api".into(),
                endpoint: "127.0.0.1:9001".parse().unwrap(),
                stats: PoolStats {
                    connects: 2,
                    idle: 1,
                    ..PoolStats::default()
                },
            }],
            ring: RingStats::default(),
            ring_in_flight: 0,
            buffers_total: 16,
            buffers_free: 10,
            access_log_dropped: 0,
            limiters: Vec::new(),
            upstreams: Vec::new(),
        }
    }

    #[test]
    fn shards_are_merged_where_totals_matter() {
        let text = render(&Scrape {
            reports: &[report(0, &[50, 200]), report(1, &[3000])],
            shards: 2,
            fresh: 2,
            log_lines_lost: 0,
            resolutions: &[],
        });
        let line = |prefix: &str| {
            text.lines()
                .find(|line| line.starts_with(prefix))
                .unwrap_or_else(|| panic!("no line {prefix} in:\n{text}"))
                .to_owned()
        };
        assert_eq!(
            line("coregate_route_responses_total{route=\"api \\\"v1\\\"\",class=\"2xx\"}"),
            "coregate_route_responses_total{route=\"api \\\"v1\\\"\",class=\"2xx\"} 3"
        );
        assert_eq!(
            line("coregate_rejected_total{reason=\"no_route\"}"),
            "coregate_rejected_total{reason=\"no_route\"} 2"
        );
        assert_eq!(
            line("coregate_requests_total{shard=\"1\"}"),
            "coregate_requests_total{shard=\"1\"} 1"
        );
        assert_eq!(
            line("coregate_request_duration_seconds_bucket{le=\"0.00025\"}"),
            "coregate_request_duration_seconds_bucket{le=\"0.00025\"} 2"
        );
        assert_eq!(
            line("coregate_request_duration_seconds_bucket{le=\"+Inf\"}"),
            "coregate_request_duration_seconds_bucket{le=\"+Inf\"} 3"
        );
        assert_eq!(
            line("coregate_request_duration_seconds_sum"),
            "coregate_request_duration_seconds_sum 0.00325"
        );
        assert_eq!(
            line("coregate_upstream_connects_total{upstream=\"api\",endpoint=\"127.0.0.1:9001\"}"),
            "coregate_upstream_connects_total{upstream=\"api\",endpoint=\"127.0.0.1:9001\"} 4"
        );
        assert_eq!(
            line("coregate_shards_reporting"),
            "coregate_shards_reporting 2"
        );
    }
}
