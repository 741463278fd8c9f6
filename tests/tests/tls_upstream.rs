//! TLS towards upstreams end to end: coregate (front, plain) in front of coregate (back, a TLS
//! listener) in front of a recording upstream. The front verifies the back's certificate (or
//! answers 502 with the reason logged), presents its own certificate when the back asks
//! (mTLS), and keeps TLS connections in pools keyed by their settings.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coregate_tests::client::Client;
use coregate_tests::harness::{Coregate, admin};
use coregate_tests::tls::{Authority, CertFiles, authority};
use coregate_tests::upstream::{Upstream, echo};

const TOKEN: &str = "secret-token-for-tls-tests";

/// The back: a TLS listener with a certificate for `backend.test` and `alt.test`, asking for
/// client certificates when `client_auth` says so, forwarding to `upstream`.
fn back(upstream: &Upstream, client_auth: &str) -> (Coregate, CertFiles) {
    let cert = authority().issue(
        &["backend.test", "alt.test"],
        &rcgen::PKCS_ECDSA_P256_SHA256,
    );
    let text = format!(
        "[runtime]\ncores = \"0\"\n\n[[listener]]\nname = \"back\"\nbind = \"127.0.0.1:0\"\n\
         tls = {{ certificates = [{}]{client_auth} }}\n\n\
         [admin]\nbind = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n\
         [[upstream]]\nname = \"app\"\nendpoints = [\"{}\"]\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"app\"\n",
        cert.toml(),
        upstream.addr()
    );
    (Coregate::start(&text), cert)
}

/// The front: a plain listener, upstream "back" at `back` with `tls`, and a second upstream
/// "alt" to the same address with `alt_tls` when given (routes `/alt/...`).
fn front(back: SocketAddr, tls: &str, alt_tls: Option<&str>) -> Coregate {
    let mut text = format!(
        "[runtime]\ncores = \"0\"\n\n[[listener]]\nname = \"front\"\nbind = \"127.0.0.1:0\"\n\n\
         [[upstream]]\nname = \"back\"\nendpoints = [\"{back}\"]\ntls = {{ {tls} }}\n\n"
    );
    if let Some(alt) = alt_tls {
        text.push_str(&format!(
            "[[upstream]]\nname = \"alt\"\nendpoints = [\"{back}\"]\ntls = {{ {alt} }}\n\n\
             [[route]]\npath_prefix = \"/alt/\"\nupstream = \"alt\"\n\n"
        ));
    }
    text.push_str("[[route]]\npath_prefix = \"/\"\nupstream = \"back\"\n");
    Coregate::start(&text)
}

fn ca() -> String {
    format!("ca = \"{}\"", authority().ca_file().display())
}

