//! Upstream resilience end to end, with fault-injecting upstreams: what the client sees, what
//! each endpoint receives, and how fast coregate routes around a failure.
//!
//! Default configuration unless a test says otherwise: the defaults must at least do what NGINX
//! does with none (a refused connect tried on the next endpoint, a failed endpoint out of
//! rotation for a while).

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use coregate_tests::client::Client;
use coregate_tests::harness::{Coregate, FORWARD_ALL, admin, config_with_upstreams};
use coregate_tests::upstream::{Recorded, Reply, Upstream, ok};

/// An upstream that answers every request at once with a small body.
fn fast() -> coregate_tests::upstream::Behavior {
    Arc::new(|_: &Recorded| Reply::Raw(ok(b"ok")))
}

/// An address nothing listens on (connects are refused).
fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// coregate on `cores` in front of one upstream "up" with these endpoints; `upstream_extra` is
/// added to the upstream's table, `extra` after it (routes default to forwarding everything).
fn proxy(cores: &str, endpoints: &[SocketAddr], upstream_extra: &str, extra: &str) -> Coregate {
    let list: Vec<String> = endpoints.iter().map(|a| format!("\"{a}\"")).collect();
    let upstreams = format!(
        "[[upstream]]\nname = \"up\"\nendpoints = [{}]\n{upstream_extra}\n",
        list.join(", ")
    );
    let extra = if extra.contains("[[route]]") {
        extra.to_owned()
    } else {
        format!("{extra}\n{FORWARD_ALL}")
    };
    Coregate::start(&config_with_upstreams("uring", cores, &upstreams, &extra))
}

