//! An upstream's resilience settings and a route's retry policy: raw values -> weights, the
//! hashing policy's key, outlier detection, the active health check, circuit breakers and the
//! retry budget, and retry policies, every mistake reported with its key and line like the
//! rest of the file.
//!
//! Every key left out takes its `DEFAULT_*` from `defaults.rs`, so a file that says nothing
//! gets the behaviour documented there (NGINX's floor: a failed connect tried elsewhere, a
//! failed endpoint out of rotation for 10 s).

use std::net::SocketAddr;
use std::time::Duration;

use toml::Spanned;

use super::super::defaults::*;
use super::super::file::{
    Field, RawHealthCheck, RawOutlier, RawRetry, RawUpstream, RawUpstreamLimits, Value, closest,
};
use super::super::{Balance, NamedEndpoint};
use super::{Got, Validator, key};
use crate::upstream::hash::HashOn;
use crate::upstream::outlier::SuccessRate;
use crate::upstream::{
    Breakers, Hashing, HealthCheck, OutlierSettings, RetryBudget, RetryOn, RetryPolicy,
    UpstreamSettings,
};

/// An upstream's endpoints as validated: addresses, their weights, and the names among them.
#[derive(Debug, Default)]
pub(in crate::config) struct Endpoints {
    pub addrs: Vec<SocketAddr>,
    pub weights: Vec<u32>,
    pub names: Vec<NamedEndpoint>,
}

/// What validating an upstream's resilience keys gives.
pub(in crate::config) type Resilience = (UpstreamSettings, Option<HealthCheck>, Option<Duration>);

