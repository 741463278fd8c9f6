//! Bad input and faults, end to end: every client mistake gets its status and a short body, every
//! upstream fault its 502/504, and the connection closes whenever framing can no longer be
//! trusted. Both I/O mechanisms.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use coregate_tests::client::Client;
use coregate_tests::harness::{
    Coregate, FORWARD_ALL, MECHANISMS, config, config_with, exchange, start,
};
use coregate_tests::upstream::{Recorded, Reply, Upstream, echo, ok};

#[test]
fn malformed_requests_get_400_and_close() {
    for io in MECHANISMS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        for request in [
            &b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\ncontent-length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost : a\r\n\r\n",
            b"GET /a/%2e%2f HTTP/1.1\r\nhost: a\r\n\r\n",
            b"G@T / HTTP/1.1\r\nhost: a\r\n\r\n",
        ] {
            let (response, closed) = exchange(&proxy, request);
            assert_eq!(
                response.status,
                400,
                "{io}: {}",
                String::from_utf8_lossy(request)
            );
            assert_eq!(response.field("connection"), Some("close"));
            assert!(!response.body.is_empty(), "a short plain-text reason");
            assert!(closed, "{io}: closed after a 400");
        }
        assert_eq!(
            upstream.requests().len(),
            0,
            "{io}: nothing malformed reached the upstream"
        );
    }
}

#[test]
fn oversized_requests_get_413_414_431() {
    for io in MECHANISMS {
        let upstream = Upstream::start(echo());
        let routes =
            "[[route]]\npath_prefix = \"/\"\nupstream = \"up\"\nmax_body_bytes = \"1KiB\"\n";
        let proxy = start(io, &upstream, routes);

        let long_target = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\n", "a".repeat(9000));
        let (response, closed) = exchange(&proxy, long_target.as_bytes());
        assert_eq!((response.status, closed), (414, true), "{io}");

        let mut many = String::from("GET / HTTP/1.1\r\nhost: a\r\n");
        for i in 0..150 {
            many.push_str(&format!("x-field-{i}: v\r\n"));
        }
        many.push_str("\r\n");
        let (response, closed) = exchange(&proxy, many.as_bytes());
        assert_eq!((response.status, closed), (431, true), "{io}");

        let big_field = format!(
            "GET / HTTP/1.1\r\nhost: a\r\ncookie: {}\r\n\r\n",
            "c".repeat(17_000)
        );
        let (response, closed) = exchange(&proxy, big_field.as_bytes());
        assert_eq!((response.status, closed), (431, true), "{io}");

        let body = format!(
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 2000\r\n\r\n{}",
            "b".repeat(2000)
        );
        let (response, closed) = exchange(&proxy, body.as_bytes());
        assert_eq!((response.status, closed), (413, true), "{io}");

        let mut chunked =
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..3 {
            chunked.extend_from_slice(b"200\r\n");
            chunked.extend_from_slice(&[b'c'; 0x200]);
            chunked.extend_from_slice(b"\r\n");
        }
        chunked.extend_from_slice(b"0\r\n\r\n");
        let (response, closed) = exchange(&proxy, &chunked);
        assert_eq!(
            (response.status, closed),
            (413, true),
            "{io}: chunked bodies are counted too"
        );
    }
}

#[test]
fn a_slow_request_head_gets_408() {
    for io in MECHANISMS {
        let upstream = Upstream::start(echo());
        let proxy = start(
            io,
            &upstream,
            &format!("[timeouts]\nheader = \"300ms\"\n{FORWARD_ALL}"),
        );
        let mut client = Client::connect(proxy.addr());
        let started = Instant::now();
        // A slowloris: bytes keep coming, but the head never completes in time.
        for _ in 0..3 {
            client.send(b"GET / HTTP/1.1\r\nx-slow: 1\r\n");
            thread::sleep(Duration::from_millis(100));
        }
        let response = client.read_response(false).expect("a 408");
        assert_eq!(response.status, 408, "{io}");
        assert!(client.is_closed());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{io}: a total deadline, not per read"
        );
    }
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    for io in MECHANISMS {
        let upstream = Upstream::start(echo());
        let proxy = start(
            io,
            &upstream,
            &format!("[timeouts]\nkeepalive = \"200ms\"\n{FORWARD_ALL}"),
        );
        let mut client = Client::connect(proxy.addr());
        assert_eq!(client.get("/", &[]).status, 200);
        let started = Instant::now();
        assert!(client.is_closed(), "{io}: closed without a response");
        assert!(started.elapsed() < Duration::from_secs(2), "{io}");
    }
}

#[test]
fn a_refused_upstream_gives_502() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    for io in MECHANISMS {
        let proxy = Coregate::start(&config(io, "0", port, FORWARD_ALL));
        let mut client = Client::connect(proxy.addr());
        let response = client.get("/", &[]);
        assert_eq!(response.status, 502, "{io}");
        assert_eq!(
            client.get("/again", &[]).status,
            502,
            "{io}: the client connection stays usable"
        );
    }
}

