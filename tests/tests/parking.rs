//! Parked keep-alive connections end to end: a connection idle for over a second gives up its
//! task (`coregate_client_connections_parked` counts it) and is served on when its next request
//! comes, whole and in order, as often as it parks; its client's close, the keep-alive timeout
//! and a drain end it as they end a connection in its task. In plain text and over TLS.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use coregate_tests::client::Client;
use coregate_tests::harness::{Coregate, TLS, TRANSPORTS, admin, config};
use coregate_tests::upstream::{Recorded, Reply, Upstream, ok};

const TOKEN: &str = "admin-token-0123456789";

fn routes_and_admin(extra: &str) -> String {
    format!(
        r#"
{extra}
[admin]
bind = "127.0.0.1:0"
token = "{TOKEN}"

[[route]]
path_prefix = "/"
upstream = "up"
"#
    )
}

/// Answers with the request's target and body.
fn target_and_body() -> Upstream {
    Upstream::start(Arc::new(|req: &Recorded| {
        let mut body = format!("{} ", req.target).into_bytes();
        body.extend_from_slice(&req.body);
        Reply::Raw(ok(&body))
    }))
}

/// One metric summed over the shards.
fn metric(proxy: &Coregate, name: &str) -> f64 {
    let reply = admin(proxy.admin_addr(), "GET", "/metrics", Some(TOKEN));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply
        .body
        .lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn parked(proxy: &Coregate) -> f64 {
    metric(proxy, "coregate_client_connections_parked")
}

/// Waits until `metric` of the proxy reads `value`; panics after 10 s.
fn wait_for_metric(proxy: &Coregate, name: &str, value: f64, what: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let now = metric(proxy, name);
        if now == value {
            return;
        }
        assert!(
            Instant::now() < until,
            "{what}: {name} stays {now}, not {value}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

fn get(client: &mut Client, path: &str) -> String {
    let response = client.get(path, &[]);
    assert_eq!(response.status, 200, "{path}");
    response.body_text()
}

#[test]
fn parked_connections_serve_their_next_requests_whole_and_park_again() {
    for io in TRANSPORTS {
        let upstream = target_and_body();
        let proxy = Coregate::start(&config(io, "0", upstream.addr(), &routes_and_admin("")));
        let addr = proxy.addr();
        let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(addr)).collect();
        for (i, client) in clients.iter_mut().enumerate() {
            assert_eq!(get(client, &format!("/first/{i}")), format!("/first/{i} "));
        }
        let parked_since = Instant::now();
        wait_for_metric(&proxy, "coregate_client_connections_parked", 3.0, io);
        assert!(
            parked_since.elapsed() >= Duration::from_millis(900),
            "{io}: parked only after idling a second"
        );

        for round in 0..2 {
            // A head in two pieces: the revived connection reads the rest as any head.
            clients[0].send(format!("GET /split/{round} HTTP/1.1\r\nho").as_bytes());
            thread::sleep(Duration::from_millis(100));
            clients[0].send(b"st: a\r\n\r\n");
            let response = clients[0].read_response(false).expect("a response");
            assert_eq!(response.body_text(), format!("/split/{round} "), "{io}");

            // A body behind its head, sent later.
            clients[1].send(b"POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nab");
            thread::sleep(Duration::from_millis(100));
            clients[1].send(b"cde");
            let response = clients[1].read_response(false).expect("a response");
            assert_eq!(response.body_text(), "/upload abcde", "{io}");

            // Two requests at once: answered in order.
            clients[2]
                .send(b"GET /one HTTP/1.1\r\nhost: a\r\n\r\nGET /two HTTP/1.1\r\nhost: a\r\n\r\n");
            for path in ["/one", "/two"] {
                let response = clients[2].read_response(false).expect("a response");
                assert_eq!(response.body_text(), format!("{path} "), "{io}");
            }
            // Revived, then parked again once they idle.
            wait_for_metric(&proxy, "coregate_client_connections_parked", 3.0, io);
        }
        let seen: Vec<String> = upstream
            .requests()
            .iter()
            .map(|r| r.target.clone())
            .collect();
        assert_eq!(seen.len(), 3 + 2 * 4, "{io}: {seen:?}");
        assert_eq!(
            metric(&proxy, "coregate_client_connections_open"),
            3.0,
            "{io}"
        );
    }
}

/// A TLS record that carries no request (a key update) revives a parked connection without
/// starting one: no request counted, no `408` once the header timeout passes; the connection
/// waits on, parks again and serves its next request. Before: the record's bytes were taken
/// for a request's first, and the client got a `408` and a close.
#[test]
fn a_tls_record_without_a_request_does_not_start_one() {
    let upstream = target_and_body();
    let extra = "[timeouts]\nheader = \"1s\"\n";
    let proxy = Coregate::start(&config(TLS, "0", upstream.addr(), &routes_and_admin(extra)));
    let mut client = Client::connect(proxy.addr());
    get(&mut client, "/a");
    wait_for_metric(
        &proxy,
        "coregate_client_connections_parked",
        1.0,
        "first idle",
    );
    client.send_key_update();
    thread::sleep(Duration::from_millis(1500));
    wait_for_metric(
        &proxy,
        "coregate_client_connections_parked",
        1.0,
        "after the key update",
    );
    assert_eq!(get(&mut client, "/b"), "/b ");
    assert_eq!(metric(&proxy, "coregate_requests_total"), 2.0);
}

#[test]
fn a_parked_connection_ends_on_its_clients_close_and_on_the_keepalive_timeout() {
    for io in TRANSPORTS {
        let upstream = target_and_body();
        let extra = "[timeouts]\nkeepalive = \"3s\"\n";
        let proxy = Coregate::start(&config(io, "0", upstream.addr(), &routes_and_admin(extra)));
        let mut leaving = Client::connect(proxy.addr());
        let mut staying = Client::connect(proxy.addr());
        get(&mut leaving, "/a");
        get(&mut staying, "/b");
        let idle_since = Instant::now();
        wait_for_metric(&proxy, "coregate_client_connections_parked", 2.0, io);

        drop(leaving);
        wait_for_metric(&proxy, "coregate_client_connections_open", 1.0, io);
        assert_eq!(parked(&proxy), 1.0, "{io}: the closed one left the table");

        staying.set_read_timeout(Duration::from_secs(10));
        assert!(
            staying.is_closed(),
            "{io}: closed by the keep-alive timeout"
        );
        let idled = idle_since.elapsed();
        assert!(
            idled >= Duration::from_millis(2900) && idled < Duration::from_secs(5),
            "{io}: closed after {idled:?}, the keep-alive timeout is 3 s"
        );
        wait_for_metric(&proxy, "coregate_client_connections_open", 0.0, io);
        assert_eq!(parked(&proxy), 0.0, "{io}");
    }
}

#[test]
fn a_drain_closes_parked_connections_at_once() {
    for io in TRANSPORTS {
        let upstream = target_and_body();
        let proxy = Coregate::start(&config(io, "0-1", upstream.addr(), &routes_and_admin("")));
        let addr: SocketAddr = proxy.addr();
        let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(addr)).collect();
        for client in &mut clients {
            get(client, "/a");
        }
        wait_for_metric(&proxy, "coregate_client_connections_parked", 4.0, io);

        let started = Instant::now();
        let drainer = thread::spawn(move || proxy.shutdown(Duration::from_secs(8)));
        for client in &mut clients {
            assert!(client.is_closed(), "{io}: a parked connection is closed");
        }
        drainer.join().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{io}: the drain did not wait for parked connections ({:?})",
            started.elapsed()
        );
    }
}

