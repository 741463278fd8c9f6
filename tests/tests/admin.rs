//! The admin API end to end: health and readiness, the effective configuration, reloads, the
//! bearer token, and `/metrics` parsed with a Prometheus text parser, its counts checked against
//! the traffic the test sent.

use std::collections::HashMap;
use std::sync::Arc;

use coregate_tests::client::Client;
use coregate_tests::harness::{ConfigFile, Coregate, MECHANISMS, admin, config};
use coregate_tests::upstream::{Recorded, Reply, Upstream, ok};

const TOKEN: &str = "admin-token-0123456789";

fn routes_and_admin() -> String {
    format!(
        r#"
[admin]
bind = "127.0.0.1:0"
token = "{TOKEN}"

[[route]]
name = "api"
path_prefix = "/api/"
upstream = "up"

[[route]]
name = "health"
path = "/healthz"
respond = {{ status = 200, body = "ok" }}
"#
    )
}

/// The samples of one metric, by their labels written `k=v,k=v` (sorted).
fn samples(scrape: &prometheus_parse::Scrape, metric: &str) -> HashMap<String, f64> {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .map(|sample| {
            let mut labels: Vec<String> = sample
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            labels.sort();
            let value = match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            };
            (labels.join(","), value)
        })
        .collect()
}

fn sum(scrape: &prometheus_parse::Scrape, metric: &str) -> f64 {
    samples(scrape, metric).values().sum()
}