#[test]
fn garbage_reset_and_truncation_from_the_upstream() {
    for io in MECHANISMS {
        let upstream = Upstream::start(Arc::new(|req: &Recorded| match req.target.as_str() {
            "/garbage" => Reply::RawThenClose(b"SSH-2.0-OpenSSH\r\n\r\n".to_vec()),
            "/reset" => Reply::Reset,
            "/truncated" => Reply::RawThenClose(
                b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten!!".to_vec(),
            ),
            "/conflicting" => Reply::Raw(
                b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd".to_vec(),
            ),
            _ => Reply::Raw(ok(b"fine")),
        }));
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        assert_eq!(client.get("/garbage", &[]).status, 502, "{io}");
        assert_eq!(client.get("/reset", &[]).status, 502, "{io}");
        assert_eq!(client.get("/conflicting", &[]).status, 502, "{io}");
        assert_eq!(
            client.get("/fine", &[]).body,
            b"fine",
            "{io}: other requests are unaffected"
        );

        // Mid-body failure: the head went out, so the only honest signal is closing.
        client.send(b"GET /truncated HTTP/1.1\r\nhost: a\r\n\r\n");
        let raw = String::from_utf8(client.read_to_close()).unwrap();
        assert!(raw.contains("content-length: 100\r\n"), "{io}: {raw}");
        assert!(
            raw.ends_with("\r\n\r\nonly ten!!"),
            "{io}: the client saw the short body, then the close: {raw}"
        );
    }
}

#[test]
fn a_slow_upstream_gives_504() {
    for io in MECHANISMS {
        let upstream = Upstream::start(Arc::new(|_: &Recorded| {
            Reply::Delayed(Duration::from_secs(3), ok(b"late"))
        }));
        let body = format!(
            "endpoints = [\"{}\"]\nresponse_timeout = \"300ms\"",
            upstream.addr()
        );
        let proxy = Coregate::start(&config_with(io, "0", &body, FORWARD_ALL));
        let mut client = Client::connect(proxy.addr());
        let started = Instant::now();
        let response = client.get("/", &[]);
        assert_eq!(response.status, 504, "{io}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(280) && waited < Duration::from_secs(2),
            "{io}: {waited:?}"
        );
    }
}

#[test]
fn a_dead_pooled_connection_is_retried_for_idempotent_requests_only() {
    for io in MECHANISMS {
        // Every connection serves one response and then closes, without saying so: the pooled
        // connection is dead by the time the next request takes it.
        let upstream = Upstream::start(Arc::new(|req: &Recorded| {
            Reply::RawThenClose(ok(req.target.as_bytes()))
        }));
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        assert_eq!(client.get("/first", &[]).body, b"/first");
        thread::sleep(Duration::from_millis(100));
        let second = client.get("/second", &[]);
        assert_eq!(
            (second.status, second.body.as_slice()),
            (200, &b"/second"[..]),
            "{io}: served on a fresh connection"
        );
        assert_eq!(upstream.connections(), 2, "{io}");

        // The close was noticed while the connection idled in the pool, so even a request
        // that could not be retried goes out on a fresh connection, once.
        thread::sleep(Duration::from_millis(100));
        client.send(b"POST /not-idempotent HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\n\r\nx");
        let post = client.read_response(false).unwrap();
        assert_eq!(
            post.status, 200,
            "{io}: the dead pooled connection was not used"
        );
        assert_eq!(upstream.connections(), 3, "{io}");
        assert_eq!(
            upstream
                .requests()
                .iter()
                .filter(|r| r.method == "POST")
                .count(),
            1,
            "{io}: a POST is never sent twice"
        );
    }
}

#[test]
fn an_upstream_that_speaks_while_idle_is_not_reused() {
    for io in MECHANISMS {
        // Each answer is followed, a moment later (while the connection idles in the pool), by
        // bytes nobody asked for: a second response. Reusing that connection would hand them
        // to the next client as its answer.
        let upstream = Upstream::start(Arc::new(|req: &Recorded| {
            Reply::ThenLater(
                ok(req.target.as_bytes()),
                Duration::from_millis(50),
                ok(b"stale"),
            )
        }));
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        for path in ["/one", "/two", "/three"] {
            let response = client.get(path, &[]);
            assert_eq!(
                response.body,
                path.as_bytes(),
                "{io}: never the stale answer"
            );
            thread::sleep(Duration::from_millis(150));
        }
        assert_eq!(
            upstream.connections(),
            3,
            "{io}: a fresh connection each time"
        );
    }
}

#[test]
fn one_bad_upstream_exchange_does_not_disturb_others() {
    for io in MECHANISMS {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let upstream = Upstream::start(Arc::new(move |req: &Recorded| {
            counter.fetch_add(1, Ordering::SeqCst);
            if req.target == "/slow" {
                Reply::Delayed(Duration::from_millis(500), ok(b"slow"))
            } else {
                Reply::Raw(ok(b"fast"))
            }
        }));
        let proxy = start(io, &upstream, FORWARD_ALL);
        let addr = proxy.addr();
        let slow = thread::spawn(move || Client::connect(addr).get("/slow", &[]).body);
        thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        let mut client = Client::connect(proxy.addr());
        for _ in 0..20 {
            assert_eq!(client.get("/fast", &[]).body, b"fast");
        }
        assert!(
            started.elapsed() < Duration::from_millis(450),
            "{io}: fast requests waited for the slow one"
        );
        assert_eq!(slow.join().unwrap(), b"slow");
    }
}