/// `host` and `port` of an endpoint written as a host name (not an IP literal).
pub(in crate::config) fn host_name(text: &str) -> Option<(&str, u16)> {
    if text.parse::<SocketAddr>().is_ok() {
        return None;
    }
    let (host, port) = text.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

/// The message for a `balance` no policy has.
pub(in crate::config) fn unknown_policy(text: &str) -> String {
    let names: Vec<&str> = Balance::ALL.iter().map(|b| b.as_str()).collect();
    let expected = format!("expected one of \"{}\"", names.join("\", \""));
    match closest(text, &names) {
        Some(best) => format!("unknown policy; did you mean \"{best}\"? ({expected})"),
        None => format!("unknown policy; {expected}"),
    }
}

impl Validator<'_, '_> {
    /// One item of `endpoints`: `"host:port"`, or `{ address = "host:port", weight = N }`.
    pub(super) fn endpoint_item<'v>(
        &mut self,
        item: &'v Spanned<Value>,
        key: &str,
    ) -> Option<(&'v str, u32)> {
        match item.get_ref() {
            Value::String(text) => Some((text, DEFAULT_WEIGHT)),
            Value::Table(entries) => {
                let mut address = None;
                let mut weight = Some(DEFAULT_WEIGHT);
                for (name, value) in entries {
                    let field = Some(value.clone());
                    match name.as_str() {
                        "address" => {
                            address = match value.get_ref() {
                                Value::String(_) => Some(value),
                                _ => {
                                    self.bad::<()>(
                                        value.span(),
                                        &format!("{key}.address"),
                                        "expected a \"host:port\" string",
                                    );
                                    return None;
                                }
                            }
                        }
                        "weight" => {
                            weight = self
                                .integer(&field, &format!("{key}.weight"), 1, MAX_WEIGHT.into())
                                .map(|n| n as u32)
                                .or(DEFAULT_WEIGHT);
                        }
                        other => {
                            let mut message = "unknown key".to_owned();
                            if let Some(best) = closest(other, &["address", "weight"]) {
                                message.push_str(&format!("; did you mean `{best}`?"));
                            }
                            message.push_str(" (accepted here: address, weight)");
                            self.bad::<()>(value.span(), &format!("{key}.{other}"), message);
                            return None;
                        }
                    }
                }
                let Some(address) = address else {
                    self.bad::<()>(
                        item.span(),
                        key,
                        "needs `address = \"host:port\"` (and optionally `weight`)",
                    );
                    return None;
                };
                let Value::String(text) = address.get_ref() else {
                    return None;
                };
                Some((text, weight?))
            }
            _ => {
                self.bad::<()>(
                    item.span(),
                    key,
                    "expected a \"host:port\" string or { address = \"host:port\", weight = 2 }",
                );
                None
            }
        }
    }

    /// `hash_on` and `hash_balance_factor`: what a hashing policy hashes; only for
    /// `ring_hash` (both) and `maglev` (`hash_on`).
    pub(super) fn hashing(
        &mut self,
        raw: &RawUpstream,
        s: &str,
        balance: Option<Balance>,
    ) -> Option<Option<Hashing>> {
        let on = self
            .string(&raw.hash_on, &key(s, "hash_on"))
            .and_then(|(text, span)| match HashOn::parse(text) {
                Ok(on) => Got::Value(on),
                Err(message) => self.bad(span, &key(s, "hash_on"), message),
            })
            .optional();
        let factor = self
            .integer(
                &raw.hash_balance_factor,
                &key(s, "hash_balance_factor"),
                MIN_HASH_BALANCE_FACTOR.into(),
                MAX_HASH_BALANCE_FACTOR.into(),
            )
            .map(|n| n as u32)
            .optional();
        let balance = balance?;
        for (field, name, applies) in [
            (&raw.hash_on, "hash_on", balance.hashes()),
            (
                &raw.hash_balance_factor,
                "hash_balance_factor",
                balance == Balance::RingHash,
            ),
        ] {
            if let Some(field) = field
                && !applies
            {
                let policies = if name == "hash_on" {
                    "balance = \"ring_hash\" or \"maglev\""
                } else {
                    "balance = \"ring_hash\""
                };
                self.report.invalid(
                    field.span(),
                    key(s, name),
                    format!("only applies to {policies}"),
                );
                return None;
            }
        }
        let (on, factor) = (on?, factor?);
        if !balance.hashes() {
            return Some(None);
        }
        let on = match on {
            Some(on) => on,
            None => HashOn::parse(DEFAULT_HASH_ON).ok()?,
        };
        Some(Some(Hashing {
            on,
            balance_factor: factor,
        }))
    }

    /// The upstream's health and load settings: `panic_threshold`, `slow_start`,
    /// `resolve_every`, `[upstream.outlier]`, `[upstream.health_check]`, `[upstream.limits]`.
    pub(super) fn resilience(&mut self, raw: &RawUpstream, s: &str) -> Option<Resilience> {
        let panic_threshold = self
            .integer(&raw.panic_threshold, &key(s, "panic_threshold"), 0, 100)
            .map(|n| n as u8)
            .or(DEFAULT_PANIC_THRESHOLD);
        let slow_start = self
            .duration(
                &raw.slow_start,
                &key(s, "slow_start"),
                Duration::ZERO,
                MAX_SLOW_START,
            )
            .or(DEFAULT_SLOW_START);
        let resolve_every = self
            .duration(
                &raw.resolve_every,
                &key(s, "resolve_every"),
                MIN_RESOLVE_EVERY,
                MAX_TIMEOUT,
            )
            .optional()
            .map(|every| every.or(DEFAULT_RESOLVE_EVERY));
        let outlier = self.outlier(raw.outlier.as_ref(), &key(s, "outlier"));
        let health_check = match &raw.health_check {
            Some(table) => self.health_check(table, &key(s, "health_check")).map(Some),
            None => Some(None),
        };
        let (breakers, retry_budget) = self.upstream_limits(raw.limits.as_ref(), &key(s, "limits"));
        Some((
            UpstreamSettings {
                outlier: outlier?,
                panic_threshold: panic_threshold?,
                slow_start: slow_start?,
                breakers: breakers?,
                retry_budget: retry_budget?,
            },
            health_check?,
            resolve_every?,
        ))
    }

    fn outlier(&mut self, raw: Option<&Spanned<RawOutlier>>, s: &str) -> Option<OutlierSettings> {
        let default = RawOutlier::default();
        let raw = raw.map_or(&default, Spanned::get_ref);
        let count = |v: &mut Self, field: &Field, name: &str, default: u32| {
            v.integer(field, &key(s, name), 0, 1_000_000)
                .map(|n| n as u32)
                .or(default)
        };
        let consecutive_failures = count(
            self,
            &raw.consecutive_failures,
            "consecutive_failures",
            DEFAULT_CONSECUTIVE_FAILURES,
        );
        let consecutive_5xx = count(
            self,
            &raw.consecutive_5xx,
            "consecutive_5xx",
            DEFAULT_CONSECUTIVE_5XX,
        );
        let min_success_rate = self
            .integer(&raw.min_success_rate, &key(s, "min_success_rate"), 1, 100)
            .map(|n| n as u8)
            .optional();
        let success_rate_requests = self
            .integer(
                &raw.success_rate_requests,
                &key(s, "success_rate_requests"),
                10,
                1_000_000,
            )
            .map(|n| n as u32)
            .optional();
        if let (Some(field), Some(None)) = (&raw.success_rate_requests, min_success_rate) {
            self.report.error(
                Some(field.span()),
                key(s, "success_rate_requests"),
                "only applies with `min_success_rate`",
            );
        }
        let base = self.timeout(
            &raw.base_ejection_time,
            &key(s, "base_ejection_time"),
            DEFAULT_BASE_EJECTION_TIME,
        );
        let max = self.timeout(
            &raw.max_ejection_time,
            &key(s, "max_ejection_time"),
            DEFAULT_MAX_EJECTION_TIME,
        );
        if let (Some(base), Some(max)) = (base, max)
            && max < base
        {
            let message = format!(
                "must not be shorter than base_ejection_time ({})",
                crate::config::units::Millis(base)
            );
            match &raw.max_ejection_time {
                Some(field) => {
                    self.report
                        .invalid(field.span(), key(s, "max_ejection_time"), message)
                }
                None => self.report.error(
                    raw.base_ejection_time.as_ref().map(Spanned::span),
                    key(s, "base_ejection_time"),
                    format!(
                        "is longer than max_ejection_time ({})",
                        crate::config::units::Millis(max)
                    ),
                ),
            }
            return None;
        }
        let max_ejection_percent = self
            .integer(
                &raw.max_ejection_percent,
                &key(s, "max_ejection_percent"),
                0,
                100,
            )
            .map(|n| n as u8)
            .or(DEFAULT_MAX_EJECTION_PERCENT);
        let success_rate = min_success_rate?.map(|min_percent| SuccessRate {
            min_percent,
            requests: success_rate_requests
                .flatten()
                .unwrap_or(DEFAULT_SUCCESS_RATE_REQUESTS),
        });
        Some(OutlierSettings {
            consecutive_failures: consecutive_failures?,
            consecutive_5xx: consecutive_5xx?,
            success_rate,
            base_ejection_time: base?,
            max_ejection_time: max?,
            max_ejection_percent: max_ejection_percent?,
        })
    }

    fn health_check(&mut self, table: &Spanned<RawHealthCheck>, s: &str) -> Option<HealthCheck> {
        let raw = table.get_ref();
        let path = self
            .string(&raw.path, &key(s, "path"))
            .and_then(|(text, span)| {
                if text.starts_with('/') && text.bytes().all(|b| b.is_ascii_graphic()) {
                    Got::Value(Box::<str>::from(text))
                } else {
                    self.bad(
                        span,
                        &key(s, "path"),
                        "expected a path starting with '/', without spaces, like \"/healthz\"",
                    )
                }
            })
            .or(DEFAULT_HEALTH_PATH.into());
        let host = self
            .string(&raw.host, &key(s, "host"))
            .and_then(|(text, span)| {
                let valid = !text.is_empty()
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]_".contains(&b));
                if valid {
                    Got::Value(Box::<str>::from(text))
                } else {
                    self.bad(
                        span,
                        &key(s, "host"),
                        "expected a host name (with an optional port), like \"api.internal\"",
                    )
                }
            })
            .optional();
        let interval = self
            .duration(
                &raw.interval,
                &key(s, "interval"),
                MIN_HEALTH_INTERVAL,
                MAX_TIMEOUT,
            )
            .or(DEFAULT_HEALTH_INTERVAL);
        // Unwritten, the timeout is the default or the interval, whichever is shorter.
        let timeout = self.timeout(
            &raw.timeout,
            &key(s, "timeout"),
            DEFAULT_HEALTH_TIMEOUT.min(interval.unwrap_or(DEFAULT_HEALTH_TIMEOUT)),
        );
        let rise = self
            .integer(&raw.rise, &key(s, "rise"), 1, MAX_HEALTH_RISE_FALL.into())
            .map(|n| n as u32)
            .or(DEFAULT_HEALTH_RISE);
        let fall = self
            .integer(&raw.fall, &key(s, "fall"), 1, MAX_HEALTH_RISE_FALL.into())
            .map(|n| n as u32)
            .or(DEFAULT_HEALTH_FALL);
        let statuses = self.statuses(&raw.expected_statuses, &key(s, "expected_statuses"));
        if let (Some(interval), Some(timeout), Some(field)) = (interval, timeout, &raw.timeout)
            && timeout > interval
        {
            self.report.invalid(
                field.span(),
                key(s, "timeout"),
                format!(
                    "must not be longer than the interval ({}): checks would overlap",
                    crate::config::units::Millis(interval)
                ),
            );
            return None;
        }
        Some(HealthCheck {
            path: path?,
            host: host?,
            interval: interval?,
            timeout: timeout?,
            rise: rise?,
            fall: fall?,
            statuses: statuses?,
        })
    }

    /// `expected_statuses`: statuses (`200`) and ranges (`"200-399"`).
    fn statuses(&mut self, field: &Field, key: &str) -> Option<Vec<(u16, u16)>> {
        const SHAPE: &str = "expected statuses like [200, \"300-399\"] (from 100 to 599)";
        let items = match self.array(field, key, SHAPE) {
            Got::Absent => return Some(vec![DEFAULT_HEALTH_STATUSES]),
            Got::Invalid => return None,
            Got::Value(items) => items,
        };
        let status = |n: i128| u16::try_from(n).ok().filter(|n| (100..=599).contains(n));
        let mut statuses = Vec::new();
        for item in items {
            let range = match item.get_ref() {
                Value::Integer(n) => status(*n).map(|n| (n, n)),
                Value::String(text) => {
                    let (low, high) = text.split_once('-').unwrap_or((text, text));
                    let low = status(low.trim().parse().unwrap_or(0));
                    let high = status(high.trim().parse().unwrap_or(0));
                    low.zip(high).filter(|(low, high)| low <= high)
                }
                _ => None,
            };
            match range {
                Some(range) => statuses.push(range),
                None => {
                    self.bad::<()>(item.span(), key, SHAPE);
                    return None;
                }
            }
        }
        if statuses.is_empty() {
            let span = field.as_ref().map_or(0..0, Spanned::span);
            self.bad::<()>(span, key, SHAPE);
            return None;
        }
        Some(statuses)
    }

    fn upstream_limits(
        &mut self,
        raw: Option<&Spanned<RawUpstreamLimits>>,
        s: &str,
    ) -> (Option<Breakers>, Option<RetryBudget>) {
        let default = RawUpstreamLimits::default();
        let raw = raw.map_or(&default, Spanned::get_ref);
        let limit = |v: &mut Self, field: &Field, name: &str, default: u32| {
            v.integer(field, &key(s, name), 1, MAX_BREAKER_LIMIT.into())
                .map(|n| n as u32)
                .or(default)
        };
        let max_connections = limit(
            self,
            &raw.max_connections,
            "max_connections",
            DEFAULT_MAX_UPSTREAM_CONNECTIONS,
        );
        let max_pending = limit(self, &raw.max_pending, "max_pending", DEFAULT_MAX_PENDING);
        let max_requests = limit(
            self,
            &raw.max_requests,
            "max_requests",
            DEFAULT_MAX_REQUESTS,
        );
        let max_retries = limit(self, &raw.max_retries, "max_retries", DEFAULT_MAX_RETRIES);
        let percent = self
            .integer(
                &raw.retry_budget_percent,
                &key(s, "retry_budget_percent"),
                0,
                100,
            )
            .map(|n| n as u8)
            .or(DEFAULT_RETRY_BUDGET_PERCENT);
        let min_concurrency = self
            .integer(
                &raw.retry_min_concurrency,
                &key(s, "retry_min_concurrency"),
                0,
                MAX_BREAKER_LIMIT.into(),
            )
            .map(|n| n as u32)
            .or(DEFAULT_RETRY_MIN_CONCURRENCY);
        let breakers = (|| {
            Some(Breakers {
                max_connections: max_connections?,
                max_pending: max_pending?,
                max_requests: max_requests?,
                max_retries: max_retries?,
            })
        })();
        let budget = (|| {
            Some(RetryBudget {
                percent: percent?,
                min_concurrency: min_concurrency?,
            })
        })();
        (breakers, budget)
    }

    /// A route's `retry`: the default policy when not written.
    pub(super) fn retry_policy(
        &mut self,
        raw: Option<&Spanned<RawRetry>>,
        s: &str,
        to_upstream: bool,
    ) -> Option<RetryPolicy> {
        let Some(table) = raw else {
            return Some(DEFAULT_RETRY_POLICY);
        };
        let s = &key(s, "retry");
        if !to_upstream {
            self.report.error(
                Some(table.span()),
                s.clone(),
                "only applies to routes with an `upstream` (nothing is forwarded)",
            );
            return None;
        }
        let raw = table.get_ref();
        let on = self.retry_on(&raw.on, &key(s, "on"));
        let retries = self
            .integer(&raw.retries, &key(s, "retries"), 0, MAX_RETRIES.into())
            .map(|n| n as u32)
            .or(DEFAULT_RETRIES);
        let non_idempotent = self
            .boolean(&raw.non_idempotent, &key(s, "non_idempotent"))
            .or(false);
        let per_try_timeout = self
            .duration(
                &raw.per_try_timeout,
                &key(s, "per_try_timeout"),
                Duration::from_millis(1),
                MAX_TIMEOUT,
            )
            .optional();
        let deadline = self
            .duration(
                &raw.deadline,
                &key(s, "deadline"),
                Duration::from_millis(1),
                MAX_TIMEOUT,
            )
            .optional();
        let backoff = self
            .duration(
                &raw.backoff,
                &key(s, "backoff"),
                Duration::ZERO,
                MAX_TIMEOUT,
            )
            .or(DEFAULT_RETRY_BACKOFF);
        let max_backoff = self
            .duration(
                &raw.max_backoff,
                &key(s, "max_backoff"),
                Duration::ZERO,
                MAX_TIMEOUT,
            )
            .or(DEFAULT_RETRY_MAX_BACKOFF.max(backoff.unwrap_or_default()));
        if let (Some(backoff), Some(max), Some(field)) = (backoff, max_backoff, &raw.max_backoff)
            && max < backoff
        {
            self.report.invalid(
                field.span(),
                key(s, "max_backoff"),
                "must not be shorter than `backoff`",
            );
            return None;
        }
        Some(RetryPolicy {
            on: on?,
            retries: retries?,
            non_idempotent: non_idempotent?,
            per_try_timeout: per_try_timeout?,
            deadline: deadline?,
            backoff: backoff?,
            max_backoff: max_backoff?,
        })
    }

    /// `on`: the conditions retried, by name.
    fn retry_on(&mut self, field: &Field, key: &str) -> Option<RetryOn> {
        let items = match self.array(field, key, "an array like [\"connect_failure\", \"503\"]") {
            Got::Absent => return Some(DEFAULT_RETRY_ON),
            Got::Invalid => return None,
            Got::Value(items) => items,
        };
        let names: Vec<&str> = RetryOn::NAMES.iter().map(|(_, name)| *name).collect();
        let mut on = RetryOn::NONE;
        let mut ok = true;
        for item in items {
            let parsed = match item.get_ref() {
                Value::String(text) => RetryOn::parse(text).ok_or(text.as_str()),
                Value::Integer(n) => RetryOn::parse(&n.to_string()).ok_or(""),
                _ => Err(""),
            };
            match parsed {
                Ok(condition) => on = on.with(condition),
                Err(text) => {
                    let mut message = format!("expected one of \"{}\"", names.join("\", \""));
                    if let Some(best) = closest(text, &names) {
                        message = format!("did you mean \"{best}\"? ({message})");
                    }
                    self.bad::<()>(item.span(), key, message);
                    ok = false;
                }
            }
        }
        ok.then_some(on)
    }
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::super::super::{Config, ConfigErrors, Resolve};
    use super::*;

    /// `backend.test` resolves to two addresses; nothing else does.
    struct FakeResolver;

    impl Resolve for FakeResolver {
        fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
            match host {
                "backend.test" => Ok(["10.0.0.8", "10.0.0.9"]
                    .iter()
                    .map(|ip| SocketAddr::new(ip.parse().unwrap(), port))
                    .collect()),
                _ => Err(io::Error::other("no such host")),
            }
        }
    }

    const BASE: &str = "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\n";

    fn parse(upstream: &str, route: &str) -> Result<Config, ConfigErrors> {
        let text = format!(
            "{BASE}[[upstream]]\nname = \"up\"\n{upstream}\n\n[[route]]\npath_prefix = \"/\"\n\
             upstream = \"up\"\n{route}\n"
        );
        Config::parse_with(&text, "t.toml", &FakeResolver)
    }

    fn errors(upstream: &str, route: &str) -> Vec<String> {
        match parse(upstream, route) {
            Ok(_) => panic!("expected errors for:\n{upstream}\n{route}"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    const ONE: &str = "endpoints = [\"10.0.0.1:80\"]";

    #[test]
    fn nothing_written_gives_the_documented_defaults() {
        let config = parse(ONE, "").unwrap();
        let upstream = &config.upstreams[0];
        assert_eq!(upstream.weights, vec![DEFAULT_WEIGHT]);
        assert_eq!(upstream.hashing, None);
        assert_eq!(upstream.health_check, None);
        assert_eq!(upstream.resolve_every, DEFAULT_RESOLVE_EVERY);
        let s = &upstream.settings;
        assert_eq!(s.outlier.consecutive_failures, DEFAULT_CONSECUTIVE_FAILURES);
        assert_eq!(s.outlier.consecutive_5xx, DEFAULT_CONSECUTIVE_5XX);
        assert_eq!(s.outlier.base_ejection_time, DEFAULT_BASE_EJECTION_TIME);
        assert_eq!(s.outlier.max_ejection_percent, DEFAULT_MAX_EJECTION_PERCENT);
        assert_eq!(s.panic_threshold, DEFAULT_PANIC_THRESHOLD);
        assert_eq!(s.breakers.max_requests, DEFAULT_MAX_REQUESTS);
        assert_eq!(s.retry_budget.percent, DEFAULT_RETRY_BUDGET_PERCENT);
        assert_eq!(config.routes[0].retry, DEFAULT_RETRY_POLICY);
    }

    #[test]
    fn every_key_is_read() {
        let upstream = r#"endpoints = ["10.0.0.1:80", { address = "backend.test:81", weight = 3 }]
balance = "ring_hash"
hash_on = "cookie:sid"
hash_balance_factor = 150
resolve_every = "30s"
panic_threshold = 0
slow_start = "20s"

[upstream.outlier]
consecutive_failures = 2
consecutive_5xx = 0
min_success_rate = 90
success_rate_requests = 50
base_ejection_time = "5s"
max_ejection_time = "1m"
max_ejection_percent = 100

[upstream.health_check]
path = "/healthz"
host = "api.internal"
interval = "2s"
timeout = "500ms"
rise = 1
fall = 2
expected_statuses = [200, "300-302"]

[upstream.limits]
max_connections = 10
max_pending = 11
max_requests = 12
max_retries = 13
retry_budget_percent = 30
retry_min_concurrency = 1
"#;
        let route = r#"retry = { on = ["reset", "timeout", 503], retries = 3, non_idempotent = true, per_try_timeout = "1s", deadline = "5s", backoff = "10ms", max_backoff = "100ms" }"#;
        // The route comes after the upstream's sub-tables, so it is written as its own table.
        let config = parse(upstream, route).unwrap();
        let u = &config.upstreams[0];
        assert_eq!(u.endpoints.len(), 3);
        assert_eq!(
            u.weights,
            vec![1, 3, 3],
            "a name's addresses share its weight"
        );
        assert_eq!(
            u.names,
            vec![NamedEndpoint {
                host: "backend.test".into(),
                port: 81,
                weight: 3,
                addrs: vec![
                    "10.0.0.8:81".parse().unwrap(),
                    "10.0.0.9:81".parse().unwrap()
                ],
            }]
        );
        assert_eq!(u.balance, Balance::RingHash);
        let hashing = u.hashing.as_ref().unwrap();
        assert_eq!(hashing.on, HashOn::Cookie("sid".into()));
        assert_eq!(hashing.balance_factor, Some(150));
        assert_eq!(u.resolve_every, Some(Duration::from_secs(30)));
        let s = &u.settings;
        assert_eq!(
            (s.panic_threshold, s.slow_start),
            (0, Duration::from_secs(20))
        );
        assert_eq!(s.outlier.consecutive_failures, 2);
        assert_eq!(
            s.outlier.success_rate,
            Some(SuccessRate {
                min_percent: 90,
                requests: 50
            })
        );
        assert_eq!(s.outlier.max_ejection_time, Duration::from_secs(60));
        let check = u.health_check.as_ref().unwrap();
        assert_eq!(check.statuses, vec![(200, 200), (300, 302)]);
        assert_eq!(check.host.as_deref(), Some("api.internal"));
        assert_eq!(s.breakers.max_retries, 13);
        assert_eq!(s.retry_budget.min_concurrency, 1);
        let retry = &config.routes[0].retry;
        assert_eq!(retry.on.names(), vec!["reset", "timeout", "503"]);
        assert_eq!(retry.retries, 3);
        assert!(retry.non_idempotent);
        assert_eq!(retry.deadline, Some(Duration::from_secs(5)));

        // The effective configuration loads back to the same values (names are shown
        // resolved, with a comment naming them).
        let rendered = config.render();
        assert!(
            rendered.contains("# resolved from backend.test:81\n"),
            "{rendered}"
        );
        let again = Config::parse_with(&rendered, "r.toml", &FakeResolver)
            .unwrap_or_else(|errors| panic!("{errors}\n---\n{rendered}"));
        assert_eq!(
            again.render(),
            rendered.replace("# resolved from backend.test:81\n", "")
        );
    }

    #[test]
    fn mistakes_name_their_key_and_line() {
        assert_eq!(
            errors("endpoints = [\"10.0.0.1:80\"]\nbalance = \"ring_hsh\"", ""),
            [
                "t.toml:8:11: upstream[1].balance: unknown policy; did you mean \"ring_hash\"? \
                 (expected one of \"round_robin\", \"least_request\", \"random\", \"ring_hash\", \
                 \"maglev\") (found \"ring_hsh\")"
            ]
        );
        assert_eq!(
            errors(
                "endpoints = [{ address = \"10.0.0.1:80\", wieght = 2 }]",
                ""
            ),
            [
                "t.toml:7:50: upstream[1].endpoints[1].wieght: unknown key; did you mean \
              `weight`? (accepted here: address, weight) (found 2)"
            ]
        );
        assert_eq!(
            errors(
                "endpoints = [{ address = \"10.0.0.1:80\", weight = 0 }]",
                ""
            ),
            ["t.toml:7:50: upstream[1].endpoints[1].weight: must be from 1 to 128 (found 0)"]
        );
        assert_eq!(
            errors(&format!("{ONE}\nhash_on = \"client_ip\""), ""),
            [
                "t.toml:8:11: upstream[1].hash_on: only applies to balance = \"ring_hash\" or \
              \"maglev\" (found \"client_ip\")"
            ]
        );
        assert_eq!(
            errors(
                &format!("{ONE}\n[upstream.outlier]\nmax_ejection_percent = 101"),
                ""
            ),
            [
                "t.toml:9:24: upstream[1].outlier.max_ejection_percent: must be from 0 to 100 \
              (found 101)"
            ]
        );
        assert_eq!(
            errors(
                &format!("{ONE}\n[upstream.health_check]\ninterval = \"1s\"\ntimeout = \"2s\""),
                ""
            ),
            [
                "t.toml:10:11: upstream[1].health_check.timeout: must not be longer than the \
              interval (1s): checks would overlap (found \"2s\")"
            ]
        );
        assert_eq!(
            errors(ONE, "retry = { on = [\"conect_failure\"] }"),
            [
                "t.toml:12:17: route[1].retry.on: did you mean \"connect_failure\"? (expected \
              one of \"connect_failure\", \"reset\", \"timeout\", \"502\", \"503\", \"504\") \
              (found \"conect_failure\")"
            ]
        );
        assert_eq!(
            errors(ONE, "retry = { retries = 9 }"),
            ["t.toml:12:21: route[1].retry.retries: must be from 0 to 7 (found 9)"]
        );
    }

    #[test]
    fn a_route_that_answers_itself_has_nothing_to_retry() {
        let text = format!(
            "{BASE}[[route]]\npath = \"/\"\nrespond = {{ status = 200 }}\nretry = {{ retries = 1 }}\n"
        );
        let errors: Vec<String> = Config::parse_with(&text, "t.toml", &FakeResolver)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            errors,
            [
                "t.toml:8:9: route[1].retry: only applies to routes with an `upstream` (nothing \
              is forwarded)"
            ]
        );
    }
}
