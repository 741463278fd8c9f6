//! A validated [`Config`] written back out as TOML, every key with its effective value: what
//! the admin API's `/config` shows, so an operator sees the defaults that applied and the
//! addresses upstream names resolved to.
//!
//! The output is itself a valid configuration that loads to the same values (a test holds it to
//! that): durations and sizes are written in the file's own units, routes in file order with
//! their names, upstream endpoints as the resolved addresses. Admin tokens, API keys and JWT key
//! material are never written (a configuration with `[[auth]]` therefore shows its policies
//! without their keys).

use std::fmt::Write;

use super::units::{Millis, Size};
use super::{AuthMethod, Config, HeaderEdits, RouteAction, UpstreamConfig};
use crate::ratelimit::KeySpec;
use crate::router::spec::{HostPattern, PathPattern};
use crate::upstream::RetryPolicy;

impl Config {
    /// The effective configuration as TOML.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = render(self, &mut out);
        out
    }
}

fn render(config: &Config, out: &mut String) -> std::fmt::Result {
    runtime(out, config)?;
    limits_and_timeouts(out, config)?;
    services(out, config)?;
    for listener in &config.listeners {
        listener_table(out, listener)?;
    }
    for upstream in &config.upstreams {
        upstream_table(out, upstream)?;
    }
    for route in &config.routes {
        route_table(out, config, route)?;
    }
    auth_tables(out, config)
}

/// `[runtime]` and `[runtime.glommio]`.
fn runtime(out: &mut String, config: &Config) -> std::fmt::Result {
    let r = &config.runtime;
    writeln!(out, "[runtime]")?;
    // `runtime.exclude` is folded into the selection (`"all,^0-1"`).
    writeln!(out, "cores = \"{}\"", r.cores)?;
    writeln!(out, "ring_entries = {}", r.ring_entries)?;
    writeln!(out, "buffer_size = {}", size(r.buffer_size as u64))?;
    writeln!(out, "buffers_per_shard = {}", r.buffers_per_shard)?;
    writeln!(out, "max_connections = {}", r.max_connections)?;
    writeln!(out, "idle_wait = {}", duration(r.idle_wait))?;
    writeln!(out, "\n[runtime.glommio]")?;
    let g = &r.glommio;
    writeln!(out, "io_memory = {}", size(g.io_memory as u64))?;
    writeln!(out, "ring_depth = {}", g.ring_depth)?;
    writeln!(
        out,
        "spin_before_park = {}",
        duration(g.spin_before_park.unwrap_or_default())
    )?;
    writeln!(out, "preempt_timer = {}", duration(g.preempt_timer))?;

    Ok(())
}

/// `[limits]` and `[timeouts]`.
fn limits_and_timeouts(out: &mut String, config: &Config) -> std::fmt::Result {
    let l = &config.limits;
    writeln!(out, "\n[limits]")?;
    writeln!(
        out,
        "max_request_line = {}",
        size(l.max_request_line as u64)
    )?;
    writeln!(out, "max_head_bytes = {}", size(l.max_head_bytes as u64))?;
    writeln!(out, "max_headers = {}", l.max_headers)?;
    writeln!(out, "max_body_bytes = {}", body_limit(l.max_body_bytes))?;
    writeln!(out, "request_buffering = {}", size(l.request_buffering))?;

    let t = &config.timeouts;
    writeln!(out, "\n[timeouts]")?;
    for (key, value) in [
        ("header", t.header),
        ("keepalive", t.keepalive),
        ("body", t.body),
        ("send", t.send),
        ("upstream_connect", t.upstream_connect),
        ("upstream_response", t.upstream_response),
        ("upstream_body", t.upstream_body),
        ("tunnel_idle", t.tunnel_idle),
        ("drain", t.drain),
    ] {
        writeln!(out, "{key} = {}", duration(value))?;
    }

    Ok(())
}

/// `[admin]`, `[access_log]` and `[forwarding]`, when not their defaults.
fn services(out: &mut String, config: &Config) -> std::fmt::Result {
    if let Some(admin) = &config.admin {
        writeln!(out, "\n[admin]")?;
        writeln!(out, "bind = \"{}\"", admin.bind)?;
        if admin.token.is_some() {
            writeln!(out, "# token = (set, not shown)")?;
        }
    }
    if let Some(log) = &config.access_log {
        writeln!(out, "\n[access_log]")?;
        writeln!(out, "path = {}", quote(&log.path.to_string_lossy()))?;
        writeln!(out, "format = \"{}\"", log.format.as_str())?;
        writeln!(out, "buffer_size = {}", size(log.buffer_size as u64))?;
        writeln!(out, "flush_interval = {}", duration(log.flush_interval))?;
    }

    let forwarding = &config.forwarding;
    if *forwarding != super::Forwarding::default() {
        writeln!(out, "\n[forwarding]")?;
        let prefixes: Vec<String> = forwarding
            .trusted_proxies
            .iter()
            .map(|prefix| format!("\"{prefix}\""))
            .collect();
        writeln!(out, "trusted_proxies = [{}]", prefixes.join(", "))?;
        let names: Vec<String> = forwarding
            .drop_from_untrusted
            .iter()
            .map(|name| quote(name))
            .collect();
        writeln!(out, "drop_from_untrusted = [{}]", names.join(", "))?;
        writeln!(out, "forwarded_header = {}", forwarding.forwarded_header)?;
    }

    Ok(())
}