/// A counter of the back's `/metrics`.
fn metric(proxy: &Coregate, series: &str) -> f64 {
    let body = admin(
        proxy.server().admin_addr().unwrap(),
        "GET",
        "/metrics",
        Some(TOKEN),
    )
    .body;
    body.lines()
        .filter(|line| line.starts_with(series))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Waits (up to 5 s) for the back's counter to reach `n`.
fn wait_metric(proxy: &Coregate, series: &str, n: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let value = metric(proxy, series);
        if value >= n || Instant::now() > deadline {
            return value;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn requests_reach_a_verified_tls_upstream_over_pooled_connections() {
    let app = Upstream::start(echo());
    let (back, _) = back(&app, "");
    let front = front(
        back.addr(),
        &format!("sni = \"backend.test\", {}", ca()),
        None,
    );
    let mut client = Client::connect(front.addr());
    for i in 0..5 {
        let response = client.get(&format!("/r/{i}"), &[]);
        assert_eq!(response.status, 200, "{}", response.body_text());
    }
    let seen = app.wait_for(5);
    assert!(
        seen.iter()
            .all(|r| r.field("x-forwarded-proto") == Some("https"))
    );
    // Five requests, one TLS connection: the pool reused it.
    assert_eq!(
        wait_metric(&back, "coregate_tls_handshakes_total{kind=\"full\"}", 1.0),
        1.0
    );
    assert_eq!(
        metric(&back, "coregate_client_connections_accepted_total"),
        1.0
    );
}

#[test]
fn an_upstream_certificate_that_does_not_verify_is_answered_502() {
    let app = Upstream::start(echo());
    let (back, _) = back(&app, "");
    // A name the certificate does not cover.
    let wrong_name = front(
        back.addr(),
        &format!("sni = \"wrong.test\", {}", ca()),
        None,
    );
    let response = Client::connect(wrong_name.addr()).get("/", &[]);
    assert_eq!(response.status, 502);
    assert!(
        response
            .body_text()
            .contains("upstream TLS handshake failed"),
        "{}",
        response.body_text()
    );
    // A certificate from an authority the front does not trust.
    let stranger = Authority::stranger();
    let untrusted = front(
        back.addr(),
        &format!(
            "sni = \"backend.test\", ca = \"{}\"",
            stranger.ca_file().display()
        ),
        None,
    );
    assert_eq!(Client::connect(untrusted.addr()).get("/", &[]).status, 502);
    // verify = false trusts any certificate (test rigs).
    let trusting = front(back.addr(), "sni = \"wrong.test\", verify = false", None);
    assert_eq!(Client::connect(trusting.addr()).get("/", &[]).status, 200);
    assert_eq!(
        app.wait_for(1).len(),
        1,
        "only the trusting front got through"
    );
}

/// The back requires client certificates: the front without one is refused (502); with its
/// certificate the request goes through and the back forwards the front's identity.
#[test]
fn mtls_to_an_upstream() {
    let app = Upstream::start(echo());
    let client_auth = format!(
        ", client_ca = \"{}\", client_cert_header = \"x-client-cert\"",
        authority().ca_file().display()
    );
    let (back, _) = back(&app, &client_auth);
    let anonymous = front(
        back.addr(),
        &format!("sni = \"backend.test\", {}", ca()),
        None,
    );
    assert_eq!(Client::connect(anonymous.addr()).get("/", &[]).status, 502);

    let identity = authority().issue_client("front-proxy");
    let tls = format!(
        "sni = \"backend.test\", {}, cert = \"{}\", key = \"{}\"",
        ca(),
        identity.cert.display(),
        identity.key.display()
    );
    let with_cert = front(back.addr(), &tls, None);
    let response = Client::connect(with_cert.addr()).get("/mtls", &[]);
    assert_eq!(response.status, 200);
    assert_eq!(
        app.wait_for(1)[0].fields_named("x-client-cert"),
        ["front-proxy"]
    );
}

/// Two upstreams at the same address with different names never share a connection: each
/// has its own pool (two handshakes, each reused).
#[test]
fn tls_pools_are_keyed_by_their_settings() {
    let app = Upstream::start(echo());
    let (back, _) = back(&app, "");
    let front = front(
        back.addr(),
        &format!("sni = \"backend.test\", {}", ca()),
        Some(&format!("sni = \"alt.test\", {}", ca())),
    );
    let mut client = Client::connect(front.addr());
    for i in 0..3 {
        assert_eq!(client.get(&format!("/main/{i}"), &[]).status, 200);
        assert_eq!(client.get(&format!("/alt/{i}"), &[]).status, 200);
    }
    assert_eq!(
        wait_metric(&back, "coregate_tls_handshakes_total{kind=\"full\"}", 2.0),
        2.0,
        "one connection per name"
    );
    assert_eq!(
        metric(&back, "coregate_client_connections_accepted_total"),
        2.0
    );
}

/// A WebSocket through two coregates, the second reached over TLS: the front's tunnel seals
/// and opens records towards the back (a TLS client), the back's towards the front (a TLS
/// server); bytes cross both ways and a half-close travels through.
#[test]
fn a_websocket_crosses_a_tls_upstream() {
    let switcher = coregate_tests::upstream::switcher();
    let cert = authority().issue(&["backend.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let back = Coregate::start(&format!(
        "[runtime]\ncores = \"0\"\n\n[[listener]]\nname = \"back\"\nbind = \"127.0.0.1:0\"\n\
         tls = {{ certificates = [{}] }}\n\n[[upstream]]\nname = \"ws\"\nendpoints = [\"{switcher}\"]\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"ws\"\n",
        cert.toml()
    ));
    let front = front(
        back.addr(),
        &format!("sni = \"backend.test\", {}", ca()),
        None,
    );
    let mut client = Client::connect(front.addr());
    client
        .send(b"GET /ws HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n");
    assert_eq!(client.read_response(true).expect("an answer").status, 101);
    let payload: Vec<u8> = (0..64 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    client.send(&payload);
    assert!(client.read_exact(payload.len()) == payload.to_ascii_uppercase());
    client.finish_sending();
    assert_eq!(client.read_to_close(), b"bye");
}

/// With pooling off every request is a new connection to the TLS upstream; from the second on
/// the front offers a ticket the back sent after an earlier handshake (TLS 1.3 sends them once
/// the handshake is over, on coregate's own record layer, which hands them to rustls), so the
/// back counts one full handshake and resumptions after it.
#[test]
fn new_connections_to_a_tls_upstream_resume_with_the_tickets_it_sent() {
    let app = Upstream::start(echo());
    let (back, _) = back(&app, "");
    let front = Coregate::start(&format!(
        "[runtime]\ncores = \"0\"\n\n[[listener]]\nname = \"front\"\nbind = \"127.0.0.1:0\"\n\n\
         [[upstream]]\nname = \"back\"\nendpoints = [\"{}\"]\nmax_idle_per_endpoint = 0\n\
         tls = {{ sni = \"backend.test\", {} }}\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"back\"\n",
        back.addr(),
        ca()
    ));
    let mut client = Client::connect(front.addr());
    for i in 0..5 {
        let response = client.get(&format!("/t/{i}"), &[]);
        assert_eq!(response.status, 200, "{}", response.body_text());
    }
    assert_eq!(app.wait_for(5).len(), 5);
    let resumed = wait_metric(
        &back,
        "coregate_tls_handshakes_total{kind=\"resumed\"}",
        4.0,
    );
    let full = metric(&back, "coregate_tls_handshakes_total{kind=\"full\"}");
    assert_eq!(
        (full, resumed),
        (1.0, 4.0),
        "one full handshake, then resumptions"
    );
}