#[test]
fn the_frames_of_a_burst_are_freed_once_its_connections_park() {
    // More than the parks that make a wave worth giving memory back for.
    const BURST: usize = 80;
    let arrived = Arc::new(AtomicUsize::new(0));
    let together = Arc::new(Barrier::new(BURST));
    // The burst's requests are answered only once all of them are in progress at once.
    let upstream = Upstream::start(Arc::new(move |req: &Recorded| {
        if arrived.fetch_add(1, Ordering::SeqCst) < BURST {
            together.wait();
        }
        Reply::Raw(ok(req.target.as_bytes()))
    }));
    let proxy = Coregate::start(&config(
        "uring",
        "0",
        upstream.addr(),
        &routes_and_admin(""),
    ));
    let addr = proxy.addr();
    let mut clients: Vec<Client> = thread::scope(|scope| {
        let burst: Vec<_> = (0..BURST)
            .map(|i| {
                scope.spawn(move || {
                    let mut client = Client::connect(addr);
                    assert_eq!(get(&mut client, &format!("/{i}")), format!("/{i}"));
                    client
                })
            })
            .collect();
        burst.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        metric(&proxy, "coregate_exchange_frames"),
        BURST as f64,
        "one frame per request in progress at once"
    );

    wait_for_metric(
        &proxy,
        "coregate_client_connections_parked",
        BURST as f64,
        "burst",
    );
    wait_for_metric(&proxy, "coregate_exchange_frames", 0.0, "burst parked");

    // Served on as before, with a frame made again.
    for (i, client) in clients.iter_mut().enumerate().take(3) {
        assert_eq!(get(client, &format!("/again/{i}")), format!("/again/{i}"));
    }
    assert_eq!(metric(&proxy, "coregate_exchange_frames"), 1.0);
}