/// One `[[listener]]`; for TLS the files' paths only, never key material.
fn listener_table(out: &mut String, listener: &super::ListenerConfig) -> std::fmt::Result {
    writeln!(out, "\n[[listener]]")?;
    writeln!(out, "name = {}", quote(&listener.name))?;
    writeln!(out, "bind = \"{}\"", listener.bind)?;
    writeln!(out, "backlog = {}", listener.backlog)?;
    writeln!(out, "defer_accept = {}", listener.defer_accept)?;
    if let Some(tls) = &listener.tls {
        // Paths only: key material is never written.
        let certificates: Vec<String> = tls
            .certificates
            .iter()
            .map(|c| {
                format!(
                    "{{ cert = {}, key = {} }}",
                    quote(&c.cert_path.to_string_lossy()),
                    quote(&c.key_path.to_string_lossy())
                )
            })
            .collect();
        writeln!(
            out,
            "tls = {{ certificates = [{}], unknown_name = \"{}\", min_version = \"{}\"{} }}",
            certificates.join(", "),
            tls.unknown_name.as_str(),
            tls.min_version.as_str(),
            tls.client.as_ref().map_or(String::new(), |client| {
                format!(
                    ", client_ca = {}, client_auth = \"{}\"{}",
                    quote(&client.ca_path.to_string_lossy()),
                    if client.required {
                        "required"
                    } else {
                        "optional"
                    },
                    client.header.as_deref().map_or(String::new(), |header| {
                        format!(", client_cert_header = {}", quote(header))
                    })
                )
            })
        )?;
    }
    Ok(())
}

/// One `[[upstream]]` with its tables.
fn upstream_table(out: &mut String, upstream: &UpstreamConfig) -> std::fmt::Result {
    writeln!(out, "\n[[upstream]]")?;
    writeln!(out, "name = {}", quote(&upstream.name))?;
    let endpoints: Vec<String> = upstream
        .endpoints
        .iter()
        .zip(&upstream.weights)
        .map(|(addr, &weight)| match weight {
            1 => format!("\"{addr}\""),
            _ => format!("{{ address = \"{addr}\", weight = {weight} }}"),
        })
        .collect();
    writeln!(out, "endpoints = [{}]", endpoints.join(", "))?;
    for name in &upstream.names {
        writeln!(out, "# resolved from {}:{}", name.host, name.port)?;
    }
    writeln!(out, "balance = \"{}\"", upstream.balance.as_str())?;
    if let Some(hashing) = &upstream.hashing {
        writeln!(out, "hash_on = {}", quote(&hashing.on.to_string()))?;
        if let Some(factor) = hashing.balance_factor {
            writeln!(out, "hash_balance_factor = {factor}")?;
        }
    }
    if let Some(every) = upstream.resolve_every {
        writeln!(out, "resolve_every = {}", duration(every))?;
    }
    let settings = &upstream.settings;
    writeln!(out, "panic_threshold = {}", settings.panic_threshold)?;
    writeln!(out, "slow_start = {}", duration(settings.slow_start))?;
    writeln!(
        out,
        "max_idle_per_endpoint = {}",
        upstream.max_idle_per_endpoint
    )?;
    writeln!(out, "idle_timeout = {}", duration(upstream.idle_timeout))?;
    writeln!(
        out,
        "max_requests_per_connection = {}",
        upstream.max_requests_per_connection.unwrap_or(0)
    )?;
    writeln!(
        out,
        "connect_timeout = {}",
        duration(upstream.connect_timeout)
    )?;
    writeln!(
        out,
        "response_timeout = {}",
        duration(upstream.response_timeout)
    )?;
    upstream_tables(out, upstream)?;
    if let Some(tls) = &upstream.tls {
        let mut parts = Vec::new();
        if let Some(sni) = &tls.sni {
            parts.push(format!("sni = {}", quote(&sni.to_str())));
        }
        if let Some((path, _)) = &tls.ca {
            parts.push(format!("ca = {}", quote(&path.to_string_lossy())));
        }
        parts.push(format!("verify = {}", tls.verify));
        if let Some(cert) = &tls.client_cert {
            parts.push(format!(
                "cert = {}",
                quote(&cert.cert_path.to_string_lossy())
            ));
            parts.push(format!("key = {}", quote(&cert.key_path.to_string_lossy())));
        }
        writeln!(out, "tls = {{ {} }}", parts.join(", "))?;
    }
    Ok(())
}

