//! Whole-file tests: the documented example, defaults, every validation rule with its key and
//! line, several mistakes at once, the core plan, and the shipped `tuning/` profiles.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::defaults::*;
use super::*;
use crate::http1::Method;

/// Resolves `backend.test` and `two.test` only, so tests never touch DNS.
struct FakeResolver;

impl Resolve for FakeResolver {
    fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let ips: &[&str] = match host {
            "backend.test" => &["10.0.0.7"],
            "two.test" => &["10.0.0.8", "10.0.0.9"],
            "empty.test" => &[],
            _ => return Err(io::Error::other("no such host")),
        };
        Ok(ips
            .iter()
            .map(|ip| SocketAddr::new(ip.parse().expect("test IP"), port))
            .collect())
    }
}

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse_with(text, "t.toml", &FakeResolver)
}

fn valid(text: &str) -> Config {
    match parse(text) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid config, got:\n{errors}"),
    }
}

/// Every error line.
fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("expected errors, the config is valid:\n{text}"),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

/// The one error line `text` produces.
fn error(text: &str) -> String {
    let all = errors(text);
    assert_eq!(
        all.len(),
        1,
        "expected exactly one error, got:\n{}",
        all.join("\n")
    );
    all.into_iter().next().unwrap_or_default()
}

/// A listener so that snippets under test are otherwise complete (lines 1-3).
const LISTENER: &str = "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n";

/// [`LISTENER`] plus an upstream named `api` (lines 1-7).
const BASE: &str = "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n\n\
                    [[upstream]]\nname = \"api\"\nendpoints = [\"127.0.0.1:9001\"]\n";

fn with_base(rest: &str) -> String {
    format!("{BASE}{rest}")
}

const EXAMPLE: &str = r#"[runtime]
cores = "all"                 # "all", "0-3", or [1, 3]

[[listener]]
name = "public"
bind = "127.0.0.1:8080"

[[upstream]]
name = "api"
endpoints = ["127.0.0.1:9001", "127.0.0.1:9002"]

[[route]]
path_prefix = "/api/"
upstream = "api"

[[route]]
host = "*.example.com"
path = "/healthz"
respond = { status = 200, body = "ok\n" }
"#;

// ---------------------------------------------------------------------------------------------
// the example and the defaults

