//! End to end over loopback: client -> coregate -> recording upstream, in plain text and over TLS.
//! Each test asserts on what the client received and on what the upstream saw.

use std::time::{Duration, Instant};

use coregate_tests::client::Client;
use coregate_tests::harness::{FORWARD_ALL, TLS, TRANSPORTS, start};
use coregate_tests::upstream::{Recorded, Reply, Upstream, echo, ok, ok_chunked};
use std::sync::Arc;

#[test]
fn a_get_is_forwarded_with_forwarding_fields() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        let response = client.get(
            "/hello?x=1",
            &["x-forwarded-for: 203.0.113.9", "user-agent: e2e"],
        );
        assert_eq!(response.status, 200, "{io}");
        assert!(
            response.body_text().starts_with("GET /hello?x=1\n"),
            "{io}: {}",
            response.body_text()
        );

        let seen = upstream.wait_for(1);
        let request = &seen[0];
        assert_eq!(request.method, "GET");
        assert_eq!(request.target, "/hello?x=1");
        assert_eq!(
            request.version, 1,
            "{io}: coregate speaks HTTP/1.1 upstream"
        );
        assert_eq!(
            request.field("x-forwarded-for"),
            Some("127.0.0.1"),
            "{io}: an untrusted client's chain is replaced, not extended"
        );
        let scheme = if io == TLS { "https" } else { "http" };
        assert_eq!(request.field("x-forwarded-proto"), Some(scheme), "{io}");
        assert_eq!(
            request.field("x-forwarded-host"),
            Some("test.local"),
            "{io}"
        );
        assert_eq!(request.field("host"), Some("test.local"), "{io}");
        assert_eq!(request.field("user-agent"), Some("e2e"), "{io}");
        let id = request
            .field("x-request-id")
            .expect("a request id is generated");
        assert_eq!(id.len(), 32, "{io}: {id}");
        assert_eq!(
            request.fields_named("x-forwarded-for").len(),
            1,
            "{io}: one combined field"
        );
    }
}

#[test]
fn a_client_request_id_is_passed_through() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        client.get("/", &["x-request-id: abc-123"]);
        let seen = upstream.wait_for(1);
        assert_eq!(
            seen[0].fields_named("x-request-id"),
            vec!["abc-123"],
            "{io}"
        );
    }
}

#[test]
fn a_trusted_proxys_forwarding_fields_are_extended() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let routes = format!("[forwarding]\ntrusted_proxies = [\"127.0.0.0/8\"]\n{FORWARD_ALL}");
        let proxy = start(io, &upstream, &routes);
        let mut client = Client::connect(proxy.addr());
        let response = client.get(
            "/",
            &[
                "x-forwarded-for: 203.0.113.9",
                "x-forwarded-for: 198.51.100.2",
                "x-forwarded-proto: https",
                "x-forwarded-host: public.example",
            ],
        );
        assert_eq!(response.status, 200, "{io}");
        let request = &upstream.wait_for(1)[0];
        assert_eq!(
            request.field("x-forwarded-for"),
            Some("203.0.113.9, 198.51.100.2, 127.0.0.1"),
            "{io}"
        );
        assert_eq!(request.field("x-forwarded-proto"), Some("https"), "{io}");
        assert_eq!(
            request.field("x-forwarded-host"),
            Some("public.example"),
            "{io}"
        );
        assert_eq!(request.fields_named("x-forwarded-proto").len(), 1, "{io}");
    }
}

#[test]
fn hop_by_hop_fields_are_not_forwarded() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(Arc::new(|_: &Recorded| {
            Reply::Raw(
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nkeep-alive: timeout=5\r\nconnection: keep-alive, x-internal\r\nx-internal: secret\r\nx-public: yes\r\n\r\nok"
                    .to_vec(),
            )
        }));
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        let response = client.get(
            "/",
            &[
                "connection: keep-alive, x-drop-me",
                "x-drop-me: 1",
                "keep-alive: 300",
                "proxy-connection: keep-alive",
                "te: trailers",
            ],
        );
        let seen = upstream.wait_for(1);
        for name in [
            "connection",
            "x-drop-me",
            "keep-alive",
            "proxy-connection",
            "te",
        ] {
            assert_eq!(
                seen[0].field(name),
                None,
                "{io}: {name} reached the upstream"
            );
        }
        assert_eq!(response.field("x-internal"), None, "{io}");
        assert_eq!(response.field("keep-alive"), None, "{io}");
        assert_eq!(response.field("x-public"), Some("yes"), "{io}");
        assert_eq!(response.body, b"ok");
    }
}