/// Sums a metric's samples in a Prometheus text exposition (lines `name{...} value`).
fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn ten_thousand_faulty_exchanges_leave_pools_and_rings_as_they_were() {
    for io in MECHANISMS {
        let upstream = Upstream::start(Arc::new(|req: &Recorded| {
            match req.target.rsplit('/').next().unwrap_or("") {
                "garbage" => Reply::RawThenClose(b"NOT HTTP\r\n\r\n".to_vec()),
                "reset" => Reply::Reset,
                "close" => Reply::Close,
                "truncated" => Reply::RawThenClose(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort".to_vec(),
                ),
                _ => Reply::Raw(ok(b"fine")),
            }
        }));
        let proxy = start(io, &upstream, FORWARD_ALL);
        let plane = proxy.server().plane().clone();
        // Warm: one good exchange leaves one idle pooled connection and the shard's standing
        // operations (accept, mailbox, timers, the idle client receive).
        let mut warm = Client::connect(proxy.addr());
        assert_eq!(warm.get("/ok", &[]).status, 200);
        drop(warm);
        let settle = |what: &str| {
            // The shard notices closed clients asynchronously: wait for the gauges to settle.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let text = plane.metrics_text();
                if metric_sum(&text, "coregate_client_connections_open") == 0.0
                    && metric_sum(&text, "coregate_upstream_active_connections") == 0.0
                {
                    return text;
                }
                assert!(
                    Instant::now() < deadline,
                    "{io}: {what}: gauges never settled:\n{text}"
                );
                thread::sleep(Duration::from_millis(20));
            }
        };
        let before = settle("before");

        let faults = ["garbage", "reset", "close", "truncated", "ok"];
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let addr = proxy.addr();
                thread::spawn(move || {
                    let mut client = Client::connect(addr);
                    for i in 0..2500 {
                        let fault = faults[(w + i) % faults.len()];
                        client.send(
                            format!("GET /{i}/{fault} HTTP/1.1\r\nhost: a\r\n\r\n").as_bytes(),
                        );
                        let complete = match client.read_response(false) {
                            Some(response) if fault == "truncated" => {
                                // The head went out before the upstream failed: coregate must
                                // close rather than let the short body pass as complete.
                                assert_eq!(response.status, 200);
                                false
                            }
                            Some(response) => {
                                let expected = if fault == "ok" { 200 } else { 502 };
                                assert_eq!(response.status, expected, "{fault}");
                                response.field("connection") != Some("close")
                            }
                            None => false,
                        };
                        if !complete {
                            client = Client::connect(addr);
                        }
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().unwrap();
        }
        let after = settle("after");
        let idle = metric_sum(&after, "coregate_upstream_idle_connections");
        assert!(
            idle <= 4.0,
            "{io}: idle connections are at most what the four good-request streams left ({idle})"
        );
        // Standing operations, less the one watch each idle pooled connection holds.
        let standing = |text: &str| {
            metric_sum(text, "coregate_ring_operations_in_flight")
                - metric_sum(text, "coregate_upstream_idle_connections")
        };
        assert_eq!(
            standing(&after),
            standing(&before),
            "{io}: no ring operation leaked"
        );
        let rejected = metric_sum(&after, "coregate_rejected_total");
        assert!(
            rejected >= 6000.0,
            "{io}: the faults were answered ({rejected})"
        );
        assert_eq!(
            Client::connect(proxy.addr()).get("/after/ok", &[]).body,
            b"fine",
            "{io}: still serving"
        );
    }
}

#[test]
fn at_the_connection_cap_new_clients_wait_in_the_backlog() {
    for io in MECHANISMS {
        let upstream = Upstream::start(echo());
        let text = config(io, "0", upstream.addr(), FORWARD_ALL).replace(
            "buffers_per_shard = 512",
            "buffers_per_shard = 512\nmax_connections = 3",
        );
        let proxy = Coregate::start(&text);
        let mut held: Vec<Client> = (0..3)
            .map(|_| {
                let mut client = Client::connect(proxy.addr());
                assert_eq!(client.get("/", &[]).status, 200, "{io}");
                client
            })
            .collect();
        // The fourth connects (the kernel queues it) but is not served while three are open.
        let mut waiting = Client::connect(proxy.addr());
        waiting.set_read_timeout(Duration::from_millis(400));
        waiting.send(b"GET /late HTTP/1.1\r\nhost: a\r\n\r\n");
        assert!(
            waiting.read_response(false).is_none(),
            "{io}: served beyond the cap"
        );
        // One leaves: the shard takes the next connection within its back-off.
        drop(held.pop());
        waiting.set_read_timeout(Duration::from_secs(5));
        let started = Instant::now();
        let response = waiting
            .read_response(false)
            .expect("served once below the cap");
        assert_eq!(response.status, 200, "{io}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{io}: {:?}",
            started.elapsed()
        );
    }
}
