//! Raw structs -> [`Config`]: value types, bounds, names, references between sections and
//! cross-field rules, every mistake reported with its key, line and value.
//!
//! Owns the rules; the file's shape is `file.rs`'s and the defaults are `defaults.rs`'s. Pure
//! apart from one injected dependency, the [`Resolve`]r for upstream host names, so tests run
//! without DNS.
//!
//! Every check runs even after earlier ones failed; a value that failed its check is `None`
//! from then on, and rules that depend on it are skipped rather than reported twice. The
//! validated sections are built only at the end, with `?` over those options: `None` there
//! always means an error was reported.

mod auth;
mod tls;
mod upstream;

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::cores::{
    CoreSet, MAX_CPU, check_cpu_array, parse_exclusion, parse_selection, with_exclusion,
};
use super::defaults::*;
use super::error::{ConfigError, ConfigErrors, Report};
use super::file::{
    self, Field, RawAccessLog, RawAdmin, RawFile, RawForwarding, RawGlommio, RawLimits,
    RawListener, RawRespond, RawRoute, RawRuntime, RawTimeouts, RawUpstream, Tables, Value,
    push_key,
};
use super::profile::Sources;
use super::units::{Millis, Size, parse_duration, parse_size};
use super::{
    AccessLogConfig, AccessLogFormat, AdminConfig, Balance, Config, CoreSelection, Forwarding,
    GlommioConfig, HeaderEdits, IpPrefix, Limits, ListenerConfig, NamedEndpoint, RouteAction,
    RouteConfig, RuntimeConfig, Timeouts, UpstreamConfig,
};
use crate::http1::{Method, MethodSet};
use crate::router::spec::{HostPattern, PathPattern};
use crate::router::{RouteProblem, RouteSpec, RouteTable};

use upstream::{Endpoints, host_name, unknown_policy};

/// Turns an upstream endpoint's host name into addresses. Called once per name when a file is
/// loaded, and by the control plane every `resolve_every` for upstreams that set it.
pub trait Resolve {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>>;
}

/// The system resolver (`getaddrinfo`, through std): `/etc/hosts`, then DNS. Every address a
/// name resolves to becomes an endpoint, as in NGINX's `upstream` blocks; note that
/// `localhost` often resolves to both `::1` and `127.0.0.1`.
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok((host, port).to_socket_addrs()?.collect())
    }
}

/// Reads and validates `text`, merged over the profiles it names (see `profile.rs`).
pub(super) fn validate(
    text: &str,
    origin: &str,
    resolver: &dyn Resolve,
) -> Result<Config, ConfigErrors> {
    let sources = Sources::gather(text, origin);
    let mut report = Report::joined(&sources.text, &sources.starts());
    let Some(document) = sources.merged(&mut report) else {
        return Err(failed(report, origin));
    };
    let Some(raw) = file::read(document, &mut report) else {
        return Err(failed(report, origin));
    };
    let mut v = Validator {
        report,
        rejected: raw.rejected,
        resolver,
        upstream_names: Vec::new(),
        auth_names: Vec::new(),
        buffer_size: None,
        origin: origin.to_owned(),
    };
    let config = v.config(&raw.file);
    match (config, v.report.has_errors()) {
        (Some(mut config), false) => {
            config.profiles = sources.profiles;
            Ok(config)
        }
        _ => Err(failed(v.report, origin)),
    }
}

/// The report's errors; an internal error if a check returned `None` without reporting.
fn failed(report: Report<'_>, origin: &str) -> ConfigErrors {
    report.finish().unwrap_or_else(|| {
        ConfigErrors::from_vec(vec![ConfigError {
            origin: origin.into(),
            location: None,
            key: "".into(),
            message: "internal error: a check failed without saying why".into(),
            found: None,
        }])
    })
}

/// What a key held, once its type and bounds were checked.
enum Got<T> {
    /// The key is not in the file.
    Absent,
    /// The key is there but wrong; the mistake has been reported.
    Invalid,
    Value(T),
}

impl<T> Got<T> {
    /// The value, or `default` when absent; `None` when invalid.
    fn or(self, default: T) -> Option<T> {
        match self {
            Got::Absent => Some(default),
            Got::Invalid => None,
            Got::Value(value) => Some(value),
        }
    }

    /// `Some(None)` when absent, `None` when invalid.
    fn optional(self) -> Option<Option<T>> {
        match self {
            Got::Absent => Some(None),
            Got::Invalid => None,
            Got::Value(value) => Some(Some(value)),
        }
    }

    fn map<U>(self, f: impl FnOnce(T) -> U) -> Got<U> {
        match self {
            Got::Absent => Got::Absent,
            Got::Invalid => Got::Invalid,
            Got::Value(value) => Got::Value(f(value)),
        }
    }
}

/// `section.key`
fn key(section: &str, name: &str) -> String {
    format!("{section}.{name}")
}

struct Validator<'s, 'r> {
    report: Report<'s>,
    /// Tables the reader reported as the wrong shape and removed (see [`file::Raw`]).
    rejected: Vec<String>,
    resolver: &'r dyn Resolve,
    /// The name of each `[[upstream]]` in file order, when it has one, for route references.
    upstream_names: Vec<Option<String>>,
    /// The file name, for paths relative to it.
    origin: String,
    /// The name of each `[[auth]]` in file order, when it has one, for route references.
    auth_names: Vec<Option<String>>,
    /// `runtime.buffer_size` once validated: what `request_buffering` is measured against.
    buffer_size: Option<usize>,
}

impl Validator<'_, '_> {
    fn config(&mut self, raw: &RawFile) -> Option<Config> {
        let runtime = self.runtime(raw.runtime.as_ref());
        self.buffer_size = runtime.as_ref().map(|runtime| runtime.buffer_size);
        let limits = self.limits(raw.limits.as_ref(), raw.runtime.as_ref(), runtime.as_ref());
        let timeouts = self.timeouts(raw.timeouts.as_ref());
        let listeners = self.listeners(&raw.listener);
        let upstreams = self.upstreams(&raw.upstream, timeouts.as_ref());
        let auth = self.auth_policies(&raw.auth);
        let routes = self.routes(&raw.route, &upstreams, limits.as_ref());
        let admin = self.admin(raw.admin.as_ref(), listeners.as_deref());
        let access_log = self.access_log(raw.access_log.as_ref());
        let forwarding = self.forwarding(raw.forwarding.as_ref());
        self.check_tls_buffer(raw.runtime.as_ref(), runtime.as_ref(), listeners.as_deref());
        Some(Config {
            runtime: runtime?,
            limits: limits?,
            timeouts: timeouts?,
            listeners: listeners?,
            upstreams: upstreams.into_iter().collect::<Option<Vec<_>>>()?,
            routes: routes?,
            admin: admin?,
            access_log: access_log?,
            forwarding: forwarding?,
            auth: auth.into_iter().collect::<Option<Vec<_>>>()?,
            origin: self.origin.as_str().into(),
            profiles: Vec::new(),
        })
    }

    /// A TLS record is decrypted whole into one buffer: TLS listeners need buffers of at least
    /// [`MIN_TLS_BUFFER_SIZE`].
    fn check_tls_buffer(
        &mut self,
        raw: Option<&Spanned<RawRuntime>>,
        runtime: Option<&RuntimeConfig>,
        listeners: Option<&[ListenerConfig]>,
    ) {
        let (Some(runtime), Some(listeners)) = (runtime, listeners) else {
            return;
        };
        let Some(tls) = listeners.iter().find(|l| l.tls.is_some()) else {
            return;
        };
        if runtime.buffer_size < MIN_TLS_BUFFER_SIZE {
            let span = raw.and_then(|r| r.get_ref().buffer_size.as_ref().map(Spanned::span));
            self.report.error(
                span,
                "runtime.buffer_size",
                format!(
                    "must be at least {} with a TLS listener ({:?}): a TLS record carries up \
                     to 16 KiB and is decrypted into one buffer",
                    Size(MIN_TLS_BUFFER_SIZE as u64),
                    tls.name
                ),
            );
        }
    }