#[test]
fn direct_responses_404_and_405() {
    let routes = r#"
[[route]]
path = "/healthz"
respond = { status = 200, body = "ok\n", headers = { "x-served-by" = "coregate" } }

[[route]]
path = "/items/{id}"
methods = ["GET", "PUT"]
upstream = "up"
"#;
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, routes);
        let mut client = Client::connect(proxy.addr());

        let health = client.get("/healthz", &[]);
        assert_eq!(
            (health.status, health.body_text().as_str()),
            (200, "ok\n"),
            "{io}"
        );
        assert_eq!(health.field("x-served-by"), Some("coregate"));
        assert!(
            health.raw_head.starts_with(b"HTTP/1.1 200 OK\r\n"),
            "{io}: {:?}",
            String::from_utf8_lossy(&health.raw_head)
        );

        let missing = client.get("/nowhere", &[]);
        assert_eq!(missing.status, 404, "{io}");
        assert_eq!(missing.field("content-type"), Some("text/plain"));
        assert!(!missing.body.is_empty());

        client.send(b"DELETE /items/7 HTTP/1.1\r\nhost: test.local\r\n\r\n");
        let refused = client.read_response(false).unwrap();
        assert_eq!(refused.status, 405, "{io}");
        assert_eq!(refused.field("allow"), Some("GET, PUT"), "{io}");

        let item = client.get("/items/7", &[]);
        assert_eq!(
            item.status, 200,
            "{io}: the connection survived the early answers"
        );
        assert_eq!(
            upstream.wait_for(1).len(),
            1,
            "{io}: only the routed request went upstream"
        );
    }
}

#[test]
fn sequential_requests_reuse_one_upstream_connection() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        for i in 0..50 {
            let response = client.get(&format!("/n/{i}"), &[]);
            assert_eq!(response.status, 200);
        }
        let seen = upstream.wait_for(50);
        assert_eq!(seen.len(), 50);
        assert_eq!(
            upstream.connections(),
            1,
            "{io}: the pooled connection served every request"
        );
        assert!(seen.iter().all(|r| r.connection == 0));
    }
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        client.send(
            b"GET /one HTTP/1.1\r\nhost: a\r\n\r\nPOST /two HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabcGET /three HTTP/1.1\r\nhost: a\r\n\r\n",
        );
        let bodies: Vec<String> = (0..3)
            .map(|_| client.read_response(false).unwrap().body_text())
            .collect();
        assert!(bodies[0].starts_with("GET /one"), "{io}: {bodies:?}");
        assert!(
            bodies[1].starts_with("POST /two") && bodies[1].contains("body-bytes: 3"),
            "{io}: {bodies:?}"
        );
        assert!(bodies[2].starts_with("GET /three"), "{io}: {bodies:?}");
        let seen = upstream.wait_for(3);
        assert_eq!(seen[1].body, b"abc");
    }
}

#[test]
fn http10_clients_close_unless_keep_alive_is_asked() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);

        let mut client = Client::connect(proxy.addr());
        client.send(b"GET /a HTTP/1.0\r\nhost: a\r\n\r\n");
        let response = client.read_response(false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.field("connection"), Some("close"), "{io}");
        assert!(
            client.is_closed(),
            "{io}: HTTP/1.0 without keep-alive closes"
        );

        let mut client = Client::connect(proxy.addr());
        client.send(b"GET /b HTTP/1.0\r\nhost: a\r\nconnection: keep-alive\r\n\r\n");
        let response = client.read_response(false).unwrap();
        assert_eq!(response.field("connection"), Some("keep-alive"), "{io}");
        client.send(b"GET /c HTTP/1.0\r\nhost: a\r\nconnection: keep-alive\r\n\r\n");
        assert_eq!(client.read_response(false).unwrap().status, 200, "{io}");
        // HTTP/1.0 without Host is accepted; the upstream still gets one.
        let mut client = Client::connect(proxy.addr());
        client.send(b"GET /d HTTP/1.0\r\n\r\n");
        assert_eq!(client.read_response(false).unwrap().status, 200, "{io}");
        let seen = upstream.wait_for(4);
        assert_eq!(
            seen[3].field("host"),
            Some(upstream.addr().to_string().as_str()),
            "{io}"
        );
    }
}