fn scrape(addr: std::net::SocketAddr) -> prometheus_parse::Scrape {
    let reply = admin(addr, "GET", "/metrics", Some(TOKEN));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(
        reply
            .head
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        reply.head
    );
    let lines = reply.body.lines().map(|line| Ok(line.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text")
}

#[test]
fn metrics_count_the_traffic_that_was_sent() {
    for io in MECHANISMS {
        let upstream = Upstream::start(Arc::new(|_: &Recorded| Reply::Raw(ok(b"from upstream"))));
        let proxy = Coregate::start(&config(io, "0-1", upstream.addr(), &routes_and_admin()));
        let admin_addr = proxy.admin_addr();

        let mut client = Client::connect(proxy.addr());
        for i in 0..5 {
            assert_eq!(client.get(&format!("/api/{i}"), &[]).status, 200);
        }
        for _ in 0..3 {
            assert_eq!(client.get("/healthz", &[]).status, 200);
        }
        for _ in 0..2 {
            assert_eq!(client.get("/nothing", &[]).status, 404);
        }
        let mut bad = Client::connect(proxy.addr());
        bad.send(b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n");
        assert_eq!(bad.read_response(false).expect("an answer").status, 400);

        let metrics = scrape(admin_addr);
        let routes = samples(&metrics, "coregate_route_responses_total");
        assert_eq!(routes["class=2xx,route=api"], 5.0, "{io}: {routes:?}");
        assert_eq!(routes["class=2xx,route=health"], 3.0, "{io}");
        assert_eq!(routes["class=5xx,route=api"], 0.0, "{io}");
        let rejected = samples(&metrics, "coregate_rejected_total");
        assert_eq!(rejected["reason=no_route"], 2.0, "{io}");
        assert_eq!(rejected["reason=bad_request"], 1.0, "{io}");
        assert_eq!(sum(&metrics, "coregate_requests_total"), 11.0, "{io}");
        let by_class = samples(&metrics, "coregate_responses_total");
        let class = |c: &str| -> f64 {
            by_class
                .iter()
                .filter(|(labels, _)| labels.starts_with(&format!("class={c}")))
                .map(|(_, v)| v)
                .sum()
        };
        assert_eq!((class("2xx"), class("4xx")), (8.0, 3.0), "{io}");
        let latency = metrics
            .samples
            .iter()
            .find(|sample| sample.metric == "coregate_request_duration_seconds")
            .expect("the latency histogram");
        match &latency.value {
            prometheus_parse::Value::Histogram(buckets) => {
                let inf = buckets.last().expect("buckets");
                assert_eq!(inf.count, 11.0, "{io}: every response is in the histogram");
                assert!(buckets.windows(2).all(|w| w[0].count <= w[1].count));
            }
            other => panic!("{io}: not a histogram: {other:?}"),
        }
        let endpoint = format!("endpoint={},upstream=up", upstream.addr());
        assert_eq!(
            samples(&metrics, "coregate_upstream_connects_total")[&endpoint],
            1.0,
            "{io}"
        );
        assert_eq!(
            samples(&metrics, "coregate_upstream_reuses_total")[&endpoint],
            4.0,
            "{io}"
        );
        assert_eq!(
            samples(&metrics, "coregate_upstream_idle_connections")[&endpoint],
            1.0,
            "{io}"
        );
        assert_eq!(
            samples(&metrics, "coregate_upstream_active_connections")[&endpoint],
            0.0,
            "{io}"
        );
        let generations = samples(&metrics, "coregate_config_generation");
        assert_eq!(generations.len(), 2, "{io}: one per shard");
        assert!(generations.values().all(|&g| g == 1.0), "{io}");
        assert_eq!(sum(&metrics, "coregate_shards_reporting"), 2.0, "{io}");
        // `client` is still open; `bad` was closed by coregate after its 400.
        assert!(
            sum(&metrics, "coregate_client_connections_open") >= 1.0,
            "{io}"
        );
        assert_eq!(
            sum(&metrics, "coregate_client_connections_accepted_total"),
            2.0,
            "{io}"
        );
    }
}

#[test]
fn endpoints_answer_and_the_token_guards_them() {
    let upstream = Upstream::start(Arc::new(|_: &Recorded| Reply::Raw(ok(b"x"))));
    let file = ConfigFile::new(&config(
        "uring",
        "0-1",
        upstream.addr(),
        &routes_and_admin(),
    ));
    let proxy = Coregate::start_file(file.path());
    let addr = proxy.admin_addr();

    let health = admin(addr, "GET", "/healthz", None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let ready = admin(addr, "GET", "/readyz", None);
    assert_eq!(ready.status, 200);
    assert!(
        ready.body.starts_with("ready: generation 1\n"),
        "{}",
        ready.body
    );

    for path in ["/metrics", "/config"] {
        let refused = admin(addr, "GET", path, None);
        assert_eq!(refused.status, 401, "{path}");
        assert!(refused.head.contains("www-authenticate: Bearer"), "{path}");
        assert_eq!(
            admin(addr, "GET", path, Some("wrong-token-0123456789")).status,
            401
        );
    }
    assert_eq!(admin(addr, "POST", "/reload", None).status, 401);
    let wrong_method = admin(addr, "GET", "/reload", Some(TOKEN));
    assert_eq!(wrong_method.status, 405);
    assert!(
        wrong_method.head.contains("allow: POST"),
        "{}",
        wrong_method.head
    );
    assert_eq!(admin(addr, "GET", "/nope", Some(TOKEN)).status, 404);

    // The effective configuration: valid TOML, every default filled in, no token.
    let shown = admin(addr, "GET", "/config", Some(TOKEN));
    assert_eq!(shown.status, 200);
    assert!(
        shown.body.contains("# shard 0 (cpu 0): generation 1"),
        "{}",
        shown.body
    );
    assert!(
        shown.body.contains("# shard 1 (cpu 1): generation 1"),
        "{}",
        shown.body
    );
    assert!(!shown.body.contains(TOKEN), "the token is never shown");
    let parsed: toml::Table = shown.body.parse().expect("the configuration is TOML");
    assert_eq!(parsed["timeouts"]["keepalive"].as_str(), Some("1m"));
    assert_eq!(parsed["route"][0]["name"].as_str(), Some("api"));

    // Reload through the API: a bad file is refused with its line, a good one applies.
    file.write(
        &config("uring", "0-1", upstream.addr(), &routes_and_admin())
            .replace("upstream = \"up\"", "upstream = \"down\""),
    );
    let refused = admin(addr, "POST", "/reload", Some(TOKEN));
    assert_eq!(refused.status, 400, "{}", refused.body);
    let origin = file.path().display().to_string();
    assert!(
        refused.body.contains(&format!("{origin}:"))
            && refused.body.contains("no upstream named \"down\""),
        "{}",
        refused.body
    );
    file.write(&config(
        "uring",
        "0-1",
        upstream.addr(),
        &routes_and_admin(),
    ));
    let reloaded = admin(addr, "POST", "/reload", Some(TOKEN));
    assert_eq!(reloaded.status, 200, "{}", reloaded.body);
    assert_eq!(
        reloaded.body,
        "reloaded: generation 2 runs on all 2 shard(s)\n"
    );
    let ready = admin(addr, "GET", "/readyz", None);
    assert!(
        ready.body.starts_with("ready: generation 2\n"),
        "{}",
        ready.body
    );
}

#[test]
fn the_admin_listener_is_not_a_data_listener() {
    let upstream = Upstream::start(Arc::new(|_: &Recorded| Reply::Raw(ok(b"x"))));
    let proxy = Coregate::start(&config("uring", "0", upstream.addr(), &routes_and_admin()));
    // Data requests on the admin port are not proxied.
    let reply = admin(proxy.admin_addr(), "GET", "/api/x", Some(TOKEN));
    assert_eq!(reply.status, 404);
    assert_eq!(upstream.requests().len(), 0);
    // And admin paths on the data port are just routes (here: none).
    assert_eq!(
        Client::connect(proxy.addr()).get("/metrics", &[]).status,
        404
    );
}