    fn was_rejected(&self, key: &str) -> bool {
        self.rejected.iter().any(|r| {
            r.strip_prefix(key)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['[', '.']))
        })
    }

    // -----------------------------------------------------------------------------------------
    // [runtime]

    fn runtime(&mut self, raw: Option<&Spanned<RawRuntime>>) -> Option<RuntimeConfig> {
        let default = RawRuntime::default();
        let raw = raw.map_or(&default, Spanned::get_ref);
        let s = "runtime";
        let cores = self.cores(&raw.cores, &key(s, "cores"));
        let exclude = self.exclude(&raw.exclude, &key(s, "exclude"));
        let io = self.io_mechanism(&raw.io, &key(s, "io"));
        let ring_entries = self
            .power_of_two(
                &raw.ring_entries,
                &key(s, "ring_entries"),
                MIN_RING_ENTRIES,
                MAX_RING_ENTRIES,
            )
            .or(DEFAULT_RING_ENTRIES);
        let buffer_size = self
            .size(
                &raw.buffer_size,
                &key(s, "buffer_size"),
                MIN_BUFFER_SIZE as u64,
                MAX_BUFFER_SIZE as u64,
            )
            .map(to_usize)
            .or(DEFAULT_BUFFER_SIZE);
        let buffers_per_shard = self
            .integer(
                &raw.buffers_per_shard,
                &key(s, "buffers_per_shard"),
                MIN_BUFFERS_PER_SHARD as i128,
                MAX_BUFFERS_PER_SHARD as i128,
            )
            .map(to_usize)
            .or(DEFAULT_BUFFERS_PER_SHARD);
        let max_connections = self
            .integer(
                &raw.max_connections,
                &key(s, "max_connections"),
                1,
                MAX_MAX_CONNECTIONS as i128,
            )
            .map(to_usize)
            .or(DEFAULT_MAX_CONNECTIONS);
        let idle_wait = self
            .duration(
                &raw.idle_wait,
                &key(s, "idle_wait"),
                Duration::ZERO,
                MAX_IDLE_WAIT,
            )
            .or(DEFAULT_IDLE_WAIT);
        let glommio = self.glommio(raw.glommio.as_ref());
        io?;
        Some(RuntimeConfig {
            cores: with_exclusion(cores?, exclude?),
            cores_at: raw
                .cores
                .as_ref()
                .map(|f| self.report.written(f.span().start)),
            exclude_at: raw
                .exclude
                .as_ref()
                .map(|f| self.report.written(f.span().start)),
            ring_entries: ring_entries?,
            buffer_size: buffer_size?,
            buffers_per_shard: buffers_per_shard?,
            max_connections: max_connections?,
            idle_wait: idle_wait?,
            glommio: glommio?,
        })
    }

    /// `cores`: a selection string (`"all"`, `"0-3,6"`, `"all,^0-1"`, `"physical"`,
    /// `"node1"`; see `cores.rs`), or an array of CPU numbers.
    fn cores(&mut self, field: &Field, key: &str) -> Option<CoreSelection> {
        let Some(field) = field else {
            return Some(DEFAULT_CORES);
        };
        let span = field.span();
        let result = match field.get_ref() {
            Value::String(text) => parse_selection(text),
            Value::Integer(n) => Err(format!(
                "a bare number is ambiguous; write \"{n}\" for CPU {n}, or a list like \"0-3\" \
                 for several CPUs"
            )),
            Value::Array(items) => {
                let cpus = self.cpu_array(items, key)?;
                check_cpu_array(cpus).map(CoreSelection::List)
            }
            _ => Err(
                "expected \"all\", a CPU list like \"0-3,6\", \"physical\", \"node1\", or an \
                      array like [1, 3]"
                    .into(),
            ),
        };
        match result {
            Ok(selection) => Some(selection),
            Err(message) => {
                self.report.invalid(span, key, message);
                None
            }
        }
    }

    /// `exclude`: CPUs (and NUMA nodes) no shard may use, whatever `cores` selects: a string
    /// like `"0-1"` or `"node0"`, or an array of CPU numbers. Absent, `""` or `[]` is nothing.
    fn exclude(&mut self, field: &Field, key: &str) -> Option<Vec<CoreSet>> {
        let Some(field) = field else {
            return Some(Vec::new());
        };
        let span = field.span();
        let result = match field.get_ref() {
            // Nothing excluded: how a file overrides a profile's exclusion.
            Value::String(text) if text.trim().is_empty() => Ok(Vec::new()),
            Value::Array(items) if items.is_empty() => Ok(Vec::new()),
            Value::String(text) => parse_exclusion(text),
            Value::Array(items) => {
                let cpus = self.cpu_array(items, key)?;
                check_cpu_array(cpus).map(|cpus| vec![CoreSet::Cpus(cpus)])
            }
            Value::Integer(n) => Err(format!(
                "a bare number is ambiguous; write \"{n}\" for CPU {n}, or a list like \"0-1\""
            )),
            _ => Err("expected a CPU list like \"0-1\", \"node0\", or an array like [0, 1]".into()),
        };
        match result {
            Ok(sets) => Some(sets),
            Err(message) => {
                self.report.invalid(span, key, message);
                None
            }
        }
    }

    /// The CPU numbers of a TOML array; `None` (reported) when an item is not one.
    fn cpu_array(&mut self, items: &[Spanned<Value>], key: &str) -> Option<Vec<usize>> {
        let mut cpus = Vec::new();
        for item in items {
            match item.get_ref() {
                Value::Integer(n) if (0..=MAX_CPU as i128).contains(n) => {
                    cpus.push(to_usize(*n as u64));
                }
                _ => {
                    self.bad::<()>(
                        item.span(),
                        key,
                        format!("expected CPU numbers from 0 to {MAX_CPU}"),
                    );
                    return None;
                }
            }
        }
        Some(cpus)
    }

    /// `io` once chose between each shard's own io_uring and glommio's `TcpStream`; the ring is
    /// the only mechanism left, and the key stays accepted with that value so files that name
    /// it keep loading.
    fn io_mechanism(&mut self, raw: &Field, name: &str) -> Option<()> {
        self.string(raw, name)
            .and_then(|(text, span)| match text {
                "uring" => Got::Value(()),
                "glommio" => self.bad(
                    span,
                    name,
                    "glommio's TcpStream path was retired; every shard runs its own io_uring \
                     (remove this key)",
                ),
                _ => self.bad(span, name, "must be \"uring\""),
            })
            .or(())
    }

    fn glommio(&mut self, raw: Option<&Spanned<RawGlommio>>) -> Option<GlommioConfig> {
        let default = RawGlommio::default();
        let raw = raw.map_or(&default, Spanned::get_ref);
        let s = "runtime.glommio";
        let io_memory = self
            .size(
                &raw.io_memory,
                &key(s, "io_memory"),
                MIN_GLOMMIO_IO_MEMORY as u64,
                MAX_GLOMMIO_IO_MEMORY as u64,
            )
            .map(to_usize)
            .or(DEFAULT_GLOMMIO_IO_MEMORY);
        let ring_depth = self
            .power_of_two(
                &raw.ring_depth,
                &key(s, "ring_depth"),
                MIN_GLOMMIO_RING_DEPTH,
                MAX_GLOMMIO_RING_DEPTH,
            )
            .or(DEFAULT_GLOMMIO_RING_DEPTH);
        let spin_before_park = self
            .duration(
                &raw.spin_before_park,
                &key(s, "spin_before_park"),
                Duration::ZERO,
                MAX_GLOMMIO_SPIN_BEFORE_PARK,
            )
            .or(DEFAULT_GLOMMIO_SPIN_BEFORE_PARK);
        let preempt_timer = self
            .duration(
                &raw.preempt_timer,
                &key(s, "preempt_timer"),
                MIN_GLOMMIO_PREEMPT_TIMER,
                MAX_GLOMMIO_PREEMPT_TIMER,
            )
            .or(DEFAULT_GLOMMIO_PREEMPT_TIMER);
        Some(GlommioConfig {
            io_memory: io_memory?,
            ring_depth: ring_depth?,
            spin_before_park: Some(spin_before_park?).filter(|d| !d.is_zero()),
            preempt_timer: preempt_timer?,
        })
    }

    // -----------------------------------------------------------------------------------------
    // [limits]

    fn limits(
        &mut self,
        raw: Option<&Spanned<RawLimits>>,
        raw_runtime: Option<&Spanned<RawRuntime>>,
        runtime: Option<&RuntimeConfig>,
    ) -> Option<Limits> {
        let default = RawLimits::default();
        let raw = raw.map_or(&default, Spanned::get_ref);
        let s = "limits";
        let max_request_line = self
            .size(
                &raw.max_request_line,
                &key(s, "max_request_line"),
                MIN_MAX_REQUEST_LINE as u64,
                MAX_BUFFER_SIZE as u64,
            )
            .map(to_usize)
            .or(DEFAULT_MAX_REQUEST_LINE);
        let max_head_bytes = self
            .size(
                &raw.max_head_bytes,
                &key(s, "max_head_bytes"),
                MIN_MAX_HEAD_BYTES as u64,
                MAX_BUFFER_SIZE as u64,
            )
            .map(to_usize)
            .or(DEFAULT_MAX_HEAD_BYTES);
        let max_headers = self
            .integer(
                &raw.max_headers,
                &key(s, "max_headers"),
                1,
                MAX_MAX_HEADERS as i128,
            )
            .map(to_usize)
            .or(DEFAULT_MAX_HEADERS);
        let max_body_bytes = self
            .body_limit(&raw.max_body_bytes, &key(s, "max_body_bytes"))
            .or(DEFAULT_MAX_BODY_BYTES);
        let request_buffering = self
            .request_buffering(&raw.request_buffering, &key(s, "request_buffering"))
            .or(DEFAULT_REQUEST_BUFFERING);

        // The request line is part of the head.
        if let (Some(line), Some(head)) = (max_request_line, max_head_bytes)
            && line > head
        {
            let at = written_at(&[
                (&raw.max_request_line, "limits.max_request_line"),
                (&raw.max_head_bytes, "limits.max_head_bytes"),
            ]);
            let message = format!(
                "limits.max_request_line ({}) must not exceed limits.max_head_bytes ({}): the \
                 request line is part of the head",
                Size(line as u64),
                Size(head as u64)
            );
            self.report_at(at, "limits.max_request_line", message);
        }
        // A head is parsed in place, inside one buffer.
        if let (Some(head), Some(runtime)) = (max_head_bytes, runtime)
            && head > runtime.buffer_size
        {
            let no_field = None;
            let buffer_field = raw_runtime.map_or(&no_field, |r| &r.get_ref().buffer_size);
            let at = written_at(&[
                (&raw.max_head_bytes, "limits.max_head_bytes"),
                (buffer_field, "runtime.buffer_size"),
            ]);
            let message = format!(
                "limits.max_head_bytes ({}) must not exceed runtime.buffer_size ({}): a request \
                 head is parsed within one buffer",
                Size(head as u64),
                Size(runtime.buffer_size as u64)
            );
            self.report_at(at, "limits.max_head_bytes", message);
        }
        Some(Limits {
            max_request_line: max_request_line?,
            max_head_bytes: max_head_bytes?,
            max_headers: max_headers?,
            max_body_bytes: max_body_bytes?,
            request_buffering: request_buffering?,
        })
    }

    /// Reports a rule between two keys at the first of them that the file wrote.
    fn report_at(
        &mut self,
        at: Option<(Range<usize>, &'static str)>,
        fallback: &str,
        message: String,
    ) {
        match at {
            Some((span, key)) => self.report.invalid(span, key, message),
            None => self.report.error(None, fallback, message),
        }
    }

    /// How much of a request body is received whole before it goes upstream: a size of at most
    /// [`MAX_BUFFERED_BODY_BUFFERS`] I/O buffers, so that it leaves in one gathered write.
    fn request_buffering(&mut self, field: &Field, key: &str) -> Got<u64> {
        let got = self.size(field, key, 0, u64::MAX);
        let (Got::Value(size), Some(buffer_size), Some(f)) = (&got, self.buffer_size, field) else {
            return got;
        };
        let max = MAX_BUFFERED_BODY_BUFFERS * buffer_size as u64;
        if *size <= max {
            return got;
        }
        let message = format!(
            "must be at most {MAX_BUFFERED_BODY_BUFFERS} x runtime.buffer_size ({}): a buffered \
             body goes upstream in one write of the shard's I/O buffers",
            Size(max)
        );
        self.bad(f.span(), key, message)
    }

    /// A body size limit: a size, `0` meaning unlimited (`None`).
    fn body_limit(&mut self, field: &Field, key: &str) -> Got<Option<u64>> {
        self.size(field, key, 0, u64::MAX)
            .map(|n| Some(n).filter(|&n| n > 0))
    }

    // -----------------------------------------------------------------------------------------
    // [timeouts]

    fn timeouts(&mut self, raw: Option<&Spanned<RawTimeouts>>) -> Option<Timeouts> {
        let default = RawTimeouts::default();
        let raw = raw.map_or(&default, Spanned::get_ref);
        let s = "timeouts";
        let header = self.timeout(&raw.header, &key(s, "header"), DEFAULT_HEADER_TIMEOUT);
        let keepalive = self.timeout(
            &raw.keepalive,
            &key(s, "keepalive"),
            DEFAULT_KEEPALIVE_TIMEOUT,
        );
        let body = self.timeout(&raw.body, &key(s, "body"), DEFAULT_BODY_TIMEOUT);
        let send = self.timeout(&raw.send, &key(s, "send"), DEFAULT_SEND_TIMEOUT);
        let upstream_connect = self.timeout(
            &raw.upstream_connect,
            &key(s, "upstream_connect"),
            DEFAULT_UPSTREAM_CONNECT_TIMEOUT,
        );
        let upstream_response = self.timeout(
            &raw.upstream_response,
            &key(s, "upstream_response"),
            DEFAULT_UPSTREAM_RESPONSE_TIMEOUT,
        );
        let upstream_body = self.timeout(
            &raw.upstream_body,
            &key(s, "upstream_body"),
            DEFAULT_UPSTREAM_BODY_TIMEOUT,
        );
        let tunnel_idle = self.timeout(
            &raw.tunnel_idle,
            &key(s, "tunnel_idle"),
            DEFAULT_TUNNEL_IDLE_TIMEOUT,
        );
        let drain = self.timeout(&raw.drain, &key(s, "drain"), DEFAULT_DRAIN_TIMEOUT);
        Some(Timeouts {
            header: header?,
            keepalive: keepalive?,
            body: body?,
            send: send?,
            upstream_connect: upstream_connect?,
            upstream_response: upstream_response?,
            upstream_body: upstream_body?,
            tunnel_idle: tunnel_idle?,
            drain: drain?,
        })
    }

    /// A timeout: more than zero (coregate has no "never"), at most [`MAX_TIMEOUT`].
    fn timeout(&mut self, field: &Field, key: &str, default: Duration) -> Option<Duration> {
        self.duration(field, key, Duration::from_millis(1), MAX_TIMEOUT)
            .or(default)
    }

    // -----------------------------------------------------------------------------------------
    // [[listener]]

    fn listeners(&mut self, raw: &Tables<RawListener>) -> Option<Vec<ListenerConfig>> {
        let items = raw.as_ref().map_or(&[][..], |t| t.get_ref().as_slice());
        if items.is_empty() && !self.was_rejected("listener") {
            self.report.error(
                None,
                "listener",
                "at least one [[listener]] is required, like: [[listener]] name = \"public\" \
                 bind = \"0.0.0.0:8080\"",
            );
        }
        let mut names = Names::new("listener");
        let mut binds: Vec<(SocketAddr, String)> = Vec::new();
        let mut listeners = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let s = format!("listener[{}]", i + 1);
            let header = item.span();
            let raw = item.get_ref();
            let name = self.name(&raw.name, &s, &header, &mut names);
            let bind = self.string(&raw.bind, &key(&s, "bind"));
            let bind = match bind {
                Got::Value((text, span)) => match text.parse::<SocketAddr>() {
                    Ok(addr) => {
                        self.check_bind_unique(addr, &mut binds, span, &key(&s, "bind"));
                        Got::Value(addr)
                    }
                    Err(_) => self.bad(
                        span,
                        &key(&s, "bind"),
                        "expected an IP address and port, like \"0.0.0.0:8080\" or \
                         \"[::]:8443\" (listeners do not resolve host names)",
                    ),
                },
                Got::Absent => Got::Absent,
                Got::Invalid => Got::Invalid,
            };
            let bind = self.required(bind, &header, &key(&s, "bind"));
            let backlog = self
                .integer(&raw.backlog, &key(&s, "backlog"), 1, MAX_BACKLOG.into())
                .map(|n| n as u32)
                .or(DEFAULT_BACKLOG);
            let defer_accept = self
                .boolean(&raw.defer_accept, &key(&s, "defer_accept"))
                .or(DEFAULT_DEFER_ACCEPT);
            let tls = self.listener_tls(raw.tls.as_ref(), &s);
            match (name, bind, backlog, defer_accept, tls) {
                (Some(name), Some(bind), Some(backlog), Some(defer_accept), Some(tls)) => {
                    listeners.push(ListenerConfig {
                        name,
                        bind,
                        backlog,
                        defer_accept,
                        tls,
                    });
                }
                _ => ok = false,
            }
        }
        (ok && !listeners.is_empty()).then_some(listeners)
    }

    /// Two listeners may not take the same address, nor one the wildcard of the other's port.
    /// Port 0 (an ephemeral port each time, for tests) never clashes.
    fn check_bind_unique(
        &mut self,
        addr: SocketAddr,
        binds: &mut Vec<(SocketAddr, String)>,
        span: Range<usize>,
        key: &str,
    ) {
        if addr.port() != 0 {
            let clash = binds.iter().find(|(other, _)| {
                other.port() == addr.port()
                    && other.is_ipv4() == addr.is_ipv4()
                    && (other.ip() == addr.ip()
                        || other.ip().is_unspecified()
                        || addr.ip().is_unspecified())
            });
            if let Some((other, other_key)) = clash {
                let message = if *other == addr {
                    format!("address already used by {other_key}")
                } else {
                    format!("overlaps {other_key} ({other}): one of them binds every address")
                };
                self.report.invalid(span, key, message);
            }
        }
        binds.push((addr, key.to_owned()));
    }

    // -----------------------------------------------------------------------------------------
    // [[upstream]]

    /// Validates every upstream; the result has one entry per `[[upstream]]`, `None` for those
    /// with mistakes, so routes can still find upstreams by name.
    fn upstreams(
        &mut self,
        raw: &Tables<RawUpstream>,
        timeouts: Option<&Timeouts>,
    ) -> Vec<Option<UpstreamConfig>> {
        let items = raw.as_ref().map_or(&[][..], |t| t.get_ref().as_slice());
        let mut names = Names::new("upstream");
        let mut upstreams = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let s = format!("upstream[{}]", i + 1);
            let header = item.span();
            let raw = item.get_ref();
            self.upstream_names
                .push(match raw.name.as_ref().map(Spanned::get_ref) {
                    Some(Value::String(name)) => Some(name.clone()),
                    _ => None,
                });
            let name = self.name(&raw.name, &s, &header, &mut names);
            let endpoints = self.endpoints(&raw.endpoints, &key(&s, "endpoints"));
            let endpoints = self.required(endpoints, &header, &key(&s, "endpoints"));
            let balance = self
                .string(&raw.balance, &key(&s, "balance"))
                .and_then(
                    |(text, span)| match Balance::ALL.iter().find(|b| b.as_str() == text) {
                        Some(balance) => Got::Value(*balance),
                        None => self.bad(span, &key(&s, "balance"), unknown_policy(text)),
                    },
                )
                .or(DEFAULT_BALANCE);
            let hashing = self.hashing(raw, &s, balance);
            let resilience = self.resilience(raw, &s);
            let max_idle = self
                .integer(
                    &raw.max_idle_per_endpoint,
                    &key(&s, "max_idle_per_endpoint"),
                    0,
                    MAX_MAX_IDLE_PER_ENDPOINT as i128,
                )
                .map(to_usize)
                .or(DEFAULT_MAX_IDLE_PER_ENDPOINT);
            let idle_timeout = self.timeout(
                &raw.idle_timeout,
                &key(&s, "idle_timeout"),
                DEFAULT_UPSTREAM_IDLE_TIMEOUT,
            );
            let max_requests = self
                .integer(
                    &raw.max_requests_per_connection,
                    &key(&s, "max_requests_per_connection"),
                    0,
                    u32::MAX.into(),
                )
                .map(|n| Some(n as u32).filter(|&n| n > 0))
                .or(DEFAULT_MAX_REQUESTS_PER_CONNECTION);
            let connect_timeout = self.optional_timeout(
                &raw.connect_timeout,
                &key(&s, "connect_timeout"),
                timeouts.map(|t| t.upstream_connect),
            );
            let response_timeout = self.optional_timeout(
                &raw.response_timeout,
                &key(&s, "response_timeout"),
                timeouts.map(|t| t.upstream_response),
            );
            let tls = self.upstream_tls(raw.tls.as_ref(), &s);
            let upstream = (|| {
                let endpoints = endpoints?;
                let (settings, health_check, resolve_every) = resilience?;
                Some(UpstreamConfig {
                    name: name?,
                    endpoints: endpoints.addrs,
                    weights: endpoints.weights,
                    names: endpoints.names,
                    resolve_every,
                    balance: balance?,
                    hashing: hashing?,
                    settings,
                    health_check,
                    max_idle_per_endpoint: max_idle?,
                    idle_timeout: idle_timeout?,
                    max_requests_per_connection: max_requests?,
                    connect_timeout: connect_timeout?,
                    response_timeout: response_timeout?,
                    body_timeout: timeouts?.upstream_body,
                    tls: tls?,
                })
            })();
            upstreams.push(upstream);
        }
        upstreams
    }

    /// A per-upstream override of a `[timeouts]` value; `None` when either is invalid.
    fn optional_timeout(
        &mut self,
        field: &Field,
        key: &str,
        fallback: Option<Duration>,
    ) -> Option<Duration> {
        let own = self
            .duration(field, key, Duration::from_millis(1), MAX_TIMEOUT)
            .optional()?;
        own.or(fallback)
    }

    /// `endpoints`: a non-empty array of `"host:port"` strings or `{ address = "host:port",
    /// weight = N }` tables, each resolved to one or more addresses.
    fn endpoints(&mut self, field: &Field, key: &str) -> Got<Endpoints> {
        let items = match self.array(field, key, "an array of \"host:port\" strings") {
            Got::Value(items) => items,
            Got::Absent => return Got::Absent,
            Got::Invalid => return Got::Invalid,
        };
        let span = field.as_ref().map_or(0..0, Spanned::span);
        if items.is_empty() {
            return self.bad(span, key, "needs at least one \"host:port\"");
        }
        let mut addresses: Vec<(SocketAddr, String)> = Vec::new();
        let mut endpoints = Endpoints::default();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{}]", i + 1);
            let Some((text, weight)) = self.endpoint_item(item, &item_key) else {
                ok = false;
                continue;
            };
            match self.endpoint(text) {
                Ok(resolved) => {
                    if let Some((host, port)) = host_name(text) {
                        endpoints.names.push(NamedEndpoint {
                            host: host.into(),
                            port,
                            weight,
                            addrs: resolved.clone(),
                        });
                    }
                    for addr in resolved {
                        if let Some((_, first)) = addresses.iter().find(|(a, _)| *a == addr) {
                            let message = format!("{addr} is already an endpoint ({first})");
                            self.report.invalid(item.span(), &item_key, message);
                            ok = false;
                        } else {
                            addresses.push((addr, item_key.clone()));
                            endpoints.weights.push(weight);
                        }
                    }
                }
                Err(message) => {
                    self.report.invalid(item.span(), &item_key, message);
                    ok = false;
                }
            }
        }
        if ok && addresses.len() > MAX_ENDPOINTS_PER_UPSTREAM {
            return self.bad(
                span,
                key,
                format!(
                    "{} addresses are more than an upstream holds ({MAX_ENDPOINTS_PER_UPSTREAM})",
                    addresses.len()
                ),
            );
        }
        if ok {
            endpoints.addrs = addresses.into_iter().map(|(addr, _)| addr).collect();
            Got::Value(endpoints)
        } else {
            Got::Invalid
        }
    }

    /// One endpoint: an IP literal with port, or a host name with port, resolved now.
    fn endpoint(&self, text: &str) -> Result<Vec<SocketAddr>, String> {
        const SHAPE: &str = "expected \"host:port\", like \"10.0.0.5:8080\", \
                             \"[2001:db8::5]:8080\" or \"backend.internal:8080\"";
        if let Ok(addr) = text.parse::<SocketAddr>() {
            if addr.port() == 0 {
                return Err("port 0 cannot be connected to; use the upstream's port".into());
            }
            return Ok(vec![addr]);
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            return Err(SHAPE.into());
        };
        if host.starts_with('[') || host.contains(':') {
            return Err(
                "not a valid IPv6 address; write it in brackets: \"[2001:db8::5]:8080\"".into(),
            );
        }
        let port = match port.parse::<u16>() {
            Ok(port) if port > 0 => port,
            _ => return Err("the port must be a number from 1 to 65535".into()),
        };
        let name_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            && !host.starts_with(['.', '-'])
            && !host.ends_with('.')
            && !host.contains("..");
        if !name_ok {
            return Err(SHAPE.into());
        }
        match self.resolver.resolve(host, port) {
            Ok(addrs) if addrs.is_empty() => {
                Err(format!("host name {host:?} resolves to no address"))
            }
            Ok(addrs) => Ok(addrs),
            Err(err) => Err(format!("cannot resolve host name {host:?}: {err}")),
        }
    }

    // -----------------------------------------------------------------------------------------
    // [[route]]

    fn routes(
        &mut self,
        raw: &Tables<RawRoute>,
        upstreams: &[Option<UpstreamConfig>],
        limits: Option<&Limits>,
    ) -> Option<Vec<RouteConfig>> {
        let items = raw.as_ref().map_or(&[][..], |t| t.get_ref().as_slice());
        let mut names = Names::new("route");
        let mut routes = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let s = format!("route[{}]", i + 1);
            match self.route(item, &s, i, &mut names, upstreams, limits) {
                Some(route) => routes.push(route),
                None => ok = false,
            }
        }
        if ok {
            ok = self.route_table(items, &routes);
        }
        ok.then_some(routes)
    }

    /// Builds the route table every shard will build, so conflicts between routes are reported
    /// here, with the line of the later route, instead of failing on the shards.
    fn route_table(&mut self, items: &[Spanned<RawRoute>], routes: &[RouteConfig]) -> bool {
        let specs = routes
            .iter()
            .enumerate()
            .map(|(index, route)| RouteSpec {
                host: route.host.clone(),
                methods: route.methods,
                path: route.path.clone(),
                target: index,
            })
            .collect();
        let Err(error) = RouteTable::build(specs) else {
            return true;
        };
        for problem in &error.problems {
            let (index, message) = match problem {
                RouteProblem::Conflict {
                    first,
                    second,
                    methods,
                    ..
                } => {
                    let allowed: Vec<&str> = methods
                        .iter()
                        .map(|m| m.as_str().unwrap_or("extension methods"))
                        .collect();
                    (
                        *second,
                        format!(
                            "matches the same host, path and methods ({}) as {:?} ({}): a request could match either",
                            allowed.join(", "),
                            &*routes[*first].name,
                            format_args!("route[{}]", first + 1),
                        ),
                    )
                }
                RouteProblem::NoMethods { index } => (
                    *index,
                    "allows no method, so it can never match".to_string(),
                ),
                RouteProblem::InvalidHost { index, reason }
                | RouteProblem::InvalidPath { index, reason } => (*index, (*reason).to_string()),
                RouteProblem::TooManyRoutes { count } => (
                    0,
                    format!("{count} routes are more than a route table holds"),
                ),
            };
            let span = items.get(index).map(Spanned::span);
            self.report
                .error(span, format!("route[{}]", index + 1), message);
        }
        false
    }

    fn route(
        &mut self,
        item: &Spanned<RawRoute>,
        s: &str,
        index: usize,
        names: &mut Names,
        upstreams: &[Option<UpstreamConfig>],
        limits: Option<&Limits>,
    ) -> Option<RouteConfig> {
        let header = item.span();
        let raw = item.get_ref();
        let name = match &raw.name {
            Some(_) => self.name(&raw.name, s, &header, names),
            None => {
                let name = format!("{DEFAULT_ROUTE_NAME_PREFIX}{}", index + 1);
                names.claim(self, &name, header.clone(), s, true)
            }
        };
        let host = self
            .string(&raw.host, &key(s, "host"))
            .and_then(|(text, span)| match HostPattern::parse(text) {
                Ok(host) => Got::Value(host),
                Err(message) => self.bad(span, &key(s, "host"), message),
            })
            .or(HostPattern::Any);
        let methods = self.methods(&raw.methods, &key(s, "methods"));

        let path = self.route_path(raw, s, &header);
        let is_prefix = raw.path_prefix.is_some();
        let to_upstream = raw.upstream.is_some();
        let action = self.route_action(raw, s, &header, upstreams);
        let rewrite = self.path_rewrite(raw, s, path.as_ref(), is_prefix && to_upstream);
        let edits = self.route_edits(raw, s, to_upstream);
        let max_body_bytes = self
            .body_limit(&raw.max_body_bytes, &key(s, "max_body_bytes"))
            .optional();
        let request_buffering = self
            .request_buffering(&raw.request_buffering, &key(s, "request_buffering"))
            .optional();
        let auth = self.route_auth(&raw.auth, &key(s, "auth"));
        let rate_limit = self.rate_limit(raw.rate_limit.as_ref(), s, raw.auth.is_some());
        let retry = self.retry_policy(raw.retry.as_ref(), s, to_upstream);
        let redirect_https = self.redirect_https(&raw.redirect_https, &raw.https_port, s);

        let mut action = action?;
        let (strip_prefix, prefix_rewrite) = rewrite?;
        if let RouteAction::Upstream {
            strip_prefix: strip,
            prefix_rewrite: rewrite,
            ..
        } = &mut action
        {
            *strip = strip_prefix;
            *rewrite = prefix_rewrite;
        }
        let (request_headers, response_headers) = edits?;
        Some(RouteConfig {
            name: name?,
            host: host?,
            methods: methods?,
            path: path?,
            action,
            request_headers,
            response_headers,
            max_body_bytes: match max_body_bytes? {
                Some(own) => own,
                None => limits?.max_body_bytes,
            },
            request_buffering: match request_buffering? {
                Some(own) => own,
                None => limits?.request_buffering,
            },
            auth: auth?,
            rate_limit: rate_limit?,
            retry: retry?,
            redirect_https: redirect_https?,
        })
    }

    /// What a route matches: exactly one of `path` (exact or template) and `path_prefix`.
    fn route_path(
        &mut self,
        raw: &RawRoute,
        s: &str,
        header: &Range<usize>,
    ) -> Option<PathPattern> {
        let exact = self
            .string(&raw.path, &key(s, "path"))
            .and_then(|(text, span)| match PathPattern::exact_or_template(text) {
                Ok(path) => Got::Value(path),
                Err(message) => self.bad(span, &key(s, "path"), message),
            });
        let prefix = self
            .string(&raw.path_prefix, &key(s, "path_prefix"))
            .and_then(|(text, span)| match PathPattern::prefix(text) {
                Ok(path) => Got::Value(path),
                Err(message) => self.bad(span, &key(s, "path_prefix"), message),
            });
        match (exact, prefix) {
            (Got::Value(path), Got::Absent) | (Got::Absent, Got::Value(path)) => Some(path),
            (Got::Absent, Got::Absent) => {
                self.report.error(
                    Some(header.clone()),
                    s,
                    "needs `path` (exact or template) or `path_prefix`",
                );
                None
            }
            (exact, prefix) => {
                if !matches!(exact, Got::Invalid) && !matches!(prefix, Got::Invalid) {
                    let span = raw.path_prefix.as_ref().map(Spanned::span);
                    self.report.error(
                        span,
                        key(s, "path_prefix"),
                        "use either `path` or `path_prefix`, not both",
                    );
                }
                None
            }
        }
    }

    /// What a route does: exactly one of `upstream` and `respond`.
    fn route_action(
        &mut self,
        raw: &RawRoute,
        s: &str,
        header: &Range<usize>,
        upstreams: &[Option<UpstreamConfig>],
    ) -> Option<RouteAction> {
        match (&raw.upstream, &raw.respond) {
            (Some(_), None) => self.forward(raw, s, upstreams),
            (None, Some(respond)) => self.respond(respond, &key(s, "respond")),
            (None, None) => {
                if !self.was_rejected(&key(s, "respond")) {
                    self.report.error(
                        Some(header.clone()),
                        s,
                        "needs `upstream = \"<name>\"` or `respond = { status = ... }`",
                    );
                }
                None
            }
            (Some(_), Some(respond)) => {
                self.report.error(
                    Some(respond.span()),
                    key(s, "respond"),
                    "use either `upstream` or `respond`, not both",
                );
                None
            }
        }
    }

    /// `strip_prefix` and `prefix_rewrite`: only for a route forwarding a prefix, not both,
    /// and a rewrite that ends with `/` exactly when the prefix does.
    fn path_rewrite(
        &mut self,
        raw: &RawRoute,
        s: &str,
        path: Option<&PathPattern>,
        forwards_prefix: bool,
    ) -> Option<(bool, Option<Box<str>>)> {
        let strip_prefix = self
            .boolean(&raw.strip_prefix, &key(s, "strip_prefix"))
            .or(false);
        let prefix_rewrite = self
            .string(&raw.prefix_rewrite, &key(s, "prefix_rewrite"))
            .and_then(|(text, span)| match PathPattern::prefix(text) {
                Ok(_) => Got::Value((text, span)),
                Err(message) => self.bad(span, &key(s, "prefix_rewrite"), message),
            })
            .optional();
        let mut rewrite_ok = true;
        for (field, name, used) in [
            (
                &raw.strip_prefix,
                "strip_prefix",
                strip_prefix == Some(true),
            ),
            (
                &raw.prefix_rewrite,
                "prefix_rewrite",
                raw.prefix_rewrite.is_some(),
            ),
        ] {
            if let Some(field) = field
                && used
                && !forwards_prefix
            {
                self.report.error(
                    Some(field.span()),
                    key(s, name),
                    "only applies to routes with `path_prefix` and `upstream`",
                );
                rewrite_ok = false;
            }
        }
        if let (Some(true), Some(Some(_)), Some(field)) =
            (strip_prefix, &prefix_rewrite, &raw.prefix_rewrite)
        {
            self.report.error(
                Some(field.span()),
                key(s, "prefix_rewrite"),
                "use either `strip_prefix` or `prefix_rewrite`, not both",
            );
            rewrite_ok = false;
        }
        if let (Some(PathPattern::Prefix(prefix)), Some(Some((rewrite, span)))) =
            (path, &prefix_rewrite)
            && prefix.ends_with('/') != rewrite.ends_with('/')
        {
            // A path the prefix matches, and what the rewrite would make of it.
            let rest = if prefix.ends_with('/') { "x" } else { "/x" };
            let example = format!("{prefix}{rest}");
            let rewritten = format!("{rewrite}{rest}");
            self.report.invalid(
                span.clone(),
                key(s, "prefix_rewrite"),
                format!(
                    "end both path_prefix and prefix_rewrite with '/', or neither: as written \
                     {example} would be forwarded as {rewritten}"
                ),
            );
            rewrite_ok = false;
        }

        if !rewrite_ok {
            return None;
        }
        Some((strip_prefix?, prefix_rewrite?.map(|(text, _)| text.into())))
    }

    /// The route's request and response header edits; request edits only when it forwards.
    fn route_edits(
        &mut self,
        raw: &RawRoute,
        s: &str,
        to_upstream: bool,
    ) -> Option<(HeaderEdits, HeaderEdits)> {
        let request_headers = self.header_edits(
            &raw.add_request_headers,
            &raw.remove_request_headers,
            s,
            "request",
        );
        if !to_upstream {
            for (field, name) in [
                (&raw.add_request_headers, "add_request_headers"),
                (&raw.remove_request_headers, "remove_request_headers"),
            ] {
                if let Some(field) = field {
                    self.report.error(
                        Some(field.span()),
                        key(s, name),
                        "only applies to routes with an `upstream` (nothing is forwarded)",
                    );
                }
            }
        }
        let response_headers = self.header_edits(
            &raw.add_response_headers,
            &raw.remove_response_headers,
            s,
            "response",
        );
        Some((request_headers?, response_headers?))
    }

    /// `upstream = "name"`: the index of a defined upstream.
    fn forward(
        &mut self,
        raw: &RawRoute,
        s: &str,
        upstreams: &[Option<UpstreamConfig>],
    ) -> Option<RouteAction> {
        let (name, span) = match self.string(&raw.upstream, &key(s, "upstream")) {
            Got::Value(found) => found,
            _ => return None,
        };
        let index = self
            .upstream_names
            .iter()
            .position(|n| n.as_deref() == Some(name));
        let Some(index) = index else {
            let quoted: Vec<String> = self
                .upstream_names
                .iter()
                .flatten()
                .map(|n| format!("{n:?}"))
                .collect();
            let defined = if quoted.is_empty() {
                "no [[upstream]] is defined".to_owned()
            } else {
                format!("defined: {}", quoted.join(", "))
            };
            self.report.error(
                Some(span),
                key(s, "upstream"),
                format!("no upstream named {name:?} ({defined})"),
            );
            return None;
        };
        // An upstream with its own mistakes is reported there; the reference itself is fine.
        upstreams.get(index)?.as_ref()?;
        Some(RouteAction::Upstream {
            upstream: index,
            strip_prefix: false,
            prefix_rewrite: None,
        })
    }

    /// `respond = { status, body, headers }`
    fn respond(&mut self, respond: &Spanned<RawRespond>, s: &str) -> Option<RouteAction> {
        let raw = respond.get_ref();
        let status = self.integer(&raw.status, &key(s, "status"), 200, 599);
        let status = self.required(status, &respond.span(), &key(s, "status"));
        let body = self
            .string(&raw.body, &key(s, "body"))
            .map(|(text, span)| (text.as_bytes(), Some(span)))
            .or((DEFAULT_RESPOND_BODY.as_bytes(), None));
        if let (Some(status @ (204 | 304)), Some((body, Some(span)))) = (status, &body)
            && !body.is_empty()
        {
            self.report.invalid(
                span.clone(),
                key(s, "body"),
                format!("a {status} response cannot have a body"),
            );
        }
        let headers = self.header_table(&raw.headers, &key(s, "headers"), header_name_problem);
        Some(RouteAction::Respond {
            status: status? as u16,
            body: body?.0.into(),
            headers: headers?,
        })
    }

    /// `methods = ["GET", "HEAD"]`: standard method names, exactly as sent on the wire.
    fn methods(&mut self, field: &Field, key: &str) -> Option<MethodSet> {
        let items = match self.array(field, key, "an array of method names, like [\"GET\"]") {
            Got::Absent => return Some(MethodSet::ANY),
            Got::Invalid => return None,
            Got::Value(items) => items,
        };
        if items.is_empty() {
            let span = field.as_ref().map_or(0..0, Spanned::span);
            self.bad::<()>(
                span,
                key,
                "an empty list matches nothing; leave `methods` out to match every method",
            );
            return None;
        }
        let mut set = MethodSet::EMPTY;
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{}]", i + 1);
            let method = match item.get_ref() {
                Value::String(name) => Method::from_token(name.as_bytes()),
                _ => {
                    self.bad::<()>(item.span(), &item_key, "expected a method name");
                    ok = false;
                    continue;
                }
            };
            if method == Method::Other {
                let Value::String(name) = item.get_ref() else {
                    continue;
                };
                let upper = name.to_ascii_uppercase();
                let message = if Method::from_token(upper.as_bytes()) != Method::Other {
                    format!("method names are case-sensitive; write {upper:?}")
                } else {
                    "unknown method; use GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE \
                     or PATCH"
                        .into()
                };
                self.report.invalid(item.span(), &item_key, message);
                ok = false;
                continue;
            }
            set = set.with(method);
        }
        ok.then_some(set)
    }

    /// `add_*_headers` and `remove_*_headers` for one side of a route.
    fn header_edits(
        &mut self,
        add: &Field,
        remove: &Field,
        s: &str,
        side: &str,
    ) -> Option<HeaderEdits> {
        let (added_problem, removed_problem): (NameCheck, NameCheck) = match side {
            "request" => (added_request_header_problem, removed_request_header_problem),
            _ => (header_name_problem, header_name_problem),
        };
        let add = self.header_table(add, &key(s, &format!("add_{side}_headers")), added_problem);
        let remove_key = key(s, &format!("remove_{side}_headers"));
        let remove = self
            .header_names(remove, &remove_key, removed_problem)
            .or(Vec::new());
        Some(HeaderEdits {
            remove: remove?,
            add: add?,
        })
    }

    /// An array of header names, each passing `name_problem`; lowercase.
    fn header_names(
        &mut self,
        field: &Field,
        key: &str,
        name_problem: NameCheck,
    ) -> Got<Vec<Box<str>>> {
        let items = match self.array(field, key, "an array of header names") {
            Got::Absent => return Got::Absent,
            Got::Invalid => return Got::Invalid,
            Got::Value(items) => items,
        };
        let mut names = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item_key = format!("{key}[{}]", i + 1);
            let Value::String(name) = item.get_ref() else {
                self.bad::<()>(item.span(), &item_key, "expected a header name");
                ok = false;
                continue;
            };
            match name_problem(name) {
                Some(message) => {
                    self.report.invalid(item.span(), &item_key, message);
                    ok = false;
                }
                None => names.push(name.to_ascii_lowercase().into_boxed_str()),
            }
        }
        if ok { Got::Value(names) } else { Got::Invalid }
    }

    /// A table of header names to values: `{ "X-Env" = "prod" }`, each name passing
    /// `name_problem`.
    fn header_table(
        &mut self,
        field: &Field,
        key: &str,
        name_problem: NameCheck,
    ) -> Option<Vec<(Box<str>, Box<str>)>> {
        let entries = match self.table(field, key, "a table of header names to values") {
            Got::Absent => return Some(Vec::new()),
            Got::Invalid => return None,
            Got::Value(entries) => entries,
        };
        let mut headers: Vec<(Box<str>, Box<str>)> = Vec::new();
        let mut ok = true;
        for (name, value) in entries {
            let mut entry_key = format!("{key}.");
            push_key(&mut entry_key, name);
            let problem = name_problem(name).or_else(|| {
                headers
                    .iter()
                    .any(|(n, _)| n.eq_ignore_ascii_case(name))
                    .then_some("the same header is set twice (names are case-insensitive)")
            });
            if let Some(message) = problem {
                self.report.invalid(value.span(), &entry_key, message);
                ok = false;
                continue;
            }
            let Value::String(text) = value.get_ref() else {
                self.bad::<()>(value.span(), &entry_key, "expected a string value");
                ok = false;
                continue;
            };
            if text.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
                self.report.invalid(
                    value.span(),
                    &entry_key,
                    "a header value must not contain line breaks, NUL or other control \
                     characters",
                );
                ok = false;
                continue;
            }
            headers.push((name.as_str().into(), text.as_str().into()));
        }
        ok.then_some(headers)
    }

    // -----------------------------------------------------------------------------------------
    // [admin]

    /// `Some(None)` when there is no `[admin]`; `None` when it has mistakes.
    fn admin(
        &mut self,
        raw: Option<&Spanned<RawAdmin>>,
        listeners: Option<&[ListenerConfig]>,
    ) -> Option<Option<AdminConfig>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let s = "admin";
        let bind_key = key(s, "bind");
        let bind = match self.string(&raw.get_ref().bind, &bind_key) {
            Got::Value((text, span)) => match text.parse::<SocketAddr>() {
                Ok(addr) => {
                    let clash = listeners.unwrap_or_default().iter().find(|listener| {
                        addr.port() != 0
                            && listener.bind.port() == addr.port()
                            && listener.bind.is_ipv4() == addr.is_ipv4()
                            && (listener.bind.ip() == addr.ip()
                                || listener.bind.ip().is_unspecified()
                                || addr.ip().is_unspecified())
                    });
                    match clash {
                        Some(listener) => self.bad(
                            span,
                            &bind_key,
                            format!(
                                "overlaps listener {:?} ({}): the admin API is never served on a \
                                 data listener",
                                listener.name, listener.bind
                            ),
                        ),
                        None => Got::Value((addr, span)),
                    }
                }
                Err(_) => self.bad(
                    span,
                    &bind_key,
                    "expected an IP address and port, like \"127.0.0.1:9901\"",
                ),
            },
            Got::Absent => Got::Absent,
            Got::Invalid => Got::Invalid,
        };
        let token_key = key(s, "token");
        let token = self
            .string(&raw.get_ref().token, &token_key)
            .and_then(|(text, span)| {
                if text.len() < MIN_ADMIN_TOKEN_LEN {
                    self.bad(
                        span,
                        &token_key,
                        format!("must be at least {MIN_ADMIN_TOKEN_LEN} characters"),
                    )
                } else if !text.bytes().all(|b| b.is_ascii_graphic()) {
                    self.bad(
                        span,
                        &token_key,
                        "must be printable ASCII without spaces (it is sent in an HTTP header)",
                    )
                } else {
                    Got::Value(Box::<str>::from(text))
                }
            })
            .optional();
        let (bind, bind_span) = match bind {
            Got::Value((addr, span)) => (Some(addr), Some(span)),
            Got::Absent => (Some(DEFAULT_ADMIN_BIND), None),
            Got::Invalid => (None, None),
        };
        if let (Some(addr), Some(None)) = (bind, &token)
            && !addr.ip().is_loopback()
        {
            let span = bind_span.unwrap_or_else(|| raw.span());
            self.report.invalid(
                span,
                &bind_key,
                "an admin listener reachable from other hosts needs admin.token",
            );
            return None;
        }
        Some(Some(AdminConfig {
            bind: bind?,
            token: token?,
        }))
    }

    // -----------------------------------------------------------------------------------------
    // [forwarding]

    fn forwarding(&mut self, raw: Option<&Spanned<RawForwarding>>) -> Option<Forwarding> {
        let Some(raw) = raw else {
            return Some(Forwarding::default());
        };
        let raw = raw.get_ref();
        let trusted = self.trusted_proxies(&raw.trusted_proxies);
        let drop_key = key("forwarding", "drop_from_untrusted");
        let drop = match self.header_names(&raw.drop_from_untrusted, &drop_key, header_name_problem)
        {
            Got::Absent => Some(Forwarding::default().drop_from_untrusted),
            Got::Invalid => None,
            Got::Value(names) => Some(names),
        };
        let forwarded_header = self
            .boolean(
                &raw.forwarded_header,
                &key("forwarding", "forwarded_header"),
            )
            .or(DEFAULT_FORWARDED_HEADER);
        Some(Forwarding {
            trusted_proxies: trusted?,
            drop_from_untrusted: drop?,
            forwarded_header: forwarded_header?,
        })
    }

    fn trusted_proxies(&mut self, field: &Field) -> Option<Vec<IpPrefix>> {
        let list_key = key("forwarding", "trusted_proxies");
        let items = match self.array(
            field,
            &list_key,
            "an array of addresses or prefixes, like [\"10.0.0.0/8\"]",
        ) {
            Got::Absent => return Some(Vec::new()),
            Got::Invalid => return None,
            Got::Value(items) => items,
        };
        let mut trusted = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let item_key = format!("{list_key}[{}]", i + 1);
            match item.get_ref() {
                Value::String(text) => match IpPrefix::parse(text) {
                    Ok(prefix) => trusted.push(prefix),
                    Err(message) => {
                        self.report.invalid(item.span(), &item_key, message);
                        ok = false;
                    }
                },
                _ => {
                    self.report.invalid(
                        item.span(),
                        &item_key,
                        "expected a string like \"10.0.0.0/8\"",
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(trusted)
    }

    // -----------------------------------------------------------------------------------------
    // [access_log]

    /// `Some(None)` when there is no `[access_log]`; `None` when it has mistakes.
    fn access_log(
        &mut self,
        raw: Option<&Spanned<RawAccessLog>>,
    ) -> Option<Option<AccessLogConfig>> {
        let Some(raw) = raw else {
            return Some(None);
        };
        let header = raw.span();
        let raw = raw.get_ref();
        let s = "access_log";
        let path_key = key(s, "path");
        let path = self.string(&raw.path, &path_key).and_then(|(text, span)| {
            if text.is_empty() || text.ends_with('/') {
                self.bad(
                    span,
                    &path_key,
                    "expected a file path, like \"/var/log/coregate/access.log\"",
                )
            } else if text.bytes().any(|b| b == 0) {
                self.bad(span, &path_key, "a path cannot hold a NUL byte")
            } else {
                Got::Value(relative_to_config(&self.origin, text))
            }
        });
        let path = self.required(path, &header, &path_key);
        let format_key = key(s, "format");
        let format = self
            .string(&raw.format, &format_key)
            .and_then(|(text, span)| match text {
                "json" => Got::Value(AccessLogFormat::Json),
                "combined" => Got::Value(AccessLogFormat::Combined),
                _ => self.bad(span, &format_key, "must be \"json\" or \"combined\""),
            })
            .or(DEFAULT_ACCESS_LOG_FORMAT);
        let buffer_size = self
            .size(
                &raw.buffer_size,
                &key(s, "buffer_size"),
                MIN_ACCESS_LOG_BUFFER as u64,
                MAX_ACCESS_LOG_BUFFER as u64,
            )
            .map(to_usize)
            .or(DEFAULT_ACCESS_LOG_BUFFER);
        let flush_interval = self
            .duration(
                &raw.flush_interval,
                &key(s, "flush_interval"),
                MIN_ACCESS_LOG_FLUSH,
                MAX_ACCESS_LOG_FLUSH,
            )
            .or(DEFAULT_ACCESS_LOG_FLUSH);
        Some(Some(AccessLogConfig {
            path: path?,
            format: format?,
            buffer_size: buffer_size?,
            flush_interval: flush_interval?,
        }))
    }

    // -----------------------------------------------------------------------------------------
    // names

    /// A required, unique `name`.
    fn name(
        &mut self,
        field: &Field,
        s: &str,
        header: &Range<usize>,
        names: &mut Names,
    ) -> Option<Box<str>> {
        let name_key = key(s, "name");
        let got = self
            .string(field, &name_key)
            .and_then(|(text, span)| match name_problem(text) {
                None => Got::Value((text, span)),
                Some(message) => self.bad(span, &name_key, message),
            });
        let (text, span) = self.required(got, header, &name_key)?;
        names.claim(self, text, span, s, false)
    }

    // -----------------------------------------------------------------------------------------
    // typed access to raw values

    /// Reports a bad value and returns [`Got::Invalid`].
    fn bad<T>(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) -> Got<T> {
        self.report.invalid(span, key, message);
        Got::Invalid
    }

    /// The value, or an error at the table header when the key is missing.
    fn required<T>(&mut self, got: Got<T>, header: &Range<usize>, key: &str) -> Option<T> {
        match got {
            Got::Value(value) => Some(value),
            Got::Invalid => None,
            Got::Absent if self.was_rejected(key) => None,
            Got::Absent => {
                self.report
                    .error(Some(header.clone()), key, "required key is missing");
                None
            }
        }
    }

    fn string<'v>(&mut self, field: &'v Field, key: &str) -> Got<(&'v str, Range<usize>)> {
        match field {
            None => Got::Absent,
            Some(f) => match f.get_ref() {
                Value::String(text) => Got::Value((text.as_str(), f.span())),
                _ => self.bad(f.span(), key, "expected a string"),
            },
        }
    }

    fn boolean(&mut self, field: &Field, key: &str) -> Got<bool> {
        match field {
            None => Got::Absent,
            Some(f) => match f.get_ref() {
                Value::Boolean(b) => Got::Value(*b),
                _ => self.bad(f.span(), key, "expected true or false"),
            },
        }
    }

    fn integer(&mut self, field: &Field, key: &str, min: i128, max: i128) -> Got<i128> {
        let Some(f) = field else {
            return Got::Absent;
        };
        match f.get_ref() {
            Value::Integer(n) if (min..=max).contains(n) => Got::Value(*n),
            Value::Integer(_) => self.bad(f.span(), key, format!("must be from {min} to {max}")),
            _ => self.bad(f.span(), key, "expected an integer"),
        }
    }

    /// An integer that must be a power of two, as io_uring sizes are.
    fn power_of_two(&mut self, field: &Field, key: &str, min: u32, max: u32) -> Got<u32> {
        match self.integer(field, key, min.into(), max.into()) {
            Got::Value(n) => {
                let n = n as u32;
                if n.is_power_of_two() {
                    Got::Value(n)
                } else {
                    let span = field.as_ref().map_or(0..0, Spanned::span);
                    let below = n.next_power_of_two() / 2;
                    let above = n.next_power_of_two();
                    self.bad(
                        span,
                        key,
                        format!("must be a power of two, like {below} or {above}"),
                    )
                }
            }
            Got::Absent => Got::Absent,
            Got::Invalid => Got::Invalid,
        }
    }

    /// A duration string (see `units.rs`), or the integer `0`.
    fn duration(
        &mut self,
        field: &Field,
        key: &str,
        min: Duration,
        max: Duration,
    ) -> Got<Duration> {
        let Some(f) = field else {
            return Got::Absent;
        };
        let parsed = match f.get_ref() {
            Value::String(text) => parse_duration(text),
            Value::Integer(0) => Ok(Duration::ZERO),
            Value::Integer(_) => {
                Err("missing unit: write \"10s\" or \"250ms\" (a bare number would be ambiguous)")
            }
            _ => Err("expected a duration like \"10s\" or \"250ms\""),
        };
        let duration = match parsed {
            Ok(duration) => duration,
            Err(message) => return self.bad(f.span(), key, message),
        };
        if duration.is_zero() && !min.is_zero() {
            return self.bad(
                f.span(),
                key,
                format!(
                    "must be more than 0 (0 does not turn it off; the longest allowed is {})",
                    Millis(max)
                ),
            );
        }
        if duration < min || duration > max {
            return self.bad(
                f.span(),
                key,
                format!("must be from {} to {}", Millis(min), Millis(max)),
            );
        }
        Got::Value(duration)
    }

    /// A size string (see `units.rs`) or an integer number of bytes.
    fn size(&mut self, field: &Field, key: &str, min: u64, max: u64) -> Got<u64> {
        let Some(f) = field else {
            return Got::Absent;
        };
        let parsed = match f.get_ref() {
            Value::String(text) => parse_size(text),
            Value::Integer(n) if *n < 0 => Err("a size cannot be negative"),
            Value::Integer(n) => u64::try_from(*n).map_err(|_| "size is too large"),
            _ => Err("expected a size like \"16KiB\" or a number of bytes"),
        };
        match parsed {
            Ok(n) if (min..=max).contains(&n) => Got::Value(n),
            Ok(_) => self.bad(
                f.span(),
                key,
                format!("must be from {} to {}", Size(min), Size(max)),
            ),
            Err(message) => self.bad(f.span(), key, message),
        }
    }

    fn array<'v>(&mut self, field: &'v Field, key: &str, what: &str) -> Got<&'v [Spanned<Value>]> {
        match field {
            None => Got::Absent,
            Some(f) => match f.get_ref() {
                Value::Array(items) => Got::Value(items),
                _ => self.bad(f.span(), key, format!("expected {what}")),
            },
        }
    }

    fn table<'v>(
        &mut self,
        field: &'v Field,
        key: &str,
        what: &str,
    ) -> Got<&'v [(String, Spanned<Value>)]> {
        match field {
            None => Got::Absent,
            Some(f) => match f.get_ref() {
                Value::Table(entries) => Got::Value(entries),
                _ => self.bad(f.span(), key, format!("expected {what}")),
            },
        }
    }
}