/// One `[[route]]`.
fn route_table(out: &mut String, config: &Config, route: &super::RouteConfig) -> std::fmt::Result {
    writeln!(out, "\n[[route]]")?;
    writeln!(out, "name = {}", quote(&route.name))?;
    match &route.host {
        HostPattern::Any => {}
        host => writeln!(out, "host = {}", quote(&host.to_string()))?,
    }
    if route.methods != crate::http1::MethodSet::ANY {
        let methods: Vec<String> = route
            .methods
            .iter()
            .filter_map(|method| method.as_str())
            .map(|name| format!("\"{name}\""))
            .collect();
        writeln!(out, "methods = [{}]", methods.join(", "))?;
    }
    match &route.path {
        PathPattern::Exact(path) | PathPattern::Template(path) => {
            writeln!(out, "path = {}", quote(path))?
        }
        PathPattern::Prefix(path) => writeln!(out, "path_prefix = {}", quote(path))?,
    }
    match &route.action {
        RouteAction::Upstream {
            upstream,
            strip_prefix,
            prefix_rewrite,
        } => {
            let name = config
                .upstreams
                .get(*upstream)
                .map_or("", |upstream| &upstream.name);
            writeln!(out, "upstream = {}", quote(name))?;
            if *strip_prefix {
                writeln!(out, "strip_prefix = true")?;
            }
            if let Some(rewrite) = prefix_rewrite {
                writeln!(out, "prefix_rewrite = {}", quote(rewrite))?;
            }
        }
        RouteAction::Respond {
            status,
            body,
            headers,
        } => {
            write!(
                out,
                "respond = {{ status = {status}, body = {}",
                quote(&String::from_utf8_lossy(body))
            )?;
            if !headers.is_empty() {
                let pairs: Vec<String> = headers
                    .iter()
                    .map(|(name, value)| format!("{} = {}", quote(name), quote(value)))
                    .collect();
                write!(out, ", headers = {{ {} }}", pairs.join(", "))?;
            }
            writeln!(out, " }}")?;
        }
    }
    edits(out, "request", &route.request_headers)?;
    edits(out, "response", &route.response_headers)?;
    writeln!(out, "max_body_bytes = {}", body_limit(route.max_body_bytes))?;
    writeln!(out, "request_buffering = {}", size(route.request_buffering))?;
    if let Some(index) = route.auth {
        let name = config.auth.get(index).map_or("", |auth| &auth.name);
        writeln!(out, "auth = {}", quote(name))?;
    }
    if let Some(port) = route.redirect_https {
        writeln!(out, "redirect_https = true\nhttps_port = {port}")?;
    }
    if let Some(limit) = &route.rate_limit {
        let key = match &limit.key {
            KeySpec::ClientIp { .. } => "client_ip".to_owned(),
            KeySpec::Header(name) => format!("header:{name}"),
            KeySpec::Identity => "identity".to_owned(),
            KeySpec::ClientCert => "client_cert".to_owned(),
            KeySpec::Route => "route".to_owned(),
        };
        write!(
            out,
            "rate_limit = {{ rate = \"{}\", burst = {}, key = {}, keys = {}",
            limit.quota.rate(),
            limit.quota.burst(),
            quote(&key),
            limit.keys_per_shard
        )?;
        if let KeySpec::ClientIp { ipv6_prefix } = limit.key {
            write!(out, ", ipv6_prefix = {ipv6_prefix}")?;
        }
        writeln!(out, " }}")?;
    }
    if matches!(route.action, RouteAction::Upstream { .. }) {
        retry(out, &route.retry)?;
    }
    Ok(())
}

/// The `[[auth]]` policies.
fn auth_tables(out: &mut String, config: &Config) -> std::fmt::Result {
    // Key material (API keys, secrets, public keys) is never written: a policy is shown by
    // its settings only, and does not load back without its keys.
    for auth in &config.auth {
        writeln!(out, "\n[[auth]]")?;
        writeln!(out, "name = {}", quote(&auth.name))?;
        match &auth.method {
            AuthMethod::ApiKey(keys) => {
                writeln!(out, "kind = \"api_key\"")?;
                writeln!(out, "header = {}", quote(keys.header_name()))?;
                writeln!(out, "# keys = (configured, not shown)")?;
            }
            AuthMethod::Jwt {
                cache_entries,
                cache_ttl,
                ..
            } => {
                writeln!(out, "kind = \"jwt\"")?;
                writeln!(out, "# keys = (configured, not shown)")?;
                writeln!(out, "cache_entries = {cache_entries}")?;
                writeln!(out, "cache_ttl = {}", duration(*cache_ttl))?;
            }
        }
        if let Some(header) = &auth.identity_header {
            writeln!(out, "identity_header = {}", quote(header))?;
        }
    }
    Ok(())
}