/// The scenario, shortened from 6 s to 3 s with the same shape: three endpoints,
/// eight keep-alive clients, one endpoint killed after a third of the run, default settings.
/// NGINX failed none of its requests; coregate must fail none later than a second after the
/// kill and under 0.5% overall.
#[test]
fn killing_one_of_three_endpoints_under_load_fails_nothing_a_second_later() {
    let upstreams: Vec<Upstream> = (0..3).map(|_| Upstream::start(fast())).collect();
    let addrs: Vec<SocketAddr> = upstreams.iter().map(Upstream::addr).collect();
    let proxy = proxy("0-1", &addrs, "", "");
    let started = Instant::now();
    let end = started + Duration::from_secs(3);
    let outcomes: Arc<Mutex<Vec<(Instant, bool)>>> = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let outcomes = outcomes.clone();
            let addr = proxy.addr();
            thread::spawn(move || {
                let mut client = Client::connect(addr);
                while Instant::now() < end {
                    client.send(b"GET /item HTTP/1.1\r\nhost: test\r\n\r\n");
                    let response = client.read_response(false);
                    let fine = response.as_ref().is_some_and(|r| r.status == 200);
                    outcomes.lock().unwrap().push((Instant::now(), fine));
                    let closing = response
                        .as_ref()
                        .is_none_or(|r| r.field("connection") == Some("close"));
                    if closing {
                        client = Client::connect(addr);
                    }
                    // Paced, as real clients are: about 800 requests a second in all.
                    thread::sleep(Duration::from_millis(10));
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_secs(1));
    let before_kill = upstreams[1].requests().len();
    upstreams[1].kill();
    let killed_at = Instant::now();
    for client in clients {
        client.join().unwrap();
    }
    let outcomes = outcomes.lock().unwrap();
    let failed: Vec<Duration> = outcomes
        .iter()
        .filter(|(_, fine)| !fine)
        .map(|(at, _)| at.saturating_duration_since(killed_at))
        .collect();
    let total = outcomes.len();
    let late = failed
        .iter()
        .filter(|after| **after > Duration::from_secs(1))
        .count();
    eprintln!("{total} requests, {} failed: {failed:?}", failed.len());
    assert!(total > 1_000, "the clients kept going ({total} requests)");
    assert!(
        before_kill > 100,
        "the killed endpoint served before ({before_kill})"
    );
    assert_eq!(
        late, 0,
        "failed more than a second after the kill: {failed:?}"
    );
    assert!(
        (failed.len() as f64) < total as f64 * 0.005,
        "{} of {total} failed",
        failed.len()
    );
    // Every answered request was served by an endpoint: the killed one (before the kill) or
    // the two survivors.
    let served: usize = upstreams.iter().map(|u| u.requests().len()).sum();
    assert!(
        served >= total - failed.len(),
        "{served} served, {total} requests"
    );
}

/// Nothing was sent on a connect that failed, so it is tried on the next endpoint whatever
/// the method, body included.
#[test]
fn a_refused_connect_is_tried_on_another_endpoint_whatever_the_method() {
    let alive = Upstream::start(Arc::new(|req: &Recorded| {
        Reply::Raw(ok(format!("{} {}", req.method, req.body.len()).as_bytes()))
    }));
    // Consecutive failures are not counted here, so the dead endpoint stays in rotation and
    // every other request meets it.
    let proxy = proxy(
        "0",
        &[closed_port(), alive.addr()],
        "[upstream.outlier]\nconsecutive_failures = 0\n",
        "",
    );
    let mut client = Client::connect(proxy.addr());
    for i in 0..6 {
        let body = "x".repeat(100 + i);
        let request = format!(
            "POST /orders HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        client.send(request.as_bytes());
        let response = client.read_response(false).expect("an answer");
        assert_eq!(response.status, 200, "attempt {i}");
        assert_eq!(response.body_text(), format!("POST {}", 100 + i));
    }
    assert_eq!(
        alive.requests().len(),
        6,
        "each POST reached the live endpoint once"
    );
}

/// One failed connect takes the endpoint out of rotation (NGINX's `max_fails=1`) on every
/// shard, through the control plane, within 100 ms; the shard that saw it never asked the
/// others anything.
#[test]
fn an_ejection_reaches_every_shard_within_100_ms() {
    let alive: Vec<Upstream> = (0..2).map(|_| Upstream::start(fast())).collect();
    let dead = closed_port();
    let proxy = proxy(
        "0-1",
        &[dead, alive[0].addr(), alive[1].addr()],
        "",
        "[admin]\nbind = \"127.0.0.1:0\"\n",
    );
    // One connection lands on one shard; three requests meet every endpoint there.
    let mut client = Client::connect(proxy.addr());
    for _ in 0..3 {
        assert_eq!(client.get("/", &[]).status, 200);
    }
    let seen = Instant::now();
    let dead_text = dead.to_string();
    loop {
        let reply = admin(proxy.admin_addr(), "GET", "/upstreams", None);
        assert_eq!(reply.status, 200);
        let view: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
        let states: Vec<&str> = view["shards"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|shard| shard["upstreams"][0]["endpoints"].as_array().unwrap())
            .filter(|e| e["address"] == dead_text.as_str())
            .map(|e| e["state"].as_str().unwrap())
            .collect();
        assert_eq!(states.len(), 2, "two shards report: {}", reply.body);
        if states.iter().all(|s| *s == "ejected") {
            eprintln!("every shard saw the ejection within {:?}", seen.elapsed());
            break;
        }
        assert!(
            seen.elapsed() < Duration::from_millis(100),
            "not every shard ejected it within 100 ms: {}",
            reply.body
        );
    }
    // Only one shard's outcomes ejected it.
    let metrics = admin(proxy.admin_addr(), "GET", "/metrics", None).body;
    let line =
        format!("coregate_upstream_ejections_total{{upstream=\"up\",endpoint=\"{dead}\"}} 1");
    assert!(metrics.contains(&line), "{metrics}");
}

/// An ejection ends by itself after `base_ejection_time`; the endpoint then gets requests
/// again.
#[test]
fn an_ejected_endpoint_returns_when_its_ejection_ends() {
    let first = Upstream::start(fast());
    let second = Upstream::start(fast());
    let addr = first.addr();
    let proxy = proxy(
        "0",
        &[addr, second.addr()],
        "[upstream.outlier]\nbase_ejection_time = \"300ms\"\n",
        "",
    );
    first.kill();
    let mut client = Client::connect(proxy.addr());
    for _ in 0..4 {
        assert_eq!(client.get("/", &[]).status, 200);
    }
    let back = Upstream::start_at(addr, fast());
    let restarted = Instant::now();
    while back.requests().is_empty() {
        assert_eq!(client.get("/", &[]).status, 200);
        assert!(
            restarted.elapsed() < Duration::from_secs(2),
            "the endpoint did not return"
        );
        thread::sleep(Duration::from_millis(20));
    }
    assert!(
        restarted.elapsed() >= Duration::from_millis(200),
        "not before its ejection ended"
    );
}

/// A fresh connection reset before any response byte is retried elsewhere for an idempotent
/// request (NGINX's `error`); a POST is answered 502, since the upstream may have acted on it.
#[test]
fn a_reset_before_any_byte_is_retried_for_idempotent_requests_only() {
    let resets = Upstream::start(Arc::new(|_: &Recorded| Reply::Reset));
    let fine = Upstream::start(fast());
    let proxy = proxy(
        "0",
        &[resets.addr(), fine.addr()],
        "[upstream.outlier]\nconsecutive_failures = 0\n",
        "",
    );
    let mut client = Client::connect(proxy.addr());
    // The rotation starts at the resetting endpoint.
    client.send(b"POST /pay HTTP/1.1\r\nhost: test\r\ncontent-length: 2\r\n\r\nhi");
    assert_eq!(client.read_response(false).unwrap().status, 502);
    let mut client = Client::connect(proxy.addr());
    for _ in 0..4 {
        assert_eq!(client.get("/", &[]).status, 200);
    }
    // A retry moves the rotation on: each GET first meets the resetting endpoint but one.
    assert_eq!(resets.requests().len(), 4, "the POST and three GETs met it");
    assert_eq!(
        fine.requests().len(),
        4,
        "every GET was answered by the other"
    );
}

/// A pooled connection found closed before any response byte is replaced by a *fresh*
/// connection to the same endpoint. Before: the replacement took the next pooled connection,
/// which an endpoint that had just restarted (or crashed under load) had closed too, and the
/// second stale connection ended the request with 502: two of 3,000 requests in the second a
/// `bench/failover.sh --rate 3000` endpoint was killed.
#[test]
fn a_stale_pooled_connection_is_replaced_by_a_fresh_one() {
    // Each connection's first request is answered (slowly, so two connections are opened and
    // pooled); any later request on it is read and the connection closed unanswered.
    let seen: Arc<Mutex<std::collections::HashMap<usize, usize>>> = Arc::default();
    let upstream = Upstream::start(Arc::new(move |request: &Recorded| {
        let mut seen = seen.lock().unwrap();
        let count = seen.entry(request.connection).or_insert(0);
        *count += 1;
        if *count == 1 {
            Reply::Delayed(Duration::from_millis(200), ok(b"ok"))
        } else {
            Reply::Close
        }
    }));
    let proxy = proxy("0", &[upstream.addr()], "", "");
    let warm: Vec<_> = (0..2)
        .map(|_| {
            let addr = proxy.addr();
            thread::spawn(move || Client::connect(addr).get("/warm", &[]).status)
        })
        .collect();
    for client in warm {
        assert_eq!(client.join().unwrap(), 200);
    }
    assert_eq!(upstream.connections(), 2, "both first requests overlapped");
    let mut client = Client::connect(proxy.addr());
    let response = client.get("/after", &[]);
    assert_eq!((response.status, response.body_text()), (200, "ok".into()));
    // The pooled connection met the close; the replacement was a third connection.
    let after: Vec<usize> = upstream
        .requests()
        .iter()
        .filter(|r| r.target == "/after")
        .map(|r| r.connection)
        .collect();
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(after[0] < 2, "first on a pooled connection: {after:?}");
    assert_eq!(after[1], 2, "then on a fresh one: {after:?}");
}

/// `502`/`503`/`504` from an upstream are passed on by default, as NGINX does; a route that
/// lists them has them retried on another endpoint.
#[test]
fn listed_statuses_are_retried_elsewhere() {
    let unavailable = Upstream::start(Arc::new(|_: &Recorded| {
        Reply::Raw(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec())
    }));
    let fine = Upstream::start(fast());
    let endpoints = [unavailable.addr(), fine.addr()];
    let outlier = "[upstream.outlier]\nconsecutive_5xx = 0\n";
    let plain = proxy("0", &endpoints, outlier, "");
    let mut client = Client::connect(plain.addr());
    let statuses: Vec<u16> = (0..2).map(|_| client.get("/", &[]).status).collect();
    assert_eq!(statuses, vec![503, 200], "passed on");
    drop(plain);
    let retrying = proxy(
        "0",
        &endpoints,
        outlier,
        "[[route]]\npath_prefix = \"/\"\nupstream = \"up\"\nretry = { on = [\"503\"] }\n",
    );
    let mut client = Client::connect(retrying.addr());
    for _ in 0..4 {
        let response = client.get("/", &[]);
        assert_eq!((response.status, response.body_text()), (200, "ok".into()));
    }
}

/// With every endpoint out and panic mode off, requests get `503` with `Retry-After` saying
/// when the first ejection ends, counted as `no_endpoint`.
#[test]
fn no_endpoint_left_is_503_with_retry_after() {
    let proxy = proxy(
        "0",
        &[closed_port()],
        "panic_threshold = 0\n",
        "[admin]\nbind = \"127.0.0.1:0\"\n",
    );
    let mut client = Client::connect(proxy.addr());
    assert_eq!(
        client.get("/", &[]).status,
        502,
        "the failed connect itself"
    );
    let response = client.get("/", &[]);
    assert_eq!(response.status, 503);
    let retry_after: u64 = response.field("retry-after").unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry_after), "{retry_after}");
    let metrics = admin(proxy.admin_addr(), "GET", "/metrics", None).body;
    assert!(
        metrics.contains("coregate_rejected_total{reason=\"no_endpoint\"} 1"),
        "{metrics}"
    );
}

/// With the default panic threshold, a single endpoint that failed still gets requests: a
/// proxy with nothing else to try does not refuse on its own account.
#[test]
fn a_lone_failed_endpoint_is_still_tried_in_panic_mode() {
    let upstream = Upstream::start(fast());
    let addr = upstream.addr();
    let proxy = proxy("0", &[addr], "", "");
    upstream.kill();
    let mut client = Client::connect(proxy.addr());
    assert_eq!(client.get("/", &[]).status, 502);
    let back = Upstream::start_at(addr, fast());
    assert_eq!(
        client.get("/", &[]).status,
        200,
        "tried at once, not refused"
    );
    assert_eq!(back.requests().len(), 1);
}

/// Retries are counted by the failure they follow. A retry moves the rotation on, so with the
/// dead endpoint kept in rotation every request meets it first.
#[test]
fn retries_are_counted_by_reason() {
    static SEEN: AtomicUsize = AtomicUsize::new(0);
    let fine = Upstream::start(Arc::new(|_: &Recorded| {
        SEEN.fetch_add(1, Ordering::SeqCst);
        Reply::Raw(ok(b"ok"))
    }));
    let proxy = proxy(
        "0",
        &[closed_port(), fine.addr()],
        "[upstream.outlier]\nconsecutive_failures = 0\n",
        "[admin]\nbind = \"127.0.0.1:0\"\n",
    );
    let mut client = Client::connect(proxy.addr());
    for _ in 0..4 {
        assert_eq!(client.get("/", &[]).status, 200);
    }
    assert_eq!(SEEN.load(Ordering::SeqCst), 4);
    let metrics = admin(proxy.admin_addr(), "GET", "/metrics", None).body;
    assert!(
        metrics.contains("coregate_upstream_retries_by_reason_total{reason=\"connect_failure\"} 4"),
        "{metrics}"
    );
}

/// Weights shape the rotation: 3 to 1 gives three requests in four to the first endpoint,
/// spread out rather than in a burst.
#[test]
fn weights_share_the_rotation() {
    let heavy = Upstream::start(fast());
    let light = Upstream::start(fast());
    let upstreams = format!(
        "[[upstream]]\nname = \"up\"\nendpoints = [{{ address = \"{}\", weight = 3 }}, \"{}\"]\n",
        heavy.addr(),
        light.addr()
    );
    let proxy = Coregate::start(&config_with_upstreams(
        "uring",
        "0",
        &upstreams,
        FORWARD_ALL,
    ));
    let mut client = Client::connect(proxy.addr());
    for _ in 0..40 {
        assert_eq!(client.get("/", &[]).status, 200);
    }
    assert_eq!((heavy.requests().len(), light.requests().len()), (30, 10));
}

/// `ring_hash` and `maglev` on a header: every request of a user lands on the same endpoint,
/// and the users spread over all of them.
#[test]
fn hashing_on_a_header_keeps_each_user_on_one_endpoint() {
    for balance in ["ring_hash", "maglev"] {
        let upstreams: Vec<Upstream> = (0..3).map(|_| Upstream::start(fast())).collect();
        let addrs: Vec<SocketAddr> = upstreams.iter().map(Upstream::addr).collect();
        let proxy = proxy(
            "0",
            &addrs,
            &format!("balance = \"{balance}\"\nhash_on = \"header:x-user\"\n"),
            "",
        );
        let mut client = Client::connect(proxy.addr());
        let mut homes = Vec::new();
        for user in 0..30 {
            let header = format!("x-user: user-{user}");
            for _ in 0..3 {
                assert_eq!(client.get("/", &[&header]).status, 200);
            }
            let home: Vec<usize> = upstreams
                .iter()
                .map(|u| {
                    u.requests()
                        .iter()
                        .filter(|r| r.field("x-user") == Some(&format!("user-{user}")))
                        .count()
                })
                .collect();
            assert!(home.contains(&3), "{balance}: user-{user} split: {home:?}");
            homes.push(home.iter().position(|&n| n == 3).unwrap());
        }
        for endpoint in 0..3 {
            assert!(
                homes.contains(&endpoint),
                "{balance}: no user on endpoint {endpoint}: {homes:?}"
            );
        }
    }
}

/// One endpoint of three answers 20 ms slower: `least_request` sends it a smaller share than
/// `round_robin` does (its requests stay in flight longer, so two draws rarely prefer it), and
/// the clients' p99 drops. Eight clients, 600 requests, one shard; the counts are printed.
#[test]
fn least_request_shifts_load_off_a_slow_endpoint() {
    let mut shares = Vec::new();
    for balance in ["round_robin", "least_request"] {
        let slow = Upstream::start(Arc::new(|_: &Recorded| {
            Reply::Delayed(Duration::from_millis(20), ok(b"slow"))
        }));
        let fast_ones: Vec<Upstream> = (0..2).map(|_| Upstream::start(fast())).collect();
        let addrs = [slow.addr(), fast_ones[0].addr(), fast_ones[1].addr()];
        let proxy = proxy("0", &addrs, &format!("balance = \"{balance}\"\n"), "");
        let latencies: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
        let clients: Vec<_> = (0..8)
            .map(|_| {
                let addr = proxy.addr();
                let latencies = latencies.clone();
                thread::spawn(move || {
                    let mut client = Client::connect(addr);
                    for _ in 0..75 {
                        let started = Instant::now();
                        assert_eq!(client.get("/", &[]).status, 200);
                        latencies.lock().unwrap().push(started.elapsed());
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().unwrap();
        }
        let mut latencies = latencies.lock().unwrap().clone();
        latencies.sort();
        let p99 = latencies[latencies.len() * 99 / 100];
        let p90 = latencies[latencies.len() * 90 / 100];
        let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
        let counts = [
            slow.requests().len(),
            fast_ones[0].requests().len(),
            fast_ones[1].requests().len(),
        ];
        eprintln!(
            "{balance}: requests per endpoint (slow first) {counts:?}, mean {mean:?}, \
             p90 {p90:?}, p99 {p99:?}"
        );
        shares.push(counts[0] as f64 / 600.0);
    }
    assert!((0.30..0.37).contains(&shares[0]), "round_robin: {shares:?}");
    assert!(
        shares[1] < shares[0] * 0.6,
        "least_request gave the slow endpoint {:.2}, round_robin {:.2}",
        shares[1],
        shares[0]
    );
}

/// The endpoint states of upstream "up" on every shard, from the admin API.
fn states(proxy: &Coregate, endpoint: SocketAddr) -> Vec<String> {
    let reply = admin(proxy.admin_addr(), "GET", "/upstreams", None);
    let view: serde_json::Value = serde_json::from_str(&reply.body).unwrap();
    view["shards"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|shard| shard["upstreams"][0]["endpoints"].as_array().unwrap())
        .filter(|e| e["address"] == endpoint.to_string().as_str())
        .map(|e| e["state"].as_str().unwrap().to_owned())
        .collect()
}

/// Polls the admin API until every shard sees `endpoint` in `state`; fails after `within`.
fn wait_for_state(proxy: &Coregate, endpoint: SocketAddr, state: &str, within: Duration) {
    let started = Instant::now();
    loop {
        let now = states(proxy, endpoint);
        if !now.is_empty() && now.iter().all(|s| s == state) {
            return;
        }
        assert!(
            started.elapsed() < within,
            "{endpoint} not {state} on every shard within {within:?}: {now:?}"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// Active checks run from the control plane, once per endpoint (not once per shard): `fall`
/// failures take an endpoint down on every shard within an interval of the last one, `rise`
/// passes bring it back; meanwhile no request goes to it.
#[test]
fn active_checks_take_an_endpoint_down_and_bring_it_back() {
    let sick = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let checks = Arc::new(AtomicUsize::new(0));
    let (sick_flag, check_count) = (sick.clone(), checks.clone());
    let flaky = Upstream::start(Arc::new(move |req: &Recorded| {
        if req.target == "/healthz" {
            check_count.fetch_add(1, Ordering::SeqCst);
            if sick_flag.load(Ordering::SeqCst) {
                return Reply::Raw(
                    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec(),
                );
            }
        }
        Reply::Raw(ok(b"ok"))
    }));
    let fine = Upstream::start(fast());
    let started = Instant::now();
    let proxy = proxy(
        "0-1",
        &[flaky.addr(), fine.addr()],
        "[upstream.health_check]\npath = \"/healthz\"\ninterval = \"100ms\"\nrise = 2\nfall = 2\n",
        "[admin]\nbind = \"127.0.0.1:0\"\n",
    );
    // Two failed checks, 100 ms apart, the first within the first interval.
    wait_for_state(&proxy, flaky.addr(), "down", Duration::from_millis(600));
    let served_before = flaky
        .requests()
        .iter()
        .filter(|r| r.target != "/healthz")
        .count();
    let mut client = Client::connect(proxy.addr());
    for _ in 0..6 {
        assert_eq!(client.get("/work", &[]).status, 200);
    }
    let served = |u: &Upstream| u.requests().iter().filter(|r| r.target == "/work").count();
    assert_eq!(
        served(&flaky),
        served_before,
        "nothing sent to a down endpoint"
    );
    assert_eq!(served(&fine), 6);
    sick.store(false, Ordering::SeqCst);
    wait_for_state(&proxy, flaky.addr(), "serving", Duration::from_millis(600));
    for _ in 0..6 {
        assert_eq!(client.get("/work", &[]).status, 200);
    }
    assert_eq!(served(&flaky), 3, "back in the rotation");
    // One check per interval for the whole process, not one per shard (two shards here).
    let intervals = started.elapsed().as_millis() as usize / 100 + 1;
    let made = checks.load(Ordering::SeqCst);
    assert!(made <= intervals, "{made} checks in {intervals} intervals");
}

/// Five 5xx in a row eject an endpoint (Envoy's `consecutive_5xx`), on every shard.
#[test]
fn consecutive_5xx_eject_an_endpoint() {
    let failing = Upstream::start(Arc::new(|_: &Recorded| {
        Reply::Raw(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n".to_vec())
    }));
    let fine = Upstream::start(fast());
    let proxy = proxy(
        "0",
        &[failing.addr(), fine.addr()],
        "",
        "[admin]\nbind = \"127.0.0.1:0\"\n",
    );
    let mut client = Client::connect(proxy.addr());
    let statuses: Vec<u16> = (0..14).map(|_| client.get("/", &[]).status).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 500).count(),
        5,
        "{statuses:?}"
    );
    assert!(statuses[10..].iter().all(|&s| s == 200), "{statuses:?}");
    wait_for_state(
        &proxy,
        failing.addr(),
        "ejected",
        Duration::from_millis(100),
    );
}

/// Answers `svc.test` with the addresses the test sets; none set is a resolver failure.
struct Dns(Mutex<Vec<SocketAddr>>);

impl coregate_engine::config::Resolve for Dns {
    fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        let addrs = self.0.lock().unwrap().clone();
        if host != "svc.test" || addrs.is_empty() {
            return Err(std::io::Error::other("no such host"));
        }
        Ok(addrs
            .into_iter()
            .map(|a| SocketAddr::new(a.ip(), port))
            .collect())
    }
}

/// With `resolve_every`, an endpoint behind a name follows the name without a reload; a name
/// that stops resolving keeps its last addresses. Changes and failures are counted.
#[test]
fn a_re_resolved_name_moves_its_endpoint_and_survives_a_resolver_outage() {
    // Both upstreams on one port of two loopback addresses, so the name's port is the same.
    let first = Upstream::start(fast());
    let port = first.addr().port();
    let second = match TcpListener::bind(("127.0.0.2", port)) {
        Ok(probe) => {
            drop(probe);
            Upstream::start_at(SocketAddr::new("127.0.0.2".parse().unwrap(), port), fast())
        }
        // The port is taken on the second address: nothing to test on this machine.
        Err(_) => return,
    };
    let dns = Arc::new(Dns(Mutex::new(vec![first.addr()])));
    let upstreams = format!(
        "[[upstream]]\nname = \"up\"\nendpoints = [\"svc.test:{port}\"]\nresolve_every = \"1s\"\n"
    );
    let extra = format!("[admin]\nbind = \"127.0.0.1:0\"\n{FORWARD_ALL}");
    let proxy = Coregate::start_with_resolver(
        &config_with_upstreams("uring", "0", &upstreams, &extra),
        dns.clone(),
    );
    let mut client = Client::connect(proxy.addr());
    assert_eq!(client.get("/", &[]).status, 200);
    assert_eq!(first.requests().len(), 1);
    *dns.0.lock().unwrap() = vec![second.addr()];
    let changed = Instant::now();
    while second.requests().is_empty() {
        assert_eq!(client.get("/", &[]).status, 200);
        assert!(
            changed.elapsed() < Duration::from_secs(3),
            "the new address was not used"
        );
        thread::sleep(Duration::from_millis(50));
    }
    // The resolver fails from now on: the last addresses stay.
    dns.0.lock().unwrap().clear();
    let failing = Instant::now();
    let metrics = loop {
        let metrics = admin(proxy.admin_addr(), "GET", "/metrics", None).body;
        if metrics.contains("coregate_upstream_resolve_failures_total{upstream=\"up\"} 1") {
            break metrics;
        }
        assert!(failing.elapsed() < Duration::from_secs(3), "{metrics}");
        thread::sleep(Duration::from_millis(50));
    };
    assert!(
        metrics.contains("coregate_upstream_resolve_changes_total{upstream=\"up\"} 1"),
        "{metrics}"
    );
    let before = second.requests().len();
    for _ in 0..3 {
        assert_eq!(client.get("/", &[]).status, 200);
    }
    assert_eq!(second.requests().len(), before + 3);
}

/// A route with a per-try timeout and `timeout` in its policy tries a slow endpoint only that
/// long, then another endpoint; an overall deadline bounds every attempt together.
#[test]
fn per_try_timeouts_and_the_deadline_bound_each_attempt_and_all_of_them() {
    let slow_reply = || -> coregate_tests::upstream::Behavior {
        Arc::new(|_: &Recorded| Reply::Delayed(Duration::from_millis(1500), ok(b"slow")))
    };
    let slow = Upstream::start(slow_reply());
    let fine = Upstream::start(fast());
    let route = |retry: &str| {
        format!("[[route]]\npath_prefix = \"/\"\nupstream = \"up\"\nretry = {{ {retry} }}\n")
    };
    let outlier = "[upstream.outlier]\nconsecutive_failures = 0\n";
    let proxy_a = proxy(
        "0",
        &[slow.addr(), fine.addr()],
        outlier,
        &route("on = [\"timeout\"], per_try_timeout = \"100ms\""),
    );
    let mut client = Client::connect(proxy_a.addr());
    let started = Instant::now();
    let response = client.get("/", &[]);
    let took = started.elapsed();
    assert_eq!((response.status, response.body_text()), (200, "ok".into()));
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_millis(1000),
        "{took:?}"
    );
    drop(proxy_a);

    // Both endpoints slow: the first attempt ends at its 300 ms, the second at the 400 ms
    // deadline, not at its own 300 ms (which would be 600 ms in all).
    let slower = Upstream::start(slow_reply());
    let proxy_b = proxy(
        "0",
        &[slow.addr(), slower.addr()],
        outlier,
        &route("on = [\"timeout\"], per_try_timeout = \"300ms\", deadline = \"400ms\""),
    );
    let mut client = Client::connect(proxy_b.addr());
    let started = Instant::now();
    let response = client.get("/", &[]);
    let took = started.elapsed();
    assert_eq!(response.status, 504);
    assert!(
        took >= Duration::from_millis(380) && took < Duration::from_millis(580),
        "{took:?}"
    );
}

/// `non_idempotent = true` lets a POST that was reset be sent again.
#[test]
fn a_route_may_retry_non_idempotent_requests() {
    let resets = Upstream::start(Arc::new(|_: &Recorded| Reply::Reset));
    let fine = Upstream::start(Arc::new(|req: &Recorded| {
        Reply::Raw(ok(format!("{} {}", req.method, req.body.len()).as_bytes()))
    }));
    let proxy = proxy(
        "0",
        &[resets.addr(), fine.addr()],
        "",
        "[[route]]\npath_prefix = \"/\"\nupstream = \"up\"\nretry = { non_idempotent = true }\n",
    );
    let mut client = Client::connect(proxy.addr());
    client.send(b"POST /pay HTTP/1.1\r\nhost: test\r\ncontent-length: 2\r\n\r\nhi");
    let response = client.read_response(false).unwrap();
    assert_eq!(
        (response.status, response.body_text()),
        (200, "POST 2".into())
    );
}

/// One endpoint of two answers every request 503 and is kept in rotation; the route retries
/// 503. Without a budget every other request costs two attempts (1.5x); the default budget's
/// 20% holds the attempts the upstream sees to about 1.2x the client requests.
#[test]
fn the_retry_budget_caps_the_attempts_an_outage_causes() {
    let mut ratios = Vec::new();
    for percent in [100, 20] {
        let failing = Upstream::start(Arc::new(|_: &Recorded| {
            Reply::Raw(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_vec())
        }));
        let fine = Upstream::start(Arc::new(|_: &Recorded| {
            Reply::Delayed(Duration::from_millis(5), ok(b"ok"))
        }));
        let proxy = proxy(
            "0",
            &[failing.addr(), fine.addr()],
            &format!(
                "[upstream.outlier]\nconsecutive_5xx = 0\n[upstream.limits]\n\
                 retry_budget_percent = {percent}\nretry_min_concurrency = 0\n"
            ),
            "[[route]]\npath_prefix = \"/\"\nupstream = \"up\"\nretry = { on = [\"503\"] }\n",
        );
        let clients: Vec<_> = (0..10)
            .map(|_| {
                let addr = proxy.addr();
                thread::spawn(move || {
                    let mut client = Client::connect(addr);
                    (0..50)
                        .filter(|_| client.get("/", &[]).status == 200)
                        .count()
                })
            })
            .collect();
        let succeeded: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
        let attempts = failing.requests().len() + fine.requests().len();
        let ratio = attempts as f64 / 500.0;
        eprintln!(
            "budget {percent}%: {attempts} attempts for 500 requests, {succeeded} answered 200"
        );
        ratios.push(ratio);
    }
    assert!(
        ratios[0] > 1.4,
        "without a budget every 503 is retried: {ratios:?}"
    );
    assert!(
        ratios[1] <= 1.22,
        "the budget holds attempts to 1.2x: {ratios:?}"
    );
}

/// `max_requests`: requests beyond it are answered 503 at once, counted, and the breaker
/// closes when the requests in flight finish.
#[test]
fn a_breaker_answers_overflow_at_once_and_closes_again() {
    let slow = Upstream::start(Arc::new(|_: &Recorded| {
        Reply::Delayed(Duration::from_millis(300), ok(b"ok"))
    }));
    let proxy = proxy(
        "0",
        &[slow.addr()],
        "[upstream.limits]\nmax_requests = 2\n",
        "[admin]\nbind = \"127.0.0.1:0\"\n",
    );
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let addr = proxy.addr();
            thread::spawn(move || {
                // Staggered so the first two are in flight when the others arrive.
                thread::sleep(Duration::from_millis(50 * (i / 2)));
                let mut client = Client::connect(addr);
                let started = Instant::now();
                let status = client.get("/", &[]).status;
                (status, started.elapsed())
            })
        })
        .collect();
    let outcomes: Vec<(u16, Duration)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let refused: Vec<&(u16, Duration)> = outcomes.iter().filter(|(s, _)| *s == 503).collect();
    assert_eq!(refused.len(), 2, "{outcomes:?}");
    assert!(
        refused
            .iter()
            .all(|(_, took)| *took < Duration::from_millis(100)),
        "answered at once: {outcomes:?}"
    );
    let mut client = Client::connect(proxy.addr());
    assert_eq!(client.get("/", &[]).status, 200, "closed again");
    let metrics = admin(proxy.admin_addr(), "GET", "/metrics", None).body;
    assert!(
        metrics.contains(
            "coregate_upstream_overflows_total{upstream=\"up\",limit=\"max_requests\"} 2"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("coregate_rejected_total{reason=\"upstream_overflow\"} 2"),
        "{metrics}"
    );
}

/// `max_connections`: a request that would need one more connection is answered 503 at once,
/// and the refusal says nothing about the endpoint (it is not ejected).
#[test]
fn a_connection_breaker_refusal_does_not_blame_the_endpoint() {
    let slow = Upstream::start(Arc::new(|_: &Recorded| {
        Reply::Delayed(Duration::from_millis(300), ok(b"ok"))
    }));
    let proxy = proxy(
        "0",
        &[slow.addr()],
        "[upstream.limits]\nmax_connections = 1\n",
        "[admin]\nbind = \"127.0.0.1:0\"\n",
    );
    let addr = proxy.addr();
    let first = thread::spawn(move || Client::connect(addr).get("/", &[]).status);
    // The first request holds the only connection for 300 ms.
    let started = Instant::now();
    while slow.requests().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(2));
        thread::sleep(Duration::from_millis(5));
    }
    let mut client = Client::connect(proxy.addr());
    assert_eq!(client.get("/", &[]).status, 503);
    assert_eq!(first.join().unwrap(), 200);
    assert_eq!(states(&proxy, slow.addr()), vec!["serving"]);
    assert_eq!(
        client.get("/", &[]).status,
        200,
        "the pooled connection is free again"
    );
    let metrics = admin(proxy.admin_addr(), "GET", "/metrics", None).body;
    assert!(
        metrics.contains(
            "coregate_upstream_overflows_total{upstream=\"up\",limit=\"max_connections\"} 1"
        ),
        "{metrics}"
    );
}