impl<T> Got<T> {
    /// Chains a further check on a present value.
    fn and_then<U>(self, f: impl FnOnce(T) -> Got<U>) -> Got<U> {
        match self {
            Got::Absent => Got::Absent,
            Got::Invalid => Got::Invalid,
            Got::Value(value) => f(value),
        }
    }
}

/// The names already taken in one kind of table, for uniqueness.
struct Names {
    kind: &'static str,
    /// Name -> the table that took it first.
    taken: HashMap<String, String>,
}

impl Names {
    fn new(kind: &'static str) -> Names {
        Names {
            kind,
            taken: HashMap::new(),
        }
    }

    /// Takes `name` for table `s`; reports it if an earlier table has it.
    fn claim(
        &mut self,
        v: &mut Validator<'_, '_>,
        name: &str,
        span: Range<usize>,
        s: &str,
        defaulted: bool,
    ) -> Option<Box<str>> {
        if let Some(first) = self.taken.get(name) {
            let kind = self.kind;
            if defaulted {
                v.report.error(
                    Some(span),
                    s,
                    format!(
                        "its default name {name:?} is already the name of {first}; name one of \
                         them differently"
                    ),
                );
            } else {
                v.report.invalid(
                    span,
                    key(s, "name"),
                    format!("another {kind} is already named {name:?} ({first})"),
                );
            }
            return None;
        }
        self.taken.insert(name.to_owned(), s.to_owned());
        Some(name.into())
    }
}