#[test]
fn the_documented_example_loads() {
    let config = Config::parse(EXAMPLE, "example.toml").expect("the example is valid");
    assert_eq!(config.origin, Path::new("example.toml"));
    assert_eq!(config.runtime.cores, CoreSelection::All);
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(&*config.listeners[0].name, "public");
    assert_eq!(config.listeners[0].bind, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(&*config.upstreams[0].name, "api");
    assert_eq!(
        config.upstreams[0].endpoints,
        vec![
            "127.0.0.1:9001".parse::<SocketAddr>().unwrap(),
            "127.0.0.1:9002".parse().unwrap()
        ]
    );
    let [api, health] = &config.routes[..] else {
        panic!("two routes expected");
    };
    assert_eq!(&*api.name, "route-1");
    assert_eq!(api.host, HostPattern::Any);
    assert_eq!(api.methods, MethodSet::ANY);
    assert_eq!(api.path, PathPattern::Prefix("/api/".into()));
    assert_eq!(
        api.action,
        RouteAction::Upstream {
            upstream: 0,
            strip_prefix: false,
            prefix_rewrite: None
        }
    );
    assert_eq!(&*health.name, "route-2");
    assert_eq!(health.host, HostPattern::Suffix(".example.com".into()));
    assert_eq!(health.path, PathPattern::Exact("/healthz".into()));
    assert_eq!(
        health.action,
        RouteAction::Respond {
            status: 200,
            body: b"ok\n".to_vec().into(),
            headers: vec![]
        }
    );
}

#[test]
fn every_default_applies() {
    let config = valid(BASE);
    let r = &config.runtime;
    assert_eq!(r.cores, DEFAULT_CORES);
    assert_eq!(r.cores_at, None);
    assert_eq!(r.ring_entries, DEFAULT_RING_ENTRIES);
    assert_eq!(r.buffer_size, DEFAULT_BUFFER_SIZE);
    assert_eq!(r.buffers_per_shard, DEFAULT_BUFFERS_PER_SHARD);
    assert_eq!(r.max_connections, DEFAULT_MAX_CONNECTIONS);
    assert_eq!(r.idle_wait, DEFAULT_IDLE_WAIT);
    assert_eq!(r.glommio.io_memory, DEFAULT_GLOMMIO_IO_MEMORY);
    assert_eq!(r.glommio.ring_depth, DEFAULT_GLOMMIO_RING_DEPTH);
    assert_eq!(r.glommio.spin_before_park, None);
    assert_eq!(r.glommio.preempt_timer, DEFAULT_GLOMMIO_PREEMPT_TIMER);

    let l = &config.limits;
    assert_eq!(l.max_request_line, DEFAULT_MAX_REQUEST_LINE);
    assert_eq!(l.max_head_bytes, DEFAULT_MAX_HEAD_BYTES);
    assert_eq!(l.max_headers, DEFAULT_MAX_HEADERS);
    assert_eq!(l.max_body_bytes, DEFAULT_MAX_BODY_BYTES);

    let t = &config.timeouts;
    assert_eq!(t.header, DEFAULT_HEADER_TIMEOUT);
    assert_eq!(t.keepalive, DEFAULT_KEEPALIVE_TIMEOUT);
    assert_eq!(t.body, DEFAULT_BODY_TIMEOUT);
    assert_eq!(t.send, DEFAULT_SEND_TIMEOUT);
    assert_eq!(t.upstream_connect, DEFAULT_UPSTREAM_CONNECT_TIMEOUT);
    assert_eq!(t.upstream_response, DEFAULT_UPSTREAM_RESPONSE_TIMEOUT);
    assert_eq!(t.upstream_body, DEFAULT_UPSTREAM_BODY_TIMEOUT);
    assert_eq!(t.tunnel_idle, DEFAULT_TUNNEL_IDLE_TIMEOUT);
    assert_eq!(t.drain, DEFAULT_DRAIN_TIMEOUT);

    let listener = &config.listeners[0];
    assert_eq!(listener.backlog, DEFAULT_BACKLOG);
    assert_eq!(listener.defer_accept, DEFAULT_DEFER_ACCEPT);

    let u = &config.upstreams[0];
    assert_eq!(u.balance, DEFAULT_BALANCE);
    assert_eq!(u.max_idle_per_endpoint, DEFAULT_MAX_IDLE_PER_ENDPOINT);
    assert_eq!(u.idle_timeout, DEFAULT_UPSTREAM_IDLE_TIMEOUT);
    assert_eq!(
        u.max_requests_per_connection,
        DEFAULT_MAX_REQUESTS_PER_CONNECTION
    );
    assert_eq!(u.connect_timeout, DEFAULT_UPSTREAM_CONNECT_TIMEOUT);
    assert_eq!(u.response_timeout, DEFAULT_UPSTREAM_RESPONSE_TIMEOUT);
    assert_eq!(u.body_timeout, DEFAULT_UPSTREAM_BODY_TIMEOUT);
    assert!(config.routes.is_empty());
}

#[test]
fn route_defaults_apply() {
    let config = valid(&with_base(
        "[[route]]\npath = \"/\"\nrespond = { status = 204 }\n",
    ));
    let route = &config.routes[0];
    assert_eq!(route.host, HostPattern::Any);
    assert_eq!(route.methods, MethodSet::ANY);
    assert!(route.request_headers.is_empty() && route.response_headers.is_empty());
    assert_eq!(route.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(
        route.action,
        RouteAction::Respond {
            status: 204,
            body: DEFAULT_RESPOND_BODY.as_bytes().into(),
            headers: vec![]
        }
    );
}

#[test]
fn every_key_is_read() {
    let text = r#"
[runtime]
cores = "0-1"
io = "uring"
ring_entries = 256
buffer_size = "32KiB"
buffers_per_shard = 1024
max_connections = 1000
idle_wait = "10ms"

[runtime.glommio]
io_memory = "2MiB"
ring_depth = 64
spin_before_park = "1ms"
preempt_timer = "50ms"

[limits]
max_request_line = "4KiB"
max_head_bytes = "32KiB"
max_headers = 64
max_body_bytes = 0

[timeouts]
header = "5s"
keepalive = "2m"
body = "15s"
send = "20s"
upstream_connect = "1s"
upstream_response = "1m30s"
upstream_body = "45s"
tunnel_idle = "15m"
drain = "90s"

[[listener]]
name = "public"
bind = "[::1]:0"
backlog = 128
defer_accept = true

[[upstream]]
name = "api"
endpoints = ["backend.test:80", "two.test:81", "[::1]:82"]
balance = "round_robin"
max_idle_per_endpoint = 0
idle_timeout = "30s"
max_requests_per_connection = 0
connect_timeout = "250ms"
response_timeout = "2s"

[[route]]
name = "api-v1"
host = "API.example.com"
methods = ["GET", "HEAD"]
path_prefix = "/v1/"
upstream = "api"
prefix_rewrite = "/"
add_request_headers = { "X-Env" = "prod" }
remove_request_headers = ["Cookie"]
add_response_headers = { "Cache-Control" = "no-store" }
remove_response_headers = ["Server"]
max_body_bytes = "1MiB"

[[route]]
path = "/users/{id}"
upstream = "api"

[[route]]
path_prefix = "/static"
upstream = "api"
strip_prefix = true
"#;
    let config = valid(text);
    let r = &config.runtime;
    assert_eq!(r.cores, CoreSelection::List(vec![0, 1]));
    assert_eq!(
        r.cores_at.as_ref().map(|at| at.location),
        Some(Location { line: 3, column: 9 })
    );
    assert_eq!(r.ring_entries, 256);
    assert_eq!(r.buffer_size, 32 * 1024);
    assert_eq!(r.buffers_per_shard, 1024);
    assert_eq!(r.max_connections, 1000);
    assert_eq!(r.idle_wait, Duration::from_millis(10));
    assert_eq!(r.glommio.io_memory, 2 << 20);
    assert_eq!(r.glommio.ring_depth, 64);
    assert_eq!(r.glommio.spin_before_park, Some(Duration::from_millis(1)));
    assert_eq!(r.glommio.preempt_timer, Duration::from_millis(50));
    assert_eq!(config.limits.max_request_line, 4096);
    assert_eq!(config.limits.max_head_bytes, 32 * 1024);
    assert_eq!(config.limits.max_headers, 64);
    assert_eq!(config.limits.max_body_bytes, None, "0 is unlimited");
    let t = &config.timeouts;
    assert_eq!(t.header, Duration::from_secs(5));
    assert_eq!(t.keepalive, Duration::from_secs(120));
    assert_eq!(t.upstream_response, Duration::from_secs(90));
    assert_eq!(t.tunnel_idle, Duration::from_secs(15 * 60));
    assert_eq!(t.drain, Duration::from_secs(90));
    let l = &config.listeners[0];
    assert_eq!(l.bind, "[::1]:0".parse().unwrap());
    assert_eq!((l.backlog, l.defer_accept), (128, true));
    let u = &config.upstreams[0];
    let endpoints: Vec<String> = u.endpoints.iter().map(ToString::to_string).collect();
    assert_eq!(
        endpoints,
        ["10.0.0.7:80", "10.0.0.8:81", "10.0.0.9:81", "[::1]:82"]
    );
    assert_eq!(u.max_idle_per_endpoint, 0);
    assert_eq!(u.idle_timeout, Duration::from_secs(30));
    assert_eq!(u.max_requests_per_connection, None, "0 is unlimited");
    assert_eq!(u.connect_timeout, Duration::from_millis(250));
    assert_eq!(u.response_timeout, Duration::from_secs(2));
    assert_eq!(u.body_timeout, Duration::from_secs(45));

    let route = &config.routes[0];
    assert_eq!(&*route.name, "api-v1");
    assert_eq!(route.host, HostPattern::Exact("api.example.com".into()));
    assert!(route.methods.contains(Method::Get) && route.methods.contains(Method::Head));
    assert!(!route.methods.contains(Method::Post));
    assert_eq!(
        route.action,
        RouteAction::Upstream {
            upstream: 0,
            strip_prefix: false,
            prefix_rewrite: Some("/".into())
        }
    );
    assert_eq!(
        route.request_headers,
        HeaderEdits {
            remove: vec!["cookie".into()],
            add: vec![("X-Env".into(), "prod".into())]
        }
    );
    assert_eq!(route.response_headers.remove, vec!["server".into()]);
    assert_eq!(route.max_body_bytes, Some(1 << 20));
    assert!(matches!(config.routes[1].path, PathPattern::Template(_)));
    assert_eq!(
        config.routes[1].max_body_bytes, None,
        "inherits the unlimited [limits] value"
    );
    assert!(matches!(
        config.routes[2].action,
        RouteAction::Upstream {
            strip_prefix: true,
            ..
        }
    ));
}

#[test]
fn config_is_shareable_across_shards() {
    fn shareable<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
    shareable::<Config>();
    shareable::<Plan>();
    shareable::<ConfigErrors>();
}

// ---------------------------------------------------------------------------------------------
// messages: exact text for a few

#[test]
fn a_missing_upstream_is_named_with_the_defined_ones() {
    let text = EXAMPLE.replace("upstream = \"api\"", "upstream = \"apii\"");
    assert_eq!(
        error(&text),
        "t.toml:14:12: route[1].upstream: no upstream named \"apii\" (defined: \"api\")"
    );
}

#[test]
fn unknown_keys_are_reported_with_their_line_and_a_suggestion() {
    let text = format!("{LISTENER}bnd = \"x\"\n");
    assert_eq!(
        error(&text),
        "t.toml:4:1: listener[1].bnd: unknown key; did you mean `bind`? \
         (accepted here: name, bind, backlog, defer_accept, tls)"
    );
    let text = format!("{LISTENER}[runtime]\nthreads = 4\n");
    assert_eq!(
        error(&text),
        "t.toml:5:1: runtime.threads: unknown key (accepted here: cores, exclude, io, ring_entries, \
         buffer_size, buffers_per_shard, max_connections, idle_wait, glommio)"
    );
    let text = format!("{LISTENER}[listeners]\n");
    assert!(
        error(&text).starts_with("t.toml:4:2: listeners: unknown key; did you mean `listener`?")
    );
}

#[test]
fn unknown_keys_in_inline_tables_are_found() {
    let text = with_base("[[route]]\npath = \"/\"\nrespond = { status = 200, bdy = \"x\" }\n");
    assert_eq!(
        error(&text),
        "t.toml:10:27: route[1].respond.bdy: unknown key; did you mean `body`? \
         (accepted here: status, body, headers)"
    );
}

#[test]
fn the_head_must_fit_in_a_buffer() {
    let text = format!("{LISTENER}[runtime]\nbuffer_size = \"8KiB\"\n");
    assert_eq!(
        error(&text),
        "t.toml:5:15: runtime.buffer_size: limits.max_head_bytes (16 KiB) must not exceed \
         runtime.buffer_size (8 KiB): a request head is parsed within one buffer (found \"8KiB\")"
    );
    let text = format!("{LISTENER}[limits]\nmax_head_bytes = \"32KiB\"\n");
    assert_eq!(
        error(&text),
        "t.toml:5:18: limits.max_head_bytes: limits.max_head_bytes (32 KiB) must not exceed \
         runtime.buffer_size (16 KiB): a request head is parsed within one buffer \
         (found \"32KiB\")"
    );
}

#[test]
fn syntax_errors_carry_line_and_column() {
    let all = errors("[[listener]]\nname = \"l\nbind = 1\n");
    assert!(!all.is_empty());
    assert!(
        all[0].starts_with("t.toml:2:10: TOML syntax: invalid basic string"),
        "got {all:?}"
    );
}

#[test]
fn a_missing_file_is_one_error() {
    let errors = Config::load(Path::new("/nonexistent/coregate.toml")).unwrap_err();
    assert_eq!(errors.len(), 1);
    assert!(
        errors
            .to_string()
            .starts_with("/nonexistent/coregate.toml: cannot read the file: ")
    );
}

// ---------------------------------------------------------------------------------------------
// all mistakes at once

#[test]
fn every_mistake_is_reported_in_one_pass() {
    let text = r#"[runtime]
cores = "0-3,2"
ring_entries = 1000
stray = 1

[limits]
max_headers = "many"

[timeouts]
header = 10
keepalive = "0"

[[listener]]
name = "public"
bind = "localhost:8080"
bakclog = 10

[[listener]]
name = "public"
bind = "127.0.0.1:8080"

[[upstream]]
name = "api"
endpoints = ["nowhere.test:80", "127.0.0.1"]

[[route]]
path = "/a"
path_prefix = "/b"
upstream = "apii"

[[route]]
methods = ["get"]
path = "/c"
respond = { status = 99 }
"#;
    let all = errors(text);
    let keys: Vec<&str> = all
        .iter()
        .map(|line| line.split(": ").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        keys,
        [
            "runtime.cores",
            "runtime.ring_entries",
            "runtime.stray",
            "limits.max_headers",
            "timeouts.header",
            "timeouts.keepalive",
            "listener[1].bind",
            "listener[1].bakclog",
            "listener[2].name",
            "upstream[1].endpoints[1]",
            "upstream[1].endpoints[2]",
            "route[1].path_prefix",
            "route[1].upstream",
            "route[2].methods[1]",
            "route[2].respond.status",
        ],
        "all errors:\n{}",
        all.join("\n")
    );
    let lines: Vec<&str> = all
        .iter()
        .map(|line| line.split(':').nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        lines,
        [
            "2", "3", "4", "7", "10", "11", "15", "16", "19", "24", "24", "28", "29", "32", "34"
        ]
    );
    assert!(
        all[0]
            .ends_with("CPU 2 is listed twice; each CPU runs at most one shard (found \"0-3,2\")")
    );
    assert!(all[1].ends_with("must be a power of two, like 512 or 1024 (found 1000)"));
    assert!(all[3].ends_with("expected an integer (found \"many\")"));
    assert!(all[4].contains("missing unit"));
    assert!(all[5].contains("must be more than 0"));
    assert!(all[9].contains("cannot resolve host name \"nowhere.test\""));
    assert!(all[13].contains("write \"GET\""));
    assert!(all[14].ends_with("must be from 200 to 599 (found 99)"));
}

// ---------------------------------------------------------------------------------------------
// [runtime]

fn cores(value: &str) -> Result<CoreSelection, String> {
    parse(&format!("{LISTENER}[runtime]\ncores = {value}\n"))
        .map(|config| config.runtime.cores)
        .map_err(|errors| errors.to_string())
}

#[test]
fn cores_take_every_syntax() {
    assert_eq!(cores("\"all\""), Ok(CoreSelection::All));
    assert_eq!(cores("\"3\""), Ok(CoreSelection::List(vec![3])));
    assert_eq!(cores("\"0-3\""), Ok(CoreSelection::List(vec![0, 1, 2, 3])));
    assert_eq!(
        cores("\"0-3,6\""),
        Ok(CoreSelection::List(vec![0, 1, 2, 3, 6]))
    );
    assert_eq!(cores("[3, 1]"), Ok(CoreSelection::List(vec![1, 3])));
}

#[test]
fn cores_refuse_mistakes() {
    assert!(
        cores("3")
            .unwrap_err()
            .contains("a bare number is ambiguous")
    );
    assert!(cores("\"ALL\"").unwrap_err().contains("not a CPU number"));
    assert!(cores("[]").unwrap_err().contains("empty"));
    assert!(cores("[1, 1]").unwrap_err().contains("listed twice"));
    assert!(
        cores("[-1]")
            .unwrap_err()
            .contains("t.toml:5:10: runtime.cores: expected CPU numbers")
    );
    assert!(
        cores("[\"1\"]")
            .unwrap_err()
            .contains("expected CPU numbers")
    );
    assert!(cores("true").unwrap_err().contains("expected \"all\""));
    let got = cores("\"all,^O\"").unwrap_err();
    assert!(
        got.starts_with("t.toml:5:9: runtime.cores: \"O\" is not a CPU number"),
        "{got}"
    );
    assert!(got.ends_with("(found \"all,^O\")"), "{got}");
}

fn runtime_section(body: &str) -> Result<Config, String> {
    parse(&format!("{LISTENER}[runtime]\n{body}\n")).map_err(|errors| errors.to_string())
}

#[test]
fn exclude_takes_cpus_away_from_cores() {
    let config = runtime_section("exclude = \"0-1\"").expect("valid");
    assert_eq!(config.runtime.cores.to_string(), "all,^0-1");
    assert_eq!(
        config.runtime.exclude_at.as_ref().map(ToString::to_string),
        Some("t.toml:5:11".into())
    );
    let config = runtime_section("cores = \"physical\"\nexclude = [0, 8]").expect("valid");
    assert_eq!(config.runtime.cores.to_string(), "physical,^0,8");
    let config = runtime_section("cores = \"node1\"\nexclude = \"node1\"").expect("valid");
    assert_eq!(config.runtime.cores.to_string(), "node1,^node1");
    let got = runtime_section("exclude = \"all\"").unwrap_err();
    assert!(
        got.starts_with("t.toml:5:11: runtime.exclude: \"all\" cannot be excluded"),
        "{got}"
    );
    let got = runtime_section("exclude = 1").unwrap_err();
    assert!(got.contains("a bare number is ambiguous"), "{got}");
    let got = runtime_section("exclude = [\"x\"]").unwrap_err();
    assert!(
        got.contains("runtime.exclude: expected CPU numbers"),
        "{got}"
    );
}

#[test]
fn runtime_values_are_bounded() {
    let check = |key: &str, value: &str, message: &str| {
        let text = format!("{LISTENER}[runtime]\n{key} = {value}\n");
        let got = error(&text);
        assert!(got.contains(&format!("runtime.{key}: ")), "{got}");
        assert!(got.contains(message), "{got} should contain {message}");
    };
    check("io", "\"epoll\"", "must be \"uring\"");
    check("io", "\"glommio\"", "glommio's TcpStream path was retired");
    check("ring_entries", "16", "must be from 32 to 32768");
    check("buffer_size", "\"2KiB\"", "must be from 4 KiB to 1 MiB");
    check("buffer_size", "\"16KB\"", "ambiguous unit");
    check("buffers_per_shard", "100000", "must be from 16 to 32768");
    check("max_connections", "0", "must be from 1 to");
    check("idle_wait", "\"2s\"", "must be from 0 to 1s");
    let text = format!("{LISTENER}[runtime.glommio]\nring_depth = 100\npreempt_timer = 0\n");
    let all = errors(&text);
    assert!(all[0].contains("runtime.glommio.ring_depth: must be a power of two"));
    assert!(all[1].contains("runtime.glommio.preempt_timer: must be more than 0"));
}

#[test]
fn zero_is_accepted_where_it_means_off() {
    let text = format!(
        "{LISTENER}[runtime]\nidle_wait = 0\n[runtime.glommio]\nspin_before_park = \"0ms\"\n"
    );
    let config = valid(&text);
    assert_eq!(config.runtime.idle_wait, Duration::ZERO);
    assert_eq!(config.runtime.glommio.spin_before_park, None);
}

// ---------------------------------------------------------------------------------------------
// [limits] and [timeouts]

#[test]
fn limits_are_checked_against_each_other() {
    let text =
        format!("{LISTENER}[limits]\nmax_request_line = \"16KiB\"\nmax_head_bytes = \"8KiB\"\n");
    let got = error(&text);
    assert!(got.starts_with("t.toml:5:20: limits.max_request_line: limits.max_request_line (16 KiB) must not exceed limits.max_head_bytes (8 KiB)"), "{got}");
}

#[test]
fn body_limits_take_sizes_and_zero() {
    let limit = |value: &str| {
        valid(&format!("{LISTENER}[limits]\nmax_body_bytes = {value}\n"))
            .limits
            .max_body_bytes
    };
    assert_eq!(limit("\"1MiB\""), Some(1 << 20));
    assert_eq!(limit("4096"), Some(4096));
    assert_eq!(limit("0"), None);
    assert_eq!(limit("\"0\""), None);
    let got = error(&format!("{LISTENER}[limits]\nmax_body_bytes = -1\n"));
    assert!(got.ends_with("limits.max_body_bytes: a size cannot be negative (found -1)"));
}

/// A buffered body leaves in one gathered write of the shard's buffers: at most four of them,
/// whatever `runtime.buffer_size` is. Routes inherit `[limits]`' bound or set their own.
#[test]
fn request_buffering_is_bounded_by_the_buffers_one_write_gathers() {
    let route = "[[route]]\npath = \"/\"\nrespond = { status = 204 }\n";
    let config = valid(&format!("{LISTENER}{route}"));
    assert_eq!(config.limits.request_buffering, 64 * 1024);
    assert_eq!(config.routes[0].request_buffering, 64 * 1024);
    let config = valid(&format!(
        "{LISTENER}[limits]\nrequest_buffering = \"16KiB\"\n{route}{}request_buffering = 0\n",
        route.replace("\"/\"", "\"/other\"")
    ));
    assert_eq!(config.routes[0].request_buffering, 16 * 1024);
    assert_eq!(
        config.routes[1].request_buffering, 0,
        "a route's own bound wins"
    );
    let config = valid(&format!(
        "{LISTENER}[runtime]\nbuffer_size = \"32KiB\"\n[limits]\nrequest_buffering = \"128KiB\"\n"
    ));
    assert_eq!(config.limits.request_buffering, 128 * 1024);
    let got = error(&format!(
        "{LISTENER}[limits]\nrequest_buffering = \"1MiB\"\n"
    ));
    assert_eq!(
        got,
        "t.toml:5:21: limits.request_buffering: must be at most 4 x runtime.buffer_size (64 KiB): \
         a buffered body goes upstream in one write of the shard's I/O buffers (found \"1MiB\")"
    );
    let got = error(&format!("{LISTENER}{route}request_buffering = \"65KiB\"\n"));
    assert!(
        got.starts_with("t.toml:7:21: route[1].request_buffering: must be at most 4 x"),
        "{got}"
    );
}

#[test]
fn timeouts_need_units_and_cannot_be_zero() {
    let timeout = |value: &str| {
        parse(&format!("{LISTENER}[timeouts]\nsend = {value}\n"))
            .map(|config| config.timeouts.send)
            .map_err(|errors| errors.to_string())
    };
    assert_eq!(timeout("\"250ms\""), Ok(Duration::from_millis(250)));
    assert_eq!(timeout("\"1h\""), Ok(Duration::from_secs(3600)));
    assert_eq!(
        timeout("30").unwrap_err(),
        "t.toml:5:8: timeouts.send: missing unit: write \"10s\" or \"250ms\" (a bare number \
         would be ambiguous) (found 30)"
    );
    assert!(timeout("0").unwrap_err().contains("must be more than 0"));
    assert!(
        timeout("\"25h\"")
            .unwrap_err()
            .contains("must be from 1ms to 24h")
    );
    assert!(timeout("\"1.5s\"").unwrap_err().contains("1500ms"));
    assert!(timeout("true").unwrap_err().contains("expected a duration"));
}

// ---------------------------------------------------------------------------------------------
// [[listener]]

#[test]
fn at_least_one_listener_is_required() {
    assert_eq!(
        error("[runtime]\n"),
        "t.toml: listener: at least one [[listener]] is required, like: [[listener]] name = \
         \"public\" bind = \"0.0.0.0:8080\""
    );
}

#[test]
fn a_single_listener_table_is_a_shape_error() {
    let got = error("[listener]\nname = \"l\"\nbind = \"127.0.0.1:0\"\n");
    assert_eq!(
        got,
        "t.toml:1:1: listener: must be written [[listener]] (an array of tables) \
         (found [listener])"
    );
}

#[test]
fn listeners_need_a_name_and_an_address() {
    let all =
        errors("[[listener]]\nbackaddr = 1\n\n[[listener]]\nname = \"b c\"\nbind = \"*:80\"\n");
    assert_eq!(
        all,
        [
            "t.toml:1:1: listener[1].name: required key is missing",
            "t.toml:1:1: listener[1].bind: required key is missing",
            "t.toml:2:1: listener[1].backaddr: unknown key (accepted here: name, bind, backlog, \
             defer_accept, tls)",
            "t.toml:5:8: listener[2].name: a name may hold only letters, digits, '-', '_' and \
             '.' (found \"b c\")",
            "t.toml:6:8: listener[2].bind: expected an IP address and port, like \"0.0.0.0:8080\" \
             or \"[::]:8443\" (listeners do not resolve host names) (found \"*:80\")",
        ]
    );
}

#[test]
fn listeners_are_unique() {
    let text = "[[listener]]\nname = \"a\"\nbind = \"0.0.0.0:80\"\n\
                [[listener]]\nname = \"a\"\nbind = \"127.0.0.1:80\"\n\
                [[listener]]\nname = \"c\"\nbind = \"0.0.0.0:80\"\n\
                [[listener]]\nname = \"d\"\nbind = \"127.0.0.1:0\"\n\
                [[listener]]\nname = \"e\"\nbind = \"127.0.0.1:0\"\n";
    assert_eq!(
        errors(text),
        [
            "t.toml:5:8: listener[2].name: another listener is already named \"a\" \
             (listener[1]) (found \"a\")",
            "t.toml:6:8: listener[2].bind: overlaps listener[1].bind (0.0.0.0:80): one of them \
             binds every address (found \"127.0.0.1:80\")",
            "t.toml:9:8: listener[3].bind: address already used by listener[1].bind \
             (found \"0.0.0.0:80\")",
        ]
    );
}

#[test]
fn listener_values_are_typed() {
    let text = format!("{LISTENER}backlog = 0\ndefer_accept = \"yes\"\n");
    assert_eq!(
        errors(&text),
        [
            "t.toml:4:11: listener[1].backlog: must be from 1 to 65535 (found 0)",
            "t.toml:5:16: listener[1].defer_accept: expected true or false (found \"yes\")",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// [[upstream]]

fn upstream_errors(body: &str) -> Vec<String> {
    errors(&format!("{LISTENER}[[upstream]]\nname = \"u\"\n{body}"))
}

#[test]
fn endpoints_are_required_and_resolved() {
    assert_eq!(
        upstream_errors(""),
        ["t.toml:4:1: upstream[1].endpoints: required key is missing"]
    );
    assert_eq!(
        upstream_errors("endpoints = []\n"),
        ["t.toml:6:13: upstream[1].endpoints: needs at least one \"host:port\" (found [])"]
    );
    assert_eq!(
        upstream_errors("endpoints = \"127.0.0.1:80\"\n"),
        [
            "t.toml:6:13: upstream[1].endpoints: expected an array of \"host:port\" strings \
          (found \"127.0.0.1:80\")"
        ]
    );
    let all = upstream_errors(
        "endpoints = [\n  \"a.test:80\",\n  \"127.0.0.1:0\",\n  \"::1:80\",\n  \
         \"backend.test:http\",\n  \"empty.test:80\",\n  \"bad host:80\",\n  8080,\n]\n",
    );
    assert_eq!(
        all,
        [
            "t.toml:7:3: upstream[1].endpoints[1]: cannot resolve host name \"a.test\": no such \
             host (found \"a.test:80\")",
            "t.toml:8:3: upstream[1].endpoints[2]: port 0 cannot be connected to; use the \
             upstream's port (found \"127.0.0.1:0\")",
            "t.toml:9:3: upstream[1].endpoints[3]: not a valid IPv6 address; write it in \
             brackets: \"[2001:db8::5]:8080\" (found \"::1:80\")",
            "t.toml:10:3: upstream[1].endpoints[4]: the port must be a number from 1 to 65535 \
             (found \"backend.test:http\")",
            "t.toml:11:3: upstream[1].endpoints[5]: host name \"empty.test\" resolves to no \
             address (found \"empty.test:80\")",
            "t.toml:12:3: upstream[1].endpoints[6]: expected \"host:port\", like \
             \"10.0.0.5:8080\", \"[2001:db8::5]:8080\" or \"backend.internal:8080\" \
             (found \"bad host:80\")",
            "t.toml:13:3: upstream[1].endpoints[7]: expected a \"host:port\" string or \
             { address = \"host:port\", weight = 2 } (found 8080)",
        ]
    );
}

#[test]
fn an_endpoint_is_listed_once() {
    let all = upstream_errors("endpoints = [\"10.0.0.7:80\", \"backend.test:80\"]\n");
    assert_eq!(
        all,
        [
            "t.toml:6:29: upstream[1].endpoints[2]: 10.0.0.7:80 is already an endpoint \
          (upstream[1].endpoints[1]) (found \"backend.test:80\")"
        ]
    );
}

#[test]
fn upstream_values_are_checked() {
    let all = upstream_errors(
        "endpoints = [\"127.0.0.1:80\"]\nbalance = \"least_conn\"\nidle_timeout = \"0s\"\n\
         max_idle_per_endpoint = -1\nconnect_timeout = \"5\"\n",
    );
    assert_eq!(
        all,
        [
            "t.toml:7:11: upstream[1].balance: unknown policy; expected one of \"round_robin\", \
             \"least_request\", \"random\", \"ring_hash\", \"maglev\" (found \"least_conn\")",
            "t.toml:8:16: upstream[1].idle_timeout: must be more than 0 (0 does not turn it \
             off; the longest allowed is 24h) (found \"0s\")",
            "t.toml:9:25: upstream[1].max_idle_per_endpoint: must be from 0 to 4096 (found -1)",
            "t.toml:10:19: upstream[1].connect_timeout: missing unit: write \"10s\" or \"250ms\" \
             (a bare number would be ambiguous) (found \"5\")",
        ]
    );
}

#[test]
fn upstream_names_are_required_and_unique() {
    let text = format!(
        "{LISTENER}[[upstream]]\nendpoints = [\"127.0.0.1:1\"]\n\
         [[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:2\"]\n\
         [[upstream]]\nname = \"u\"\nendpoints = [\"127.0.0.1:3\"]\n"
    );
    assert_eq!(
        errors(&text),
        [
            "t.toml:4:1: upstream[1].name: required key is missing",
            "t.toml:10:8: upstream[3].name: another upstream is already named \"u\" \
             (upstream[2]) (found \"u\")",
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// [[route]]

/// Errors for a route added after [`BASE`] (the route's `[[route]]` is line 8).
fn route_errors(body: &str) -> Vec<String> {
    errors(&with_base(&format!("[[route]]\n{body}")))
}

#[test]
fn a_route_matches_exactly_one_path() {
    assert_eq!(
        route_errors("upstream = \"api\"\n"),
        ["t.toml:8:1: route[1]: needs `path` (exact or template) or `path_prefix`"]
    );
    assert_eq!(
        route_errors("path = \"/a\"\npath_prefix = \"/a/\"\nupstream = \"api\"\n"),
        ["t.toml:10:15: route[1].path_prefix: use either `path` or `path_prefix`, not both"]
    );
    assert_eq!(
        route_errors("path = \"a\"\nupstream = \"api\"\n"),
        ["t.toml:9:8: route[1].path: path must start with '/' (found \"a\")"]
    );
    assert_eq!(
        route_errors("path_prefix = \"/{id}/\"\nupstream = \"api\"\n"),
        [
            "t.toml:9:15: route[1].path_prefix: path_prefix cannot hold parameters; use `path` \
          for templates (found \"/{id}/\")"
        ]
    );
    // Requests are matched without their path parameters, so a pattern with `;` never matches.
    assert_eq!(
        route_errors("path_prefix = \"/admin;x/\"\nupstream = \"api\"\n"),
        [
            "t.toml:9:15: route[1].path_prefix: path must not contain ';': path parameters are \
          ignored when matching (found \"/admin;x/\")"
        ]
    );
    assert_eq!(
        route_errors("host = \"a.*.com\"\npath = \"/\"\nupstream = \"api\"\n"),
        [
            "t.toml:9:8: route[1].host: a wildcard is only allowed as the whole first label \
          (`*.example.com`) (found \"a.*.com\")"
        ]
    );
}

#[test]
fn a_route_does_exactly_one_thing() {
    assert_eq!(
        route_errors("path = \"/\"\n"),
        ["t.toml:8:1: route[1]: needs `upstream = \"<name>\"` or `respond = { status = ... }`"]
    );
    assert_eq!(
        route_errors("path = \"/\"\nupstream = \"api\"\nrespond = { status = 200 }\n"),
        ["t.toml:11:11: route[1].respond: use either `upstream` or `respond`, not both"]
    );
    assert_eq!(
        route_errors("path = \"/\"\nrespond = \"ok\"\n"),
        [
            "t.toml:10:11: route[1].respond: expected an inline table like { status = 200, body = \
          \"ok\" } (found \"ok\")"
        ],
        "a respond of the wrong shape is one mistake, not also a missing action"
    );
    let text = format!("{LISTENER}[[route]]\npath = \"/\"\nupstream = \"api\"\n");
    assert_eq!(
        error(&text),
        "t.toml:6:12: route[1].upstream: no upstream named \"api\" (no [[upstream]] is defined)"
    );
}

#[test]
fn a_route_to_a_broken_upstream_adds_no_error_of_its_own() {
    let text = format!(
        "{LISTENER}[[upstream]]\nname = \"api\"\nendpoints = []\n\
         [[route]]\npath = \"/\"\nupstream = \"api\"\n"
    );
    assert_eq!(errors(&text).len(), 1);
}

#[test]
fn responses_are_checked() {
    assert_eq!(
        route_errors("path = \"/\"\nrespond = { body = \"x\" }\n"),
        ["t.toml:10:11: route[1].respond.status: required key is missing"]
    );
    assert_eq!(
        route_errors("path = \"/\"\nrespond = { status = 101 }\n"),
        ["t.toml:10:22: route[1].respond.status: must be from 200 to 599 (found 101)"]
    );
    assert_eq!(
        route_errors("path = \"/\"\nrespond = { status = 204, body = \"x\" }\n"),
        ["t.toml:10:34: route[1].respond.body: a 204 response cannot have a body (found \"x\")"]
    );
    assert_eq!(
        route_errors("path = \"/\"\nrespond = { status = 304, body = \"x\" }\n"),
        ["t.toml:10:34: route[1].respond.body: a 304 response cannot have a body (found \"x\")"]
    );
    // 1xx are interim responses, never a route's answer.
    assert!(
        route_errors("path = \"/\"\nrespond = { status = 103 }\n")[0]
            .starts_with("t.toml:10:22: route[1].respond.status: ")
    );
    let all = route_errors(
        "path = \"/\"\nrespond = { status = 200, headers = { \"Content-Length\" = \"1\", \
         \"X-A\" = \"a\\r\\nb\", \"Bad Name\" = \"v\", \"X-B\" = 1 } }\n",
    );
    assert_eq!(
        all,
        [
            "t.toml:10:58: route[1].respond.headers.Content-Length: coregate manages this \
             header (connection handling and framing); a route cannot set or remove it \
             (found \"1\")",
            "t.toml:10:71: route[1].respond.headers.X-A: a header value must not contain line \
             breaks, NUL or other control characters (found \"a\\r\\nb\")",
            "t.toml:10:94: route[1].respond.headers.\"Bad Name\": not a valid header name \
             (letters, digits and !#$%&'*+-.^_`|~ only) (found \"v\")",
            "t.toml:10:107: route[1].respond.headers.X-B: expected a string value (found 1)",
        ]
    );
}

#[test]
fn header_edits_are_checked() {
    let all = route_errors(
        "path_prefix = \"/\"\nupstream = \"api\"\n\
         add_request_headers = { \"x-a\" = \"1\", \"X-A\" = \"2\" }\n\
         remove_request_headers = [\"Host\", \"Transfer-Encoding\", 3]\n\
         remove_response_headers = \"Server\"\n",
    );
    assert_eq!(
        all,
        [
            "t.toml:11:33: route[1].add_request_headers.x-a: the same header is set twice \
             (names are case-insensitive) (found \"1\")",
            "t.toml:12:27: route[1].remove_request_headers[1]: an HTTP/1.1 request must keep \
             its Host header (found \"Host\")",
            "t.toml:12:35: route[1].remove_request_headers[2]: coregate manages this header \
             (connection handling and framing); a route cannot set or remove it \
             (found \"Transfer-Encoding\")",
            "t.toml:12:56: route[1].remove_request_headers[3]: expected a header name (found 3)",
            "t.toml:13:27: route[1].remove_response_headers: expected an array of header names \
             (found \"Server\")",
        ]
    );
    assert_eq!(
        route_errors(
            "path = \"/\"\nrespond = { status = 200 }\nremove_request_headers = [\"A\"]\n"
        ),
        [
            "t.toml:11:26: route[1].remove_request_headers: only applies to routes with an \
          `upstream` (nothing is forwarded)"
        ]
    );
}

/// Host, X-Forwarded-*, X-Request-Id and Forwarded are written by coregate on every forwarded
/// request: a route adding one would have the upstream see two, a route removing one would
/// leave it with none or change nothing. Refused with the key and value, all at once.
#[test]
fn route_edits_cannot_name_forwarding_fields() {
    let all = route_errors(
        "path_prefix = \"/\"\nupstream = \"api\"\n\
         add_request_headers = { \"Host\" = \"h\", \"X-Forwarded-Proto\" = \"https\", \
         \"x-request-id\" = \"1\", \"Forwarded\" = \"for=1.2.3.4\", \"X-Env\" = \"prod\" }\n\
         remove_request_headers = [\"X-Forwarded-For\", \"forwarded\", \"X-Request-ID\"]\n",
    );
    assert_eq!(
        all,
        [
            "t.toml:11:34: route[1].add_request_headers.Host: coregate forwards the request's \
             own Host (or its absolute-form authority); a route cannot set another (found \"h\")",
            "t.toml:11:61: route[1].add_request_headers.X-Forwarded-Proto: coregate writes this \
             header on every forwarded request (see [forwarding]); a route cannot set or remove \
             it (found \"https\")",
            "t.toml:11:87: route[1].add_request_headers.x-request-id: coregate passes the \
             client's X-Request-Id on or generates one; a route cannot set or remove it \
             (found \"1\")",
            "t.toml:11:106: route[1].add_request_headers.Forwarded: Forwarded describes the hops \
             a request took, which a route cannot vouch for; it can only remove the client's \
             copy (found \"for=1.2.3.4\")",
            "t.toml:12:27: route[1].remove_request_headers[1]: coregate writes this header on \
             every forwarded request (see [forwarding]); a route cannot set or remove it \
             (found \"X-Forwarded-For\")",
            "t.toml:12:59: route[1].remove_request_headers[3]: coregate passes the client's \
             X-Request-Id on or generates one; a route cannot set or remove it \
             (found \"X-Request-ID\")",
        ]
    );
    // The same names are fine on responses, which coregate does not write them on.
    valid(&with_base(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"api\"\n\
         add_response_headers = { \"X-Request-Id\" = \"1\", \"Forwarded\" = \"x\" }\n\
         remove_request_headers = [\"Forwarded\"]\n",
    ));
}

#[test]
fn path_rewrites_need_a_forwarded_prefix() {
    assert_eq!(
        route_errors("path = \"/a\"\nupstream = \"api\"\nstrip_prefix = true\n"),
        [
            "t.toml:11:16: route[1].strip_prefix: only applies to routes with `path_prefix` and \
          `upstream`"
        ]
    );
    assert_eq!(
        route_errors("path_prefix = \"/a/\"\nrespond = { status = 200 }\nprefix_rewrite = \"/\"\n"),
        [
            "t.toml:11:18: route[1].prefix_rewrite: only applies to routes with `path_prefix` and \
          `upstream`"
        ]
    );
    assert_eq!(
        route_errors(
            "path_prefix = \"/a/\"\nupstream = \"api\"\nstrip_prefix = true\nprefix_rewrite = \"/b/\"\n"
        ),
        [
            "t.toml:12:18: route[1].prefix_rewrite: use either `strip_prefix` or `prefix_rewrite`, \
          not both"
        ]
    );
    assert_eq!(
        route_errors("path_prefix = \"/api/\"\nupstream = \"api\"\nprefix_rewrite = \"/v2\"\n"),
        [
            "t.toml:11:18: route[1].prefix_rewrite: end both path_prefix and prefix_rewrite with \
          '/', or neither: as written /api/x would be forwarded as /v2x (found \"/v2\")"
        ]
    );
    assert_eq!(
        route_errors("path_prefix = \"/api\"\nupstream = \"api\"\nprefix_rewrite = \"/\"\n"),
        [
            "t.toml:11:18: route[1].prefix_rewrite: end both path_prefix and prefix_rewrite with \
          '/', or neither: as written /api/x would be forwarded as //x (found \"/\")"
        ]
    );
    assert_eq!(
        route_errors("path_prefix = \"/a/\"\nupstream = \"api\"\nprefix_rewrite = \"b/\"\n"),
        ["t.toml:11:18: route[1].prefix_rewrite: path must start with '/' (found \"b/\")"]
    );
    // `strip_prefix = false` anywhere says nothing and is accepted.
    valid(&with_base(
        "[[route]]\npath = \"/\"\nrespond = { status = 200 }\nstrip_prefix = false\n",
    ));
}

#[test]
fn methods_are_standard_names() {
    assert_eq!(
        route_errors("methods = []\npath = \"/\"\nupstream = \"api\"\n"),
        [
            "t.toml:9:11: route[1].methods: an empty list matches nothing; leave `methods` out to \
          match every method (found [])"
        ]
    );
    assert_eq!(
        route_errors("methods = [\"GET\", \"FETCH\"]\npath = \"/\"\nupstream = \"api\"\n"),
        [
            "t.toml:9:19: route[1].methods[2]: unknown method; use GET, HEAD, POST, PUT, DELETE, \
          CONNECT, OPTIONS, TRACE or PATCH (found \"FETCH\")"
        ]
    );
    assert_eq!(
        route_errors("methods = \"GET\"\npath = \"/\"\nupstream = \"api\"\n"),
        [
            "t.toml:9:11: route[1].methods: expected an array of method names, like [\"GET\"] \
          (found \"GET\")"
        ]
    );
}

#[test]
fn route_names_are_unique_including_default_ones() {
    let text = with_base(
        "[[route]]\nname = \"route-2\"\npath = \"/a\"\nupstream = \"api\"\n\
         [[route]]\npath = \"/b\"\nupstream = \"api\"\n\
         [[route]]\nname = \"route-2\"\npath = \"/c\"\nupstream = \"api\"\n",
    );
    assert_eq!(
        errors(&text),
        [
            "t.toml:12:1: route[2]: its default name \"route-2\" is already the name of \
             route[1]; name one of them differently",
            "t.toml:16:8: route[3].name: another route is already named \"route-2\" (route[1]) \
             (found \"route-2\")",
        ]
    );
}

#[test]
fn route_body_limits_override_the_global_one() {
    let config = valid(&format!(
        "{BASE}[limits]\nmax_body_bytes = \"1MiB\"\n\
         [[route]]\npath = \"/a\"\nupstream = \"api\"\nmax_body_bytes = 0\n\
         [[route]]\npath = \"/b\"\nupstream = \"api\"\nmax_body_bytes = \"2KiB\"\n\
         [[route]]\npath = \"/c\"\nupstream = \"api\"\n"
    ));
    let limits: Vec<Option<u64>> = config.routes.iter().map(|r| r.max_body_bytes).collect();
    assert_eq!(limits, [None, Some(2048), Some(1 << 20)]);
}

#[test]
fn wrong_types_are_reported_per_key() {
    let all = route_errors(
        "name = 1\nhost = true\npath = [\"/\"]\nupstream = 5\nstrip_prefix = \"yes\"\n",
    );
    assert_eq!(
        all,
        [
            "t.toml:9:8: route[1].name: expected a string (found 1)",
            "t.toml:10:8: route[1].host: expected a string (found true)",
            "t.toml:11:8: route[1].path: expected a string (found [\"/\"])",
            "t.toml:12:12: route[1].upstream: expected a string (found 5)",
            "t.toml:13:16: route[1].strip_prefix: expected true or false (found \"yes\")",
        ]
    );
}

#[test]
fn dates_and_floats_are_just_wrong_types() {
    let text = format!("{LISTENER}backlog = 1.5\n[timeouts]\nheader = 1979-05-27\n");
    assert_eq!(
        errors(&text),
        [
            "t.toml:4:11: listener[1].backlog: expected an integer (found 1.5)",
            "t.toml:6:10: timeouts.header: expected a duration like \"10s\" or \"250ms\" \
             (found 1979-05-27)",
        ]
    );
}

#[test]
fn numbers_beyond_toml_are_one_mistake() {
    let text = with_base("[[route]]\npath = \"/\"\nrespond = { status = 99999999999999999999 }\n");
    let got = error(&text);
    assert!(
        got.starts_with("t.toml:10:22: route[1].respond.status: "),
        "{got}"
    );
    assert!(got.ends_with("(found 99999999999999999999)"), "{got}");
}

// ---------------------------------------------------------------------------------------------
// the plan

#[test]
fn all_cores_means_every_allowed_cpu() {
    let config = valid(EXAMPLE);
    let plan = Plan::with_cpus(&config, &[3, 1, 2]).expect("plan");
    assert_eq!(
        plan.shards,
        [
            ShardPlan { index: 0, cpu: 1 },
            ShardPlan { index: 1, cpu: 2 },
            ShardPlan { index: 2, cpu: 3 },
        ]
    );
    assert_eq!(plan.listeners[0].sockets, 3);
}

#[test]
fn listed_cores_must_be_allowed() {
    let text = format!("{LISTENER}[runtime]\ncores = \"1-2,5,7\"\n");
    let config = valid(&text);
    let plan = Plan::with_cpus(&config, &[0, 1, 2, 3]);
    assert_eq!(
        plan.unwrap_err().to_string(),
        "t.toml:5:9: runtime.cores: CPUs 5,7 are not available to this process (it may use 0-3)"
    );
    let plan = Plan::with_cpus(&config, &[1, 2, 5, 7, 8]).expect("all allowed");
    assert_eq!(plan.cpus(), [1, 2, 5, 7]);
}

/// Two NUMA nodes of two cores each, SMT on: node 0 is CPUs 0,1 (core A) and 4,5 (core B)...
/// numbered as Intel numbers threads: CPU n and n+4 are siblings. Node 0: CPUs 0,1,4,5; node 1:
/// CPUs 2,3,6,7.
fn two_node_smt() -> crate::host::Topology {
    crate::host::Topology {
        online: (0..8).collect(),
        cores: vec![vec![0, 4], vec![1, 5], vec![2, 6], vec![3, 7]],
        nodes: vec![
            crate::host::Node {
                id: 0,
                cpus: vec![0, 1, 4, 5],
            },
            crate::host::Node {
                id: 1,
                cpus: vec![2, 3, 6, 7],
            },
        ],
    }
}

fn plan_cores(body: &str, allowed: &[usize]) -> Result<Vec<usize>, String> {
    let config = runtime_section(body).expect("valid");
    Plan::with_topology(&config, &two_node_smt(), allowed)
        .map(|plan| plan.cpus())
        .map_err(|errors| errors.to_string())
}

#[test]
fn physical_takes_one_cpu_per_core() {
    let all: Vec<usize> = (0..8).collect();
    assert_eq!(
        plan_cores("cores = \"physical\"", &all),
        Ok(vec![0, 1, 2, 3])
    );
    // The lowest-numbered CPU of each core that the rest of the selection keeps.
    assert_eq!(
        plan_cores("cores = \"4-7,physical\"", &all),
        Ok(vec![4, 5, 6, 7])
    );
    // Taking CPU 0 away after choosing leaves core A without a shard (its sibling 4 stays
    // free too, for interrupts).
    assert_eq!(
        plan_cores("cores = \"physical,^0\"", &all),
        Ok(vec![1, 2, 3])
    );
    // The affinity mask first: without CPU 1, core B runs on 5.
    assert_eq!(
        plan_cores("cores = \"physical\"", &[0, 2, 3, 4, 5, 6, 7]),
        Ok(vec![0, 2, 3, 5])
    );
}

#[test]
fn nodes_select_their_cpus() {
    let all: Vec<usize> = (0..8).collect();
    assert_eq!(plan_cores("cores = \"node1\"", &all), Ok(vec![2, 3, 6, 7]));
    assert_eq!(
        plan_cores("cores = \"node1,physical\"", &all),
        Ok(vec![2, 3])
    );
    assert_eq!(
        plan_cores("cores = \"all,^node0\"", &all),
        Ok(vec![2, 3, 6, 7])
    );
    assert_eq!(
        plan_cores("cores = \"physical\"\nexclude = \"node0\"", &all),
        Ok(vec![2, 3])
    );
}

#[test]
fn plan_errors_name_the_key_and_the_selection() {
    let all: Vec<usize> = (0..8).collect();
    assert_eq!(
        plan_cores("cores = \"node2\"", &all),
        Err(
            "t.toml:5:9: runtime.cores: NUMA node 2 does not exist on this machine (it has \
             node 0-1) (found \"node2\")"
                .into()
        )
    );
    assert_eq!(
        plan_cores("cores = \"node1\"", &[0, 1]),
        Err(
            "t.toml:5:9: runtime.cores: NUMA node 1 has no CPU this process may use (node 1 \
             is CPU 2-3,6-7; this process may use CPU 0-1) (found \"node1\")"
                .into()
        )
    );
    assert_eq!(
        plan_cores("cores = \"8-9,^1\"", &all),
        Err(
            "t.toml:5:9: runtime.cores: CPUs 8-9 are not available to this process (it may \
             use 0-7) (found \"8-9,^1\")"
                .into()
        )
    );
    assert_eq!(
        plan_cores("cores = \"0-1\"\nexclude = \"0-3\"", &all),
        Err(
            "t.toml:6:11: runtime.exclude: selects no CPU: nothing is left once CPU 0-3 are \
             taken away (this process may use CPU 0-7) (found \"0-1,^0-3\")"
                .into()
        )
    );
    assert_eq!(
        plan_cores("exclude = \"node7\"", &all),
        Err(
            "t.toml:5:11: runtime.exclude: NUMA node 7 does not exist on this machine (it \
             has node 0-1) (found \"all,^node7\")"
                .into()
        )
    );
}

#[test]
fn the_plan_shows_a_rule_it_resolved() {
    let config = runtime_section("cores = \"physical,^0\"").expect("valid");
    let plan =
        Plan::with_topology(&config, &two_node_smt(), &(0..8).collect::<Vec<_>>()).expect("plan");
    let text = plan.to_string();
    assert!(
        text.contains(
            "shards       3, pinned to CPU 1-3 (cores = \"physical,^0\"; this process may use \
             CPU 0-7)"
        ),
        "{text}"
    );
}

#[test]
fn the_plan_can_be_made_for_this_machine() {
    let plan = Plan::for_config(&valid(EXAMPLE)).expect("this process may use some CPU");
    assert!(!plan.shards.is_empty());
    assert_eq!(plan.cpus(), plan.allowed);
}

#[test]
fn the_plan_prints_what_check_shows() {
    let config = valid(EXAMPLE);
    let plan = Plan::with_cpus(&config, &[0, 1]).expect("plan");
    assert_eq!(
        plan.to_string(),
        "config       t.toml\n\
         shards       2, pinned to CPU 0-1 (this process may use CPU 0-1)\n\
         io           io_uring, 1024 entries per shard\n\
         buffers      4096 x 16 KiB = 64 MiB per shard, 128 MiB in all (reserved, touched as used)\n\
         executor     10 MiB of glommio I/O memory per shard\n\
         connections  up to 16384 clients per shard, 32768 in all\n\
         listeners    1\n  \
           public       127.0.0.1:8080         2 SO_REUSEPORT sockets (one per shard), backlog 4096\n\
         upstreams    1, 2 endpoints\n  \
           api          2 endpoints, round_robin, up to 2048 idle connections per shard\n\
         routes       2"
    );
}

// ---------------------------------------------------------------------------------------------
// tuning/

#[test]
fn every_tuning_profile_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning");
    let mut profiles: Vec<_> = std::fs::read_dir(&dir)
        .expect("tuning/ exists")
        .map(|entry| entry.expect("readable entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    profiles.sort();
    let names: Vec<String> = profiles
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for expected in [
        "edge-16core-smt.toml",
        "edge-16core.toml",
        "edge-32core.toml",
        "edge-4core.toml",
        "edge-64core-2numa.toml",
        "edge-8core.toml",
        "edge-irq-cores.toml",
        "laptop.toml",
        "quickstart.toml",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected} is missing");
    }
    for path in &profiles {
        if let Err(errors) = Config::load(path) {
            panic!("{} does not load:\n{errors}", path.display());
        }
    }
}

/// Every key of a shipped profile says what it is and why: a comment on its line, or on the
/// line above it.
#[test]
fn every_key_in_every_profile_is_commented() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning");
    let mut bare = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("tuning/ exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|ext| ext != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable profile");
        let mut previous = "";
        // Lines inside a multi-line array are its values, not keys.
        let mut open_brackets = 0i32;
        for (n, line) in text.lines().enumerate() {
            let code = line.trim();
            if open_brackets > 0 {
                open_brackets +=
                    code.matches('[').count() as i32 - code.matches(']').count() as i32;
            } else if !code.starts_with('#') && !code.starts_with('[') && code.contains('=') {
                if !line.contains('#') && !previous.trim_start().starts_with('#') {
                    bare.push(format!("{}:{}: {line}", path.display(), n + 1));
                }
                open_brackets = code.matches('[').count() as i32 - code.matches(']').count() as i32;
            }
            previous = line;
        }
    }
    assert!(
        bare.is_empty(),
        "keys without a comment:\n{}",
        bare.join("\n")
    );
}

/// Each edge profile, on the machine shape it is written for, runs the shards its comments
/// promise.
#[test]
fn each_profile_places_its_shards_on_its_shape() {
    use crate::host::{Node, Topology};
    /// `cores` physical cores of `threads` CPUs each, split evenly over `nodes` nodes, numbered
    /// as Linux numbers them: the first thread of every core, then the second ones.
    fn shape(cores: usize, threads: usize, nodes: usize) -> Topology {
        let per_node = cores / nodes;
        let core_cpus =
            |core: usize| -> Vec<usize> { (0..threads).map(|t| core + t * cores).collect() };
        Topology {
            online: (0..cores * threads).collect(),
            cores: (0..cores).map(core_cpus).collect(),
            nodes: (0..nodes)
                .map(|node| {
                    let mut cpus: Vec<usize> = (node * per_node..(node + 1) * per_node)
                        .flat_map(core_cpus)
                        .collect();
                    cpus.sort_unstable();
                    Node { id: node, cpus }
                })
                .collect(),
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning");
    let cases: [(&str, Topology, &str); 6] = [
        ("edge-4core.toml", shape(4, 1, 1), "0-3"),
        ("edge-16core.toml", shape(16, 1, 1), "1-15"),
        ("edge-16core-smt.toml", shape(8, 2, 1), "0-7"),
        ("edge-64core-2numa.toml", shape(32, 2, 2), "1-15"),
        ("edge-irq-cores.toml", shape(16, 2, 1), "4-31"),
        ("edge-32core.toml", shape(32, 1, 1), "2-31"),
    ];
    for (file, topology, expected) in cases {
        let config = Config::load(&dir.join(file)).expect("the profile loads");
        let plan = Plan::with_topology(&config, &topology, &topology.online)
            .unwrap_or_else(|errors| panic!("{file}: {errors}"));
        assert_eq!(CpuList(&plan.cpus()).to_string(), expected, "{file}");
    }
}

#[test]
fn quickstart_is_what_the_demo_expects() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning/quickstart.toml");
    let config = Config::load(&path).expect("quickstart loads");
    assert_eq!(config.runtime.cores, CoreSelection::All);
    assert_eq!(&*config.listeners[0].name, "public");
    assert_eq!(config.listeners[0].bind, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(&*config.upstreams[0].name, "demo");
    assert_eq!(
        config.upstreams[0].endpoints,
        ["127.0.0.1:8081".parse::<SocketAddr>().unwrap()]
    );
    let health = config
        .routes
        .iter()
        .find(|r| r.path == PathPattern::Exact("/healthz".into()))
        .expect("a /healthz route");
    assert_eq!(
        health.action,
        RouteAction::Respond {
            status: 200,
            body: b"ok\n".to_vec().into(),
            headers: vec![]
        }
    );
    assert!(
        config
            .routes
            .iter()
            .any(|r| r.path == PathPattern::Prefix("/".into())
                && matches!(r.action, RouteAction::Upstream { upstream: 0, .. }))
    );
}

#[test]
fn the_reference_error_example_is_what_quickstart_gives() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tuning/quickstart.toml");
    let text = std::fs::read_to_string(path).expect("quickstart is readable");
    let text = text.replace("upstream = \"demo\"", "upstream = \"demoo\"");
    let errors = Config::parse(&text, "quickstart.toml").unwrap_err();
    // The README quotes this exact line; keep the two in step.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README is readable");
    let quoted = readme
        .lines()
        .find(|line| line.starts_with("quickstart.toml:"))
        .expect("the README quotes an error for quickstart.toml");
    assert_eq!(errors.to_string(), quoted);
}

// ---------------------------------------------------------------------------------------------
// robustness

mod never_panics {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any text, however broken, gives a Config or errors, never a panic, and every error
        /// names the file.
        #[test]
        fn on_arbitrary_text(text in "\\PC{0,200}") {
            if let Err(errors) = parse(&text) {
                prop_assert!(!errors.is_empty());
                prop_assert!(errors.iter().all(|e| &*e.origin == "t.toml"));
            }
        }

        /// The example with a few bytes replaced: mostly near-valid files, which reach deep
        /// into validation.
        #[test]
        fn on_mutated_examples(
            edits in proptest::collection::vec((0..EXAMPLE.len(), "[ -~\n]"), 1..4)
        ) {
            let mut text = EXAMPLE.to_owned();
            for (at, replacement) in edits {
                let at = (0..=at.min(text.len()))
                    .rev()
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(0);
                let end = (at + 1..=text.len())
                    .find(|&i| text.is_char_boundary(i))
                    .unwrap_or(text.len());
                text.replace_range(at..end, &replacement);
            }
            if let Err(errors) = parse(&text) {
                prop_assert!(!errors.is_empty());
            }
        }
    }
}

#[test]
fn conflicting_routes_are_refused_with_the_later_line() {
    let text = format!(
        "{LISTENER}[[upstream]]\nname = \"a\"\nendpoints = [\"127.0.0.1:1\"]\n\n\
         [[route]]\nname = \"one\"\npath_prefix = \"/api/\"\nmethods = [\"GET\", \"POST\"]\nupstream = \"a\"\n\n\
         [[route]]\npath_prefix = \"/api/\"\nmethods = [\"POST\"]\nupstream = \"a\"\n"
    );
    let errors = parse(&text).unwrap_err().to_string();
    assert!(
        errors.contains(
            "route[2]: matches the same host, path and methods (POST) as \"one\" (route[1])"
        ),
        "{errors}"
    );
    let line = text.lines().position(|l| l == "[[route]]").unwrap();
    let second = text
        .lines()
        .skip(line + 1)
        .position(|l| l == "[[route]]")
        .unwrap()
        + line
        + 2;
    assert!(errors.starts_with(&format!("t.toml:{second}:")), "{errors}");
}

#[test]
fn admin_and_access_log_are_off_unless_written() {
    let config = valid(BASE);
    assert_eq!(config.admin, None);
    assert_eq!(config.access_log, None);
}

#[test]
fn admin_defaults_to_loopback_without_a_token() {
    let config = valid(&with_base("[admin]\n"));
    assert_eq!(
        config.admin,
        Some(AdminConfig {
            bind: DEFAULT_ADMIN_BIND,
            token: None
        })
    );
    let config = valid(&with_base(
        "[admin]\nbind = \"0.0.0.0:9901\"\ntoken = \"0123456789abcdef\"\n",
    ));
    let admin = config.admin.expect("admin section");
    assert_eq!(admin.bind, "0.0.0.0:9901".parse().unwrap());
    assert_eq!(admin.token.as_deref(), Some("0123456789abcdef"));
}

#[test]
fn admin_mistakes_name_their_key() {
    assert_eq!(
        error(&with_base("[admin]\nbind = \"0.0.0.0:9901\"\n")),
        "t.toml:9:8: admin.bind: an admin listener reachable from other hosts needs admin.token \
         (found \"0.0.0.0:9901\")"
    );
    assert_eq!(
        error(&with_base("[admin]\ntoken = \"short\"\n")),
        "t.toml:9:9: admin.token: must be at least 16 characters (found \"short\")"
    );
    assert_eq!(
        error(&with_base("[admin]\ntoken = \"has a space in it!\"\n")),
        "t.toml:9:9: admin.token: must be printable ASCII without spaces (it is sent in an \
         HTTP header) (found \"has a space in it!\")"
    );
    let text = "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:8080\"\n\
                [admin]\nbind = \"127.0.0.1:8080\"\n";
    assert_eq!(
        error(text),
        "t.toml:5:8: admin.bind: overlaps listener \"l\" (127.0.0.1:8080): the admin API is \
         never served on a data listener (found \"127.0.0.1:8080\")"
    );
    assert!(error(&with_base("[admin]\nbind = \"localhost:9901\"\n")).contains("admin.bind"));
}

#[test]
fn access_log_reads_every_key() {
    let config = valid(&with_base(
        "[access_log]\npath = \"/var/log/coregate.log\"\nformat = \"combined\"\n\
         buffer_size = \"8KiB\"\nflush_interval = \"250ms\"\n",
    ));
    assert_eq!(
        config.access_log,
        Some(AccessLogConfig {
            path: "/var/log/coregate.log".into(),
            format: AccessLogFormat::Combined,
            buffer_size: 8 * 1024,
            flush_interval: Duration::from_millis(250),
        })
    );
    let config = valid(&with_base("[access_log]\npath = \"a.log\"\n"));
    let log = config.access_log.expect("access_log section");
    assert_eq!(log.format, DEFAULT_ACCESS_LOG_FORMAT);
    assert_eq!(log.buffer_size, DEFAULT_ACCESS_LOG_BUFFER);
    assert_eq!(log.flush_interval, DEFAULT_ACCESS_LOG_FLUSH);
}

#[test]
fn access_log_mistakes_name_their_key() {
    assert_eq!(
        error(&with_base("[access_log]\nformat = \"json\"\n")),
        "t.toml:8:1: access_log.path: required key is missing"
    );
    assert_eq!(
        error(&with_base(
            "[access_log]\npath = \"a.log\"\nformat = \"xml\"\n"
        )),
        "t.toml:10:10: access_log.format: must be \"json\" or \"combined\" (found \"xml\")"
    );
    assert!(
        error(&with_base(
            "[access_log]\npath = \"a.log\"\nflush_interval = \"1ms\"\n"
        ))
        .starts_with("t.toml:10:18: access_log.flush_interval: must be from 10ms to 1m")
    );
}

/// Renders, loads the rendering and renders again: the effective configuration must load and
/// describe itself exactly.
fn assert_renders_to_itself(text: &str) {
    let config = valid(text);
    let rendered = config.render();
    let again = match Config::parse_with(&rendered, "rendered.toml", &FakeResolver) {
        Ok(config) => config,
        Err(errors) => panic!("the rendering does not load:\n{errors}\n---\n{rendered}"),
    };
    // The token is never written, so the rendering loads without one.
    assert_eq!(
        again.render(),
        rendered.replace("# token = (set, not shown)\n", "")
    );
}

#[test]
fn the_effective_configuration_renders_to_itself() {
    assert_renders_to_itself(EXAMPLE);
    assert_renders_to_itself(BASE);
    assert_renders_to_itself(&with_base(
        "[admin]\nbind = \"127.0.0.1:9902\"\ntoken = \"0123456789abcdef\"\n\
         [access_log]\npath = \"/tmp/a \\\"b\\\".log\"\nformat = \"combined\"\n\
         [[route]]\nname = \"r\"\nhost = \"*.example.com\"\nmethods = [\"GET\", \"POST\"]\n\
         path_prefix = \"/v1/\"\nupstream = \"api\"\nprefix_rewrite = \"/api/v1/\"\n\
         add_request_headers = { \"X-A\" = \"1\" }\nremove_response_headers = [\"server\"]\n\
         max_body_bytes = \"1MiB\"\n\
         [[route]]\npath = \"/users/{id}\"\nrespond = { status = 200, body = \"a\\tb\\n\", \
         headers = { \"Content-Type\" = \"text/plain\" } }\n",
    ));
    let rendered = valid(&with_base("[admin]\ntoken = \"0123456789abcdef\"\n")).render();
    assert!(
        !rendered.contains("0123456789abcdef"),
        "tokens are never shown"
    );
}

#[test]
fn trusted_proxies_are_prefixes() {
    let config = valid(&with_base(
        "[forwarding]\ntrusted_proxies = [\"10.0.0.0/8\", \"192.0.2.7\", \"2001:db8::/32\"]\n",
    ));
    let forwarding = &config.forwarding;
    assert!(forwarding.trusts("10.200.0.1".parse().unwrap()));
    assert!(
        forwarding.trusts("::ffff:10.1.1.1".parse().unwrap()),
        "IPv4-mapped"
    );
    assert!(forwarding.trusts("192.0.2.7".parse().unwrap()));
    assert!(!forwarding.trusts("192.0.2.8".parse().unwrap()));
    assert!(forwarding.trusts("2001:db8:1::5".parse().unwrap()));
    assert!(!forwarding.trusts("11.0.0.1".parse().unwrap()));
    assert!(!valid(BASE).forwarding.trusts("127.0.0.1".parse().unwrap()));
    assert_eq!(
        error(&with_base(
            "[forwarding]\ntrusted_proxies = [\"10.0.0.1/8\"]\n"
        )),
        "t.toml:9:20: forwarding.trusted_proxies[1]: bits are set past the prefix length; did \
         you mean \"10.0.0.0/8\"? (found \"10.0.0.1/8\")"
    );
    assert!(
        error(&with_base(
            "[forwarding]\ntrusted_proxies = [\"10.0.0.0/33\"]\n"
        ))
        .contains("the prefix length must be from 0 to 32")
    );
    assert_renders_to_itself(&with_base(
        "[forwarding]\ntrusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
    ));
}

#[test]
fn forwarding_names_what_only_a_trusted_proxy_may_send() {
    let defaults = valid(BASE).forwarding;
    assert!(
        defaults
            .drop_from_untrusted
            .iter()
            .any(|name| &**name == "x-original-url")
    );
    assert!(!defaults.forwarded_header);
    let config = valid(&with_base(
        "[forwarding]\ndrop_from_untrusted = [\"X-Real-IP\", \"CF-Connecting-IP\"]\n\
         forwarded_header = true\n",
    ));
    let names: Vec<&str> = config
        .forwarding
        .drop_from_untrusted
        .iter()
        .map(|name| &**name)
        .collect();
    assert_eq!(names, ["x-real-ip", "cf-connecting-ip"]);
    assert!(config.forwarding.forwarded_header);
    assert_eq!(
        error(&with_base(
            "[forwarding]\ndrop_from_untrusted = [\"x real ip\"]\n"
        )),
        "t.toml:9:24: forwarding.drop_from_untrusted[1]: not a valid header name (letters, \
         digits and !#$%&'*+-.^_`|~ only) (found \"x real ip\")"
    );
    assert_renders_to_itself(&with_base(
        "[forwarding]\ndrop_from_untrusted = []\nforwarded_header = true\n",
    ));
}

#[test]
fn rate_limits_read_their_keys() {
    let config = valid(&with_base(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"api\"\n\
         rate_limit = { rate = \"100/s\", burst = 50, key = \"header:X-Api-Key\" }\n\
         [[route]]\npath = \"/b\"\nupstream = \"api\"\nrate_limit = { rate = \"10/m\" }\n",
    ));
    let first = config.routes[0].rate_limit.as_ref().expect("a limit");
    assert_eq!(first.quota.rate().count(), 100);
    assert_eq!(first.quota.burst(), 50);
    assert_eq!(
        first.key,
        crate::ratelimit::KeySpec::Header("x-api-key".into())
    );
    assert_eq!(
        first.keys_per_shard,
        crate::ratelimit::DEFAULT_KEYS_PER_SHARD
    );
    let second = config.routes[1].rate_limit.as_ref().expect("a limit");
    assert_eq!(second.key, crate::ratelimit::KeySpec::default());
    assert_eq!(
        second.quota.burst(),
        crate::ratelimit::default_burst(second.quota.rate())
    );
}

#[test]
fn rate_limit_mistakes_name_their_key() {
    let route = |limit: &str| {
        with_base(&format!(
            "[[route]]\npath_prefix = \"/\"\nupstream = \"api\"\nrate_limit = {limit}\n"
        ))
    };
    assert!(
        error(&route("{ rate = \"100/sec\" }"))
            .starts_with("t.toml:11:23: route[1].rate_limit.rate:"),
        "{}",
        error(&route("{ rate = \"100/sec\" }"))
    );
    assert!(
        error(&route("{ rate = \"1/s\", key = \"identity\" }"))
            .contains("route[1].rate_limit.key: key = \"identity\" needs `auth` on the route")
    );
    assert!(error(&route("{ rate = \"1/s\", burst = 0 }")).contains("route[1].rate_limit.burst"));
    assert!(error(&route("{ rate = \"1/s\", key = \"ip\" }")).contains("route[1].rate_limit.key"));
    assert!(
        error(&route("{ burst = 5 }"))
            .contains("route[1].rate_limit.rate: required key is missing")
    );
    assert!(
        error(&route("{ rate = \"1/s\", rat = 1 }"))
            .contains("route[1].rate_limit.rat: unknown key")
    );
}

/// A key file in the temporary directory, for the tests that read one.
fn key_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("coregate-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn api_key_policies_take_inline_keys_and_key_files() {
    let file = key_file(
        "keys",
        "# partners\nglobex 0123456789abcdef0123456789abcdef\n",
    );
    let config = valid(&with_base(&format!(
        "[[auth]]\nname = \"partners\"\nkind = \"api_key\"\n\
         keys = [{{ identity = \"acme\", key = \"acme-key-0123456789\" }}]\n\
         key_file = \"{}\"\nidentity_header = \"X-Consumer\"\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"api\"\nauth = \"partners\"\n\
         rate_limit = {{ rate = \"5/s\", key = \"identity\" }}\n",
        file.display()
    )));
    let auth = &config.auth[0];
    assert_eq!(&*auth.name, "partners");
    assert_eq!(auth.identity_header.as_deref(), Some("x-consumer"));
    let AuthMethod::ApiKey(keys) = &auth.method else {
        panic!("an api key policy")
    };
    assert_eq!(
        keys.authenticate(Some(b"acme-key-0123456789"), None),
        Ok("acme")
    );
    assert_eq!(
        keys.authenticate(Some(b"0123456789abcdef0123456789abcdef"), None),
        Ok("globex")
    );
    assert_eq!(config.routes[0].auth, Some(0));
    let rendered = config.render();
    assert!(
        !rendered.contains("acme-key"),
        "keys are never shown:\n{rendered}"
    );
}

#[test]
fn auth_mistakes_name_their_key() {
    let policy = |body: &str| with_base(&format!("[[auth]]\nname = \"p\"\n{body}"));
    assert!(
        error(&policy("kind = \"basic\"\n"))
            .contains("auth[1].kind: must be \"api_key\" or \"jwt\"")
    );
    assert!(error(&policy("kind = \"api_key\"\n")).contains("needs `keys = [...]` or `key_file"));
    let misplaced = errors(&policy(
        "kind = \"api_key\"\nkeys = [{ identity = \"a\", key = \"0123456789abcdef\" }]\nissuer = \"x\"\n",
    ));
    assert!(
        misplaced
            .iter()
            .any(|e| e.contains("auth[1].issuer: does not apply to kind = \"api_key\"")),
        "{misplaced:?}"
    );
    let missing = error(&policy(
        "kind = \"jwt\"\npublic_key_file = \"/nonexistent/key.pem\"\n",
    ));
    assert!(
        missing.contains("auth[1].public_key_file: cannot read /nonexistent/key.pem"),
        "{missing}"
    );
    let bad_file = key_file("bad-keys", "alice\n");
    let bad = error(&policy(&format!(
        "kind = \"api_key\"\nkey_file = \"{}\"\n",
        bad_file.display()
    )));
    assert!(
        bad.contains("auth[1].key_file: ") && bad.contains("line 1: "),
        "{bad}"
    );
    // The headers a policy writes upstream are additions like a route's.
    let forwarding = error(&policy(
        "kind = \"api_key\"\nkeys = [{ identity = \"a\", key = \"0123456789abcdef\" }]\n\
         identity_header = \"X-Forwarded-For\"\n",
    ));
    assert!(
        forwarding.contains("auth[1].identity_header: coregate writes this header"),
        "{forwarding}"
    );
    let unknown = error(&with_base(
        "[[route]]\npath = \"/\"\nupstream = \"api\"\nauth = \"nobody\"\n",
    ));
    assert!(
        unknown.contains("route[1].auth: no [[auth]] named \"nobody\" (none is defined)"),
        "{unknown}"
    );
}

#[test]
fn jwt_policies_read_secrets_public_keys_and_rules() {
    let config = valid(&with_base(
        "[[auth]]\nname = \"users\"\nkind = \"jwt\"\n\
         secret = \"a test secret that is long enough for HS256\"\n\
         public_key_file = \"src/auth/testdata/es256-public.pem\"\n\
         issuer = \"https://issuer.test\"\naudience = \"api\"\nleeway = \"30s\"\n\
         require = [{ claim = \"scope\", contains = \"read\" }]\n\
         forward_claims = { email = \"X-User-Email\" }\nidentity_header = \"x-user\"\n",
    ));
    let auth = &config.auth[0];
    let AuthMethod::Jwt {
        claim_headers,
        cache_entries,
        ..
    } = &auth.method
    else {
        panic!("a jwt policy")
    };
    assert_eq!(claim_headers, &vec![Box::<str>::from("x-user-email")]);
    assert_eq!(*cache_entries, DEFAULT_TOKEN_CACHE_ENTRIES);
    assert_eq!(
        auth.written_headers().collect::<Vec<_>>(),
        ["x-user", "x-user-email"]
    );
    let rendered = config.render();
    assert!(
        !rendered.contains("long enough"),
        "secrets are never shown:\n{rendered}"
    );
}

// ---------------------------------------------------------------------------------------------
// TLS listeners and redirects

/// A directory with certificate files for one test, removed when dropped.
struct CertDir(std::path::PathBuf);

impl CertDir {
    fn new(name: &str) -> CertDir {
        let dir = std::env::temp_dir().join(format!("coregate-cfg-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        CertDir(dir)
    }

    /// Writes `<stem>.pem` and `<stem>.key` for `names`; returns the paths.
    fn pair(&self, stem: &str, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let owned: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(owned)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (c, k) = (
            self.0.join(format!("{stem}.pem")),
            self.0.join(format!("{stem}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c.display().to_string(), k.display().to_string())
    }

    fn parse(&self, text: &str) -> Result<Config, ConfigErrors> {
        let origin = self.0.join("t.toml");
        Config::parse_with(text, &origin.display().to_string(), &FakeResolver)
    }
}

impl Drop for CertDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_tls_listener_loads_its_certificates_relative_to_the_file() {
    let dir = CertDir::new("load");
    dir.pair("a", &["a.example"]);
    dir.pair("b", &["*.b.example"]);
    let text = "[[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\n\
                tls = { certificates = [{ cert = \"a.pem\", key = \"a.key\" }, \
                { cert = \"b.pem\", key = \"b.key\" }], unknown_name = \"refuse\" }\n";
    let config = dir.parse(text).unwrap();
    let tls = config.listeners[0].tls.as_ref().unwrap();
    assert_eq!(tls.certificates.len(), 2);
    assert_eq!(tls.unknown_name, crate::tls::UnknownName::Refuse);
    assert_eq!(tls.min_version, DEFAULT_MIN_TLS_VERSION);
    assert!(tls.covers("x.b.example") && !tls.covers("c.example"));
    // The rendered configuration names the files, never the keys.
    assert!(config.render().contains("unknown_name = \"refuse\""));
}

#[test]
fn certificate_mistakes_name_the_key_the_file_and_the_line() {
    let dir = CertDir::new("mistakes");
    dir.pair("a", &["a.example"]);
    dir.pair("other", &["a.example"]);
    std::fs::write(
        dir.0.join("bad.pem"),
        "junk\n-----BEGIN CERTIFICATE-----\n!!\n",
    )
    .unwrap();
    let text = "[[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\n\
                tls = { certificates = [{ cert = \"a.pem\", key = \"other.key\" }, \
                { cert = \"bad.pem\", key = \"a.key\" }, { cert = \"gone.pem\", key = \"a.key\" }] }\n";
    let all: Vec<String> = dir
        .parse(text)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(
        all[0].contains(":4:")
            && all[0].contains("certificates[1].key")
            && all[0].contains("other.key")
            && all[0].contains("does not match"),
        "{}",
        all[0]
    );
    assert!(
        all[1].contains("certificates[2].cert")
            && all[1].contains("bad.pem:2: ")
            && all[1].contains("no END line"),
        "{}",
        all[1]
    );
    assert!(
        all[2].contains("certificates[3].cert") && all[2].contains("cannot read"),
        "{}",
        all[2]
    );
}

#[test]
fn tls_settings_are_checked() {
    let dir = CertDir::new("settings");
    dir.pair("a", &["a.example"]);
    let text = "[runtime]\nbuffer_size = \"8KiB\"\n[limits]\nmax_head_bytes = \"4KiB\"\n\
                [[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\n\
                tls = { certificates = [], unknown_name = \"drop\", min_version = \"1.1\" }\n";
    let all: Vec<String> = dir
        .parse(text)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    let joined = all.join("\n");
    assert!(
        joined.contains("tls.unknown_name: expected \"default\" or \"refuse\""),
        "{joined}"
    );
    assert!(
        joined.contains("tls.min_version: expected \"1.2\" or \"1.3\""),
        "{joined}"
    );
    assert!(
        joined.contains("tls.certificates: at least one certificate"),
        "{joined}"
    );
    let text = "[runtime]\nbuffer_size = \"8KiB\"\n[limits]\nmax_head_bytes = \"4KiB\"\n\
                [[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\n\
                tls = { certificates = [{ cert = \"a.pem\", key = \"a.key\" }] }\n";
    let all: Vec<String> = dir
        .parse(text)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert!(
        all.iter().any(|e| e.contains(
            "t.toml:2:15: runtime.buffer_size: must be at least 16 KiB with a TLS listener"
        )),
        "{all:#?}"
    );
}

#[test]
fn certificate_changes_keep_the_listener_socket() {
    let dir = CertDir::new("same");
    dir.pair("a", &["a.example"]);
    dir.pair("b", &["b.example"]);
    let with = |stem: &str| {
        format!(
            "[[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\n\
             tls = {{ certificates = [{{ cert = \"{stem}.pem\", key = \"{stem}.key\" }}] }}\n"
        )
    };
    let a = dir.parse(&with("a")).unwrap();
    let b = dir.parse(&with("b")).unwrap();
    assert_eq!(
        a.listeners[0], b.listeners[0],
        "a certificate swap reopens nothing"
    );
    let plain = dir
        .parse("[[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\n")
        .unwrap();
    assert_ne!(
        a.listeners[0], plain.listeners[0],
        "turning TLS on or off reopens it"
    );
}

#[test]
fn redirect_https_takes_a_port() {
    let config = valid(&format!(
        "{LISTENER}[[route]]\npath_prefix = \"/\"\nrespond = {{ status = 200 }}\n\
         redirect_https = true\n[[route]]\npath_prefix = \"/b\"\nrespond = {{ status = 200 }}\n\
         redirect_https = true\nhttps_port = 8443\n"
    ));
    assert_eq!(config.routes[0].redirect_https, Some(DEFAULT_HTTPS_PORT));
    assert_eq!(config.routes[1].redirect_https, Some(8443));
    let got = error(&format!(
        "{LISTENER}[[route]]\npath_prefix = \"/\"\nrespond = {{ status = 200 }}\nhttps_port = 8443\n"
    ));
    assert!(
        got.contains("route[1].https_port: only applies with redirect_https = true"),
        "{got}"
    );
}

#[test]
fn check_warns_about_certificates_expiring_soon_and_hosts_no_certificate_covers() {
    let dir = CertDir::new("warn");
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
    let soon = std::time::SystemTime::now() + Duration::from_secs(10 * 86_400);
    params.not_after = soon.into();
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.0.join("soon.pem"), cert.pem()).unwrap();
    std::fs::write(dir.0.join("soon.key"), key.serialize_pem()).unwrap();
    dir.pair("wild", &["*.b.example"]);
    let text = "[[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\n\
         tls = { certificates = [{ cert = \"soon.pem\", key = \"soon.key\" }, \
         { cert = \"wild.pem\", key = \"wild.key\" }] }\n\
         [[route]]\nhost = \"a.example\"\npath_prefix = \"/\"\nrespond = { status = 200 }\n\
         [[route]]\nhost = \"x.b.example\"\npath_prefix = \"/\"\nrespond = { status = 200 }\n\
         [[route]]\nhost = \"other.example\"\npath_prefix = \"/\"\nrespond = { status = 200 }\n\
         [[route]]\nhost = \"*.c.example\"\npath_prefix = \"/\"\nrespond = { status = 200 }\n";
    let config = dir.parse(text).unwrap();
    let (summary, warnings) = config.tls_report();
    assert!(summary.unwrap().contains("kTLS is not used"));
    assert_eq!(warnings.len(), 3, "{warnings:#?}");
    assert!(
        warnings[0].contains("soon.pem expires on") && warnings[0].contains(" days)"),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("route host \"*.c.example\""),
        "{}",
        warnings[1]
    );
    assert!(
        warnings[2].contains("route host \"other.example\""),
        "{}",
        warnings[2]
    );
    assert_eq!(valid(LISTENER).tls_report(), (None, vec![]));
}

#[test]
fn client_certificate_settings_need_a_ca_bundle_and_name_its_mistakes() {
    let dir = CertDir::new("client");
    dir.pair("a", &["a.example"]);
    let listener = |extra: &str| {
        format!(
            "[[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:0\"\n\
             tls = {{ certificates = [{{ cert = \"a.pem\", key = \"a.key\" }}]{extra} }}\n"
        )
    };
    let config = dir
        .parse(&listener(
            ", client_ca = \"a.pem\", client_cert_header = \"X-Client\"",
        ))
        .unwrap();
    let client = config.listeners[0]
        .tls
        .as_ref()
        .unwrap()
        .client
        .as_ref()
        .unwrap();
    assert!(client.required, "required unless said otherwise");
    assert_eq!(client.header.as_deref(), Some("x-client"));
    let errors = |extra: &str| -> Vec<String> {
        dir.parse(&listener(extra))
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    };
    let all = errors(", client_auth = \"optional\"");
    assert!(
        all[0].contains("tls.client_auth: only applies with client_ca"),
        "{all:?}"
    );
    let all = errors(", client_ca = \"a.key\"");
    assert!(
        all[0].contains("tls.client_ca: ") && all[0].contains("a.key:1: a \"PRIVATE KEY\" block"),
        "{all:?}"
    );
    let all = errors(", client_ca = \"a.pem\", client_auth = \"sometimes\"");
    assert!(
        all[0].contains("expected \"required\" or \"optional\""),
        "{all:?}"
    );
    let all = errors(", client_ca = \"a.pem\", client_cert_header = \"Host\"");
    assert!(all[0].contains("tls.client_cert_header"), "{all:?}");
}

#[test]
fn upstream_tls_settings_are_checked() {
    let dir = CertDir::new("upstream");
    dir.pair("ca", &["ca.example"]);
    let upstream = |tls: &str| {
        format!(
            "{LISTENER}[[upstream]]\nname = \"up\"\nendpoints = [\"10.0.0.1:443\"]\ntls = {{ {tls} }}\n\
             [[route]]\npath_prefix = \"/\"\nupstream = \"up\"\n"
        )
    };
    let config = dir
        .parse(&upstream("sni = \"api.internal\", ca = \"ca.pem\""))
        .unwrap();
    let tls = config.upstreams[0].tls.as_ref().unwrap();
    assert!(tls.verify);
    assert_eq!(tls.sni.as_ref().unwrap().to_str(), "api.internal");
    assert!(
        config
            .render()
            .contains("tls = { sni = \"api.internal\", ca = ")
    );
    let no_ca = dir.parse(&upstream("verify = false")).unwrap();
    assert!(!no_ca.upstreams[0].tls.as_ref().unwrap().verify);
    assert_ne!(
        no_ca.upstreams[0].tls.as_ref().unwrap().pool_key,
        tls.pool_key,
        "different settings, different pools"
    );
    let errors = |tls: &str| -> String {
        dir.parse(&upstream(tls))
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(errors("sni = \"x.test\"").contains("upstream[1].tls.ca: required with verify = true"));
    assert!(errors("sni = \"10.0.0.1\", verify = false").contains("tls.sni: expected a DNS name"));
    assert!(errors("verify = false, cert = \"ca.pem\"").contains("cert and key go together"));
    assert!(errors("ca = \"ca.key\"").contains("tls.ca: "));
}