#[test]
fn request_bodies_stream_by_length_and_chunked() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());

        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut request = format!(
            "POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\n\r\n",
            big.len()
        )
        .into_bytes();
        request.extend_from_slice(&big);
        client.send(&request);
        let response = client.read_response(false).unwrap();
        assert!(
            response.body_text().contains("body-bytes: 1000000"),
            "{io}: {}",
            response.body_text()
        );

        client.send(b"POST /chunks HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: t\r\n\r\n");
        let response = client.read_response(false).unwrap();
        assert_eq!(response.status, 200, "{io}");
        let seen = upstream.wait_for(2);
        assert_eq!(seen[0].body, big, "{io}: the upstream got every byte");
        assert_eq!(seen[0].field("content-length"), Some("1000000"));
        // Small enough to be buffered (`request_buffering`): declared by its length.
        assert!(
            !seen[1].chunked,
            "{io}: a small chunked body goes by its length"
        );
        assert_eq!(seen[1].field("content-length"), Some("11"), "{io}");
        assert_eq!(seen[1].body, b"hello world", "{io}");
        assert!(
            !String::from_utf8_lossy(&seen[1].raw_head).contains("x-trailer"),
            "{io}: trailers are dropped"
        );
        assert!(
            !String::from_utf8_lossy(&seen[1].raw_head).contains("ext="),
            "{io}"
        );
    }
}

#[test]
fn response_bodies_in_every_framing() {
    for io in TRANSPORTS {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
        let body = big.clone();
        let upstream = Upstream::start(Arc::new(move |req: &Recorded| match req.target.as_str() {
            "/length" => Reply::Raw(ok(&body)),
            "/chunked" => Reply::Raw(ok_chunked(&body, 7000)),
            "/close" => {
                let mut bytes = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
                bytes.extend_from_slice(&body);
                Reply::RawThenClose(bytes)
            }
            "/empty" => Reply::Raw(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()),
            "/head" => Reply::Raw(b"HTTP/1.1 200 OK\r\ncontent-length: 12345\r\n\r\n".to_vec()),
            _ => Reply::Raw(ok(b"?")),
        }));
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());

        let length = client.get("/length", &[]);
        assert_eq!(length.body, big, "{io}");
        assert_eq!(length.field("content-length"), Some("300000"));

        let chunked = client.get("/chunked", &[]);
        assert!(chunked.chunked, "{io}");
        assert_eq!(chunked.body, big, "{io}");

        let until_close = client.get("/close", &[]);
        assert!(
            until_close.chunked,
            "{io}: an HTTP/1.1 client gets a close-delimited body chunked"
        );
        assert_eq!(until_close.body, big, "{io}");

        let empty = client.get("/empty", &[]);
        assert_eq!((empty.status, empty.body.len()), (204, 0), "{io}");

        client.send(b"HEAD /head HTTP/1.1\r\nhost: a\r\n\r\n");
        let head = client.read_response(true).unwrap();
        assert_eq!(
            head.field("content-length"),
            Some("12345"),
            "{io}: HEAD keeps the length"
        );
        let after = client.get("/length", &[]);
        assert_eq!(after.body, big, "{io}: no stray body bytes after HEAD");

        let mut old = Client::connect(proxy.addr());
        old.send(b"GET /chunked HTTP/1.0\r\nhost: a\r\n\r\n");
        let response = old.read_response(false).unwrap();
        assert!(!response.chunked, "{io}: HTTP/1.0 never gets chunked");
        assert_eq!(response.body, big, "{io}");
    }
}

#[test]
fn expect_100_continue_is_answered() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        client.send(
            b"POST /e HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\nexpect: 100-continue\r\n\r\n",
        );
        let interim = client.read_exact(25);
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n", "{io}");
        client.send(b"data");
        let response = client.read_response(false).unwrap();
        assert!(response.body_text().contains("body-bytes: 4"), "{io}");
        let seen = upstream.wait_for(1);
        assert_eq!(
            seen[0].field("expect"),
            None,
            "{io}: coregate handled the expectation"
        );
    }
}

#[test]
fn keep_alive_16k_responses_do_not_wait_for_delayed_acks() {
    let body = vec![b'x'; 16 * 1024];
    for io in TRANSPORTS {
        let response_bytes = ok(&body);
        let upstream = Upstream::start(Arc::new(move |_: &Recorded| {
            Reply::Raw(response_bytes.clone())
        }));
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        client.get("/warm", &[]);
        let mut slowest = Duration::ZERO;
        let started = Instant::now();
        for _ in 0..100 {
            let t = Instant::now();
            let response = client.get("/16k", &[]);
            assert_eq!(response.body.len(), 16 * 1024);
            slowest = slowest.max(t.elapsed());
        }
        let total = started.elapsed();
        // The delayed-ACK stall this guards against costs 40 ms per response.
        assert!(
            total < Duration::from_millis(1000),
            "{io}: 100 responses took {total:?}"
        );
        assert!(
            slowest < Duration::from_millis(35),
            "{io}: slowest response {slowest:?}"
        );
    }
}