/// Names appear in logs and metric labels: letters, digits, `-`, `_`, `.`.
fn name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a name cannot be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!("a name is at most {MAX_NAME_LEN} characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Some("a name may hold only letters, digits, '-', '_' and '.'".into());
    }
    None
}

/// Headers coregate itself manages for connection handling and message framing; a route may
/// neither set nor remove them.
const MANAGED_HEADERS: [&str; 8] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A rule for the header names of one kind of edit: why a name cannot be used, if it cannot.
type NameCheck = fn(&str) -> Option<&'static str>;

/// Why a header name cannot be used in an edit, if it cannot.
fn header_name_problem(name: &str) -> Option<&'static str> {
    // RFC 9110 sec. 5.6.2: token = 1*tchar
    if name.is_empty() || !name.bytes().all(crate::http1::is_tchar) {
        return Some("not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)");
    }
    if MANAGED_HEADERS
        .iter()
        .any(|managed| managed.eq_ignore_ascii_case(name))
    {
        return Some(
            "coregate manages this header (connection handling and framing); a route cannot \
             set or remove it",
        );
    }
    None
}

/// Why a route (or an auth policy) cannot set `name` on the forwarded request, if it cannot.
fn added_request_header_problem(name: &str) -> Option<&'static str> {
    header_name_problem(name).or_else(|| forwarding_header_problem(name, true))
}