fn edits(out: &mut String, side: &str, edits: &HeaderEdits) -> std::fmt::Result {
    if !edits.remove.is_empty() {
        let names: Vec<String> = edits.remove.iter().map(|name| quote(name)).collect();
        writeln!(out, "remove_{side}_headers = [{}]", names.join(", "))?;
    }
    if !edits.add.is_empty() {
        let pairs: Vec<String> = edits
            .add
            .iter()
            .map(|(name, value)| format!("{} = {}", quote(name), quote(value)))
            .collect();
        writeln!(out, "add_{side}_headers = {{ {} }}", pairs.join(", "))?;
    }
    Ok(())
}

fn duration(value: std::time::Duration) -> String {
    match Millis(value).to_string().as_str() {
        "0" => "0".to_owned(),
        text => format!("\"{text}\""),
    }
}

fn size(bytes: u64) -> String {
    format!("\"{}\"", Size(bytes).to_string().replace(' ', ""))
}

fn body_limit(limit: Option<u64>) -> String {
    limit.map_or_else(|| "0".to_owned(), size)
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An upstream's `[upstream.outlier]`, `[upstream.limits]` and `[upstream.health_check]`.
fn upstream_tables(out: &mut String, upstream: &UpstreamConfig) -> std::fmt::Result {
    let o = &upstream.settings.outlier;
    writeln!(out, "\n[upstream.outlier]")?;
    writeln!(out, "consecutive_failures = {}", o.consecutive_failures)?;
    writeln!(out, "consecutive_5xx = {}", o.consecutive_5xx)?;
    if let Some(rate) = o.success_rate {
        writeln!(out, "min_success_rate = {}", rate.min_percent)?;
        writeln!(out, "success_rate_requests = {}", rate.requests)?;
    }
    writeln!(
        out,
        "base_ejection_time = {}",
        duration(o.base_ejection_time)
    )?;
    writeln!(out, "max_ejection_time = {}", duration(o.max_ejection_time))?;
    writeln!(out, "max_ejection_percent = {}", o.max_ejection_percent)?;
    let b = &upstream.settings.breakers;
    let budget = &upstream.settings.retry_budget;
    writeln!(out, "\n[upstream.limits]")?;
    writeln!(out, "max_connections = {}", b.max_connections)?;
    writeln!(out, "max_pending = {}", b.max_pending)?;
    writeln!(out, "max_requests = {}", b.max_requests)?;
    writeln!(out, "max_retries = {}", b.max_retries)?;
    writeln!(out, "retry_budget_percent = {}", budget.percent)?;
    writeln!(out, "retry_min_concurrency = {}", budget.min_concurrency)?;
    if let Some(check) = &upstream.health_check {
        writeln!(out, "\n[upstream.health_check]")?;
        writeln!(out, "path = {}", quote(&check.path))?;
        if let Some(host) = &check.host {
            writeln!(out, "host = {}", quote(host))?;
        }
        writeln!(out, "interval = {}", duration(check.interval))?;
        writeln!(out, "timeout = {}", duration(check.timeout))?;
        writeln!(out, "rise = {}", check.rise)?;
        writeln!(out, "fall = {}", check.fall)?;
        let statuses: Vec<String> = check
            .statuses_text()
            .iter()
            .map(|status| match status.contains('-') {
                true => quote(status),
                false => status.clone(),
            })
            .collect();
        writeln!(out, "expected_statuses = [{}]", statuses.join(", "))?;
    }
    Ok(())
}

/// A route's `retry = { ... }`, every field written.
fn retry(out: &mut String, policy: &RetryPolicy) -> std::fmt::Result {
    let on: Vec<String> = policy.on.names().iter().map(|name| quote(name)).collect();
    write!(
        out,
        "retry = {{ on = [{}], retries = {}, non_idempotent = {}",
        on.join(", "),
        policy.retries,
        policy.non_idempotent
    )?;
    if let Some(timeout) = policy.per_try_timeout {
        write!(out, ", per_try_timeout = {}", duration(timeout))?;
    }
    if let Some(deadline) = policy.deadline {
        write!(out, ", deadline = {}", duration(deadline))?;
    }
    writeln!(
        out,
        ", backoff = {}, max_backoff = {} }}",
        duration(policy.backoff),
        duration(policy.max_backoff)
    )
}