/// Why a route cannot remove `name` from the forwarded request, if it cannot.
fn removed_request_header_problem(name: &str) -> Option<&'static str> {
    header_name_problem(name).or_else(|| forwarding_header_problem(name, false))
}

/// The request fields coregate writes itself when it forwards: an edit adding one would leave
/// the upstream two values to choose from (two `Host` fields for an absolute-form request,
/// `x-forwarded-proto: http` beside the route's `https`), and removing one would drop nothing
/// but the client's copy, or leave the upstream without the field. `Forwarded` (RFC 7239) is
/// refused in additions for the same reason; removing the client's copy is allowed.
fn forwarding_header_problem(name: &str, adding: bool) -> Option<&'static str> {
    let is = |managed: &str| name.eq_ignore_ascii_case(managed);
    if is("host") {
        return Some(if adding {
            "coregate forwards the request's own Host (or its absolute-form authority); a route \
             cannot set another"
        } else {
            "an HTTP/1.1 request must keep its Host header"
        });
    }
    if is("x-forwarded-for") || is("x-forwarded-proto") || is("x-forwarded-host") {
        return Some(
            "coregate writes this header on every forwarded request (see [forwarding]); a route \
             cannot set or remove it",
        );
    }
    if is("x-request-id") {
        return Some(
            "coregate passes the client's X-Request-Id on or generates one; a route cannot set \
             or remove it",
        );
    }
    if is("forwarded") && adding {
        return Some(
            "Forwarded describes the hops a request took, which a route cannot vouch for; it \
             can only remove the client's copy",
        );
    }
    None
}

/// The span and key of the first of `fields` present in the file.
fn written_at(fields: &[(&Field, &'static str)]) -> Option<(Range<usize>, &'static str)> {
    fields
        .iter()
        .find_map(|(field, key)| field.as_ref().map(|f| (f.span(), *key)))
}

/// Converts a value already checked against a `usize` bound.
/// A path from the file, relative to the configuration file's directory unless absolute.
fn relative_to_config(origin: &str, path: &str) -> PathBuf {
    let path = std::path::Path::new(path);
    match std::path::Path::new(origin).parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

fn to_usize<N: TryInto<usize>>(n: N) -> usize {
    n.try_into().unwrap_or(usize::MAX)
}
