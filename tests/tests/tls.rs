//! TLS termination end to end, with certificates made at test time: the certificate a name
//! gets (exact, wildcard, default, refused), protocol versions and ALPN, what the upstream,
//! the access log and `/metrics` learn of a handshake, records larger than a buffer both ways,
//! the plain-to-https redirect, and a certificate swapped by a reload under load without a
//! failed request. Interoperability with `openssl s_client` and `curl` is in `tls_interop.rs`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use coregate_tests::client::Client;
use coregate_tests::harness::{ConfigFile, Coregate, admin};
use coregate_tests::tls::{
    CertFiles, TEST_NAME, any_cert_config, authority, client_config, default_cert,
};
use coregate_tests::upstream::{Recorded, Reply, Upstream, echo, ok};

const TOKEN: &str = "secret-token-for-tls-tests";

/// One shard (or `cores`), a TLS listener with `certificates` and `tls_extra` keys, an admin
/// listener, and `extra` TOML after an upstream "up".
fn tls_config(
    cores: &str,
    certificates: &[&CertFiles],
    tls_extra: &str,
    upstream: SocketAddr,
    extra: &str,
) -> String {
    let certs: Vec<String> = certificates.iter().map(|c| c.toml()).collect();
    format!(
        "[runtime]\ncores = \"{cores}\"\nbuffers_per_shard = 512\n\n\
         [[listener]]\nname = \"secure\"\nbind = \"127.0.0.1:0\"\n\
         tls = {{ certificates = [{}]{tls_extra} }}\n\n\
         [admin]\nbind = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n\n\
         [[upstream]]\nname = \"up\"\nendpoints = [\"{upstream}\"]\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"up\"\n{extra}",
        certs.join(", ")
    )
}

fn named(name: &'static str) -> Upstream {
    Upstream::start(Arc::new(move |_: &Recorded| {
        Reply::Raw(ok(name.as_bytes()))
    }))
}

/// The certificate a handshake asking for `name` got, or the handshake's error.
fn served(addr: SocketAddr, name: &str) -> Result<Vec<u8>, std::io::Error> {
    let (config, seen) = any_cert_config(&[], &[b"http/1.1"]);
    Client::connect_tls(addr, config, name)?;
    let der = seen.lock().unwrap().clone();
    Ok(der)
}

#[test]
fn sni_chooses_the_exact_name_then_a_wildcard_then_the_default() {
    let ca = authority();
    let default = ca.issue(&["default.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let wildcard = ca.issue(&["*.example.test"], &rcgen::PKCS_ECDSA_P384_SHA384);
    let exact = ca.issue(&["api.example.test"], &rcgen::PKCS_ED25519);
    let upstream = named("up");
    let proxy = Coregate::start(&tls_config(
        "0",
        &[&default, &wildcard, &exact],
        "",
        upstream.addr(),
        "",
    ));
    let addr = proxy.addr();
    assert_eq!(
        served(addr, "api.example.test").unwrap(),
        exact.der,
        "exact"
    );
    assert_eq!(
        served(addr, "API.Example.Test").unwrap(),
        exact.der,
        "any case"
    );
    assert_eq!(
        served(addr, "www.example.test").unwrap(),
        wildcard.der,
        "wildcard"
    );
    assert_eq!(
        served(addr, "a.b.example.test").unwrap(),
        default.der,
        "one label only"
    );
    assert_eq!(
        served(addr, "other.test").unwrap(),
        default.der,
        "unknown: default"
    );
    assert_eq!(
        served(addr, "127.0.0.1").unwrap(),
        default.der,
        "no SNI: default"
    );

    // A verifying client gets through to the upstream with the exact certificate.
    let mut client =
        Client::connect_tls(addr, client_config(&[]), "api.example.test").expect("handshake");
    let response = client.get("/", &[]);
    assert_eq!(
        (response.status, response.body_text().as_str()),
        (200, "up")
    );
}

#[test]
fn unknown_names_are_refused_when_configured_but_a_client_without_sni_is_served() {
    let known = authority().issue(&["known.test"], &rcgen::PKCS_ECDSA_P256_SHA256);
    let upstream = named("up");
    let proxy = Coregate::start(&tls_config(
        "0",
        &[&known],
        ", unknown_name = \"refuse\"",
        upstream.addr(),
        "",
    ));
    let err = served(proxy.addr(), "unknown.test").expect_err("refused");
    assert!(err.to_string().contains("alert"), "{err}");
    assert_eq!(served(proxy.addr(), "known.test").unwrap(), known.der);
    assert_eq!(served(proxy.addr(), "127.0.0.1").unwrap(), known.der);
    let metrics = admin(
        proxy.server().admin_addr().unwrap(),
        "GET",
        "/metrics",
        Some(TOKEN),
    );
    assert!(
        metrics
            .body
            .contains("coregate_tls_handshake_failures_total{reason=\"unknown_name\"} 1"),
        "{}",
        metrics.body
    );
}

#[test]
fn tls_1_2_and_1_3_are_offered_with_alpn_http_1_1() {
    let upstream = named("up");
    let proxy = Coregate::start(&tls_config("0", &[default_cert()], "", upstream.addr(), ""));
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let mut client =
            Client::connect_tls(proxy.addr(), client_config(&[version]), TEST_NAME).unwrap();
        let session = client.tls().unwrap();
        assert_eq!(session.protocol_version(), Some(expected));
        assert_eq!(session.alpn_protocol(), Some(&b"http/1.1"[..]));
        let response = client.get("/", &[]);
        assert_eq!(response.status, 200, "{expected:?}");
        // Keep-alive over TLS: a second request on the same session.
        assert_eq!(client.get("/again", &[]).status, 200, "{expected:?}");
    }
    // A client without ALPN is served; one offering only h2 is refused.
    let (no_alpn, _) = any_cert_config(&[], &[]);
    let mut client = Client::connect_tls(proxy.addr(), no_alpn, TEST_NAME).unwrap();
    assert_eq!(client.tls().unwrap().alpn_protocol(), None);
    assert_eq!(client.get("/", &[]).status, 200);
    let (h2_only, _) = any_cert_config(&[], &[b"h2"]);
    let err = Client::connect_tls(proxy.addr(), h2_only, TEST_NAME)
        .err()
        .expect("no protocol in common");
    assert!(err.to_string().contains("alert"), "{err}");

    let strict = Coregate::start(&tls_config(
        "0",
        &[default_cert()],
        ", min_version = \"1.3\"",
        upstream.addr(),
        "",
    ));
    assert!(
        Client::connect_tls(
            strict.addr(),
            client_config(&[&rustls::version::TLS12]),
            TEST_NAME
        )
        .is_err(),
        "TLS 1.2 refused with min_version = \"1.3\""
    );
}

#[test]
fn the_upstream_log_and_metrics_learn_what_the_handshake_established() {
    let dir = std::env::temp_dir().join(format!("coregate-tls-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let upstream = Upstream::start(echo());
    let extra = format!(
        "\n[access_log]\npath = \"{}\"\nformat = \"json\"\nflush_interval = \"10ms\"\n",
        log.display()
    );
    let proxy = Coregate::start(&tls_config(
        "0",
        &[default_cert()],
        "",
        upstream.addr(),
        &extra,
    ));
    let mut client = Client::connect_tls(
        proxy.addr(),
        client_config(&[&rustls::version::TLS13]),
        TEST_NAME,
    )
    .unwrap();
    assert_eq!(client.get("/facts", &[]).status, 200);
    let seen = upstream.wait_for(1);
    assert_eq!(seen[0].field("x-forwarded-proto"), Some("https"));

    let line = wait_for_line(&log);
    assert!(
        line.contains("\"tls_version\":\"TLSv1.3\",\"sni\":\"test.local\",\"alpn\":\"http/1.1\""),
        "{line}"
    );
    let metrics = admin(
        proxy.server().admin_addr().unwrap(),
        "GET",
        "/metrics",
        Some(TOKEN),
    );
    for sample in [
        "coregate_tls_handshakes_total{kind=\"full\"} 1",
        "coregate_tls_connections_total{version=\"TLSv1.3\",alpn=\"http/1.1\"} 1",
    ] {
        assert!(
            metrics.body.contains(sample),
            "{sample} in\n{}",
            metrics.body
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn wait_for_line(path: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(line) = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| text.lines().next().map(str::to_owned))
        {
            return line;
        }
        assert!(Instant::now() < deadline, "no access-log line");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Records of 16 KiB (longer than a 16 KiB pool buffer once framed) both ways, several per
/// request, on one keep-alive session.
#[test]
fn bodies_larger_than_a_record_cross_both_ways() {
    // Answers with the request's body.
    let upstream = Upstream::start(Arc::new(|req: &Recorded| Reply::Raw(ok(&req.body))));
    let proxy = Coregate::start(&tls_config("0", &[default_cert()], "", upstream.addr(), ""));
    let mut client = Client::connect_tls(proxy.addr(), client_config(&[]), TEST_NAME).unwrap();
    for (i, size) in [1, 16 * 1024, 100 * 1024 + 7].into_iter().enumerate() {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut request =
            format!("POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: {size}\r\n\r\n")
                .into_bytes();
        request.extend_from_slice(&body);
        client.send(&request);
        let response = client.read_response(false).expect("a response");
        assert_eq!(response.status, 200, "{size}");
        assert!(response.body == body, "{size}: the body came back whole");
        let seen = upstream.wait_for(i + 1);
        assert!(seen[i].body == body, "{size}: the upstream got the body");
    }
}

#[test]
fn plain_requests_to_a_redirect_https_route_are_sent_to_https() {
    let upstream = named("up");
    let text = format!(
        "[runtime]\ncores = \"0\"\n\n[[listener]]\nname = \"plain\"\nbind = \"127.0.0.1:0\"\n\n\
         [[listener]]\nname = \"secure\"\nbind = \"127.0.0.1:0\"\n{}\n\n\
         [[upstream]]\nname = \"up\"\nendpoints = [\"{}\"]\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"up\"\nredirect_https = true\n\
         https_port = 8443\n",
        coregate_tests::tls::listener_tls(),
        upstream.addr()
    );
    let proxy = Coregate::start(&text);
    let mut plain = Client::connect(proxy.addr());
    plain.send(b"GET /a/b?x=1 HTTP/1.1\r\nhost: example.test:8080\r\n\r\n");
    let response = plain.read_response(false).expect("an answer");
    assert_eq!(response.status, 308);
    assert_eq!(
        response.field("location"),
        Some("https://example.test:8443/a/b?x=1")
    );
    // The connection stays usable, and IPv6 hosts keep their brackets.
    plain.send(b"GET / HTTP/1.1\r\nhost: [::1]:8080\r\n\r\n");
    let response = plain.read_response(false).expect("an answer");
    assert_eq!(response.status, 308);
    assert_eq!(response.field("location"), Some("https://[::1]:8443/"));
    // Over TLS the route serves.
    let secure = proxy.server().listener_addr("secure").unwrap();
    let mut client = Client::connect_tls(secure, client_config(&[]), TEST_NAME).unwrap();
    let response = client.get("/a/b?x=1", &[]);
    assert_eq!(
        (response.status, response.body_text().as_str()),
        (200, "up")
    );
}

/// A WebSocket on a TLS listener: after the `101` the client's records are opened on the way
/// up and the upstream's bytes sealed on the way down, 100 KiB each way (records longer than a
/// buffer), and the client's `close_notify` reaches the upstream as EOF, whose last words come
/// back before the tunnel closes.
#[test]
fn a_websocket_over_tls_is_tunnelled_both_ways() {
    let upstream = coregate_tests::upstream::switcher();
    let proxy = Coregate::start(&tls_config("0", &[default_cert()], "", upstream, ""));
    let mut client = Client::connect_tls(proxy.addr(), client_config(&[]), TEST_NAME).unwrap();
    client
        .send(b"GET /ws HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n");
    let switched = client.read_response(true).expect("an answer");
    assert_eq!(switched.status, 101);
    let payload: Vec<u8> = (0..100 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
    client.send(&payload);
    let echoed = client.read_exact(payload.len());
    assert!(
        echoed == payload.to_ascii_uppercase(),
        "the payload came back whole"
    );
    client.send(b"hello");
    assert_eq!(client.read_exact(5), b"HELLO");
    client.finish_sending();
    assert_eq!(
        client.read_to_close(),
        b"bye",
        "the last words, then the end"
    );
}

/// Certificates swap with a reload while clients keep connecting and sending: new handshakes
/// get the new certificate, open sessions carry on, nothing fails; a reload naming a key that
/// does not match its certificate is refused with the file and key, and the new certificate
/// keeps serving.
#[test]
fn a_reload_swaps_the_certificate_under_load_without_a_failed_request() {
    let ca = authority();
    let first = ca.issue(&[TEST_NAME], &rcgen::PKCS_ECDSA_P256_SHA256);
    let second = ca.issue(&[TEST_NAME], &rcgen::PKCS_ECDSA_P256_SHA256);
    let upstream = named("up");
    let file = ConfigFile::new(&tls_config("0,1", &[&first], "", upstream.addr(), ""));
    let proxy = Coregate::start_file(file.path());
    let addr = proxy.addr();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok_count, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let load: Vec<_> = (0..3)
        .map(|i| {
            let (stop, ok_count, failed) = (stop.clone(), ok_count.clone(), failed.clone());
            thread::spawn(move || {
                let config = client_config(&[]);
                let mut keep: Option<Client> = None;
                while !stop.load(Ordering::Relaxed) {
                    // Thread 0 keeps one session; the others handshake for every request.
                    let client = match (i, keep.as_mut()) {
                        (0, Some(client)) => client,
                        _ => keep.insert(
                            match Client::connect_tls(addr, config.clone(), TEST_NAME) {
                                Ok(client) => client,
                                Err(_) => {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                            },
                        ),
                    };
                    client.send(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n");
                    match client.read_response(false) {
                        Some(r) if r.status == 200 => ok_count.fetch_add(1, Ordering::Relaxed),
                        _ => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
            })
        })
        .collect();
    let wait_for = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while ok_count.load(Ordering::Relaxed) < n {
            assert!(Instant::now() < deadline, "the load made no progress");
            thread::sleep(Duration::from_millis(5));
        }
    };
    wait_for(50);
    assert_eq!(served(addr, TEST_NAME).unwrap(), first.der);
    file.write(&tls_config("0,1", &[&second], "", upstream.addr(), ""));
    proxy.server().reload().expect("the new certificate loads");
    let after = ok_count.load(Ordering::Relaxed);
    wait_for(after + 50);
    for _ in 0..4 {
        assert_eq!(
            served(addr, TEST_NAME).unwrap(),
            second.der,
            "every shard swapped"
        );
    }

    // A key that does not match: refused, named, and the second certificate keeps serving.
    let mismatched = CertFiles {
        key: first.key.clone(),
        ..second.clone()
    };
    file.write(&tls_config("0,1", &[&mismatched], "", upstream.addr(), ""));
    let err = proxy.server().reload().expect_err("refused").to_string();
    assert!(
        err.contains("listener[1].tls.certificates[1].key") && err.contains("does not match"),
        "{err}"
    );
    let after = ok_count.load(Ordering::Relaxed);
    wait_for(after + 20);
    stop.store(true, Ordering::Relaxed);
    for thread in load {
        thread.join().unwrap();
    }
    assert_eq!(served(addr, TEST_NAME).unwrap(), second.der);
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests across the reloads"
    );
}

/// A client that does not trust the certificate ends the handshake with an alert: a failure
/// counted by its reason, never a completed handshake.
#[test]
fn a_client_distrusting_the_certificate_is_a_peer_alert_failure() {
    let upstream = named("up");
    let proxy = Coregate::start(&tls_config("0", &[default_cert()], "", upstream.addr(), ""));
    // The certificate covers test.local, not this name: the client refuses it.
    let err = Client::connect_tls(proxy.addr(), client_config(&[]), "elsewhere.test")
        .err()
        .expect("the client refuses");
    assert!(err.to_string().contains("certificate"), "{err}");
    let metrics = admin(
        proxy.server().admin_addr().unwrap(),
        "GET",
        "/metrics",
        Some(TOKEN),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut body = metrics.body;
    while !body.contains("coregate_tls_handshake_failures_total{reason=\"peer_alert\"} 1") {
        assert!(Instant::now() < deadline, "{body}");
        thread::sleep(Duration::from_millis(10));
        body = admin(
            proxy.server().admin_addr().unwrap(),
            "GET",
            "/metrics",
            Some(TOKEN),
        )
        .body;
    }
    assert!(
        body.contains("coregate_tls_handshakes_total{kind=\"full\"} 0"),
        "{body}"
    );
}

/// A resumed or full handshake on a new connection with `config`, and a request on it.
fn resumes(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> bool {
    let mut client = Client::connect_tls(addr, config.clone(), TEST_NAME).expect("handshake");
    // Reading the response also reads the tickets sent after the handshake.
    assert_eq!(client.get("/", &[]).status, 200);
    client.tls().unwrap().handshake_kind() == Some(rustls::HandshakeKind::Resumed)
}

fn sample(body: &str, name: &str) -> Vec<(String, f64)> {
    body.lines()
        .filter(|line| line.starts_with(name))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Tickets are sealed with keys the control plane makes and sends every shard, so a ticket
/// one shard issued resumes on the other: twenty resumptions spread over both shards, all
/// resumed (the first connection on the second shard can only hold a ticket from the first).
#[test]
fn a_ticket_issued_by_one_shard_resumes_on_the_other() {
    let upstream = named("up");
    let proxy = Coregate::start(&tls_config(
        "0,1",
        &[default_cert()],
        "",
        upstream.addr(),
        "",
    ));
    let config = client_config(&[&rustls::version::TLS13]);
    assert!(
        !resumes(proxy.addr(), &config),
        "the first handshake is full"
    );
    let before = admin(
        proxy.server().admin_addr().unwrap(),
        "GET",
        "/metrics",
        Some(TOKEN),
    );
    let accepted_before = sample(&before.body, "coregate_client_connections_accepted_total");
    for i in 0..20 {
        assert!(resumes(proxy.addr(), &config), "connection {i} resumed");
    }
    let after = admin(
        proxy.server().admin_addr().unwrap(),
        "GET",
        "/metrics",
        Some(TOKEN),
    )
    .body;
    let accepted_after = sample(&after, "coregate_client_connections_accepted_total");
    let per_shard: Vec<f64> = accepted_after
        .iter()
        .zip(&accepted_before)
        .map(|((_, a), (_, b))| a - b)
        .collect();
    assert_eq!(per_shard.len(), 2, "{accepted_after:?}");
    assert!(
        per_shard.iter().all(|&n| n > 0.0),
        "both shards resumed sessions: {per_shard:?}"
    );
    assert!(
        after.contains("coregate_tls_handshakes_total{kind=\"resumed\"} 20"),
        "{after}"
    );
}

/// A ticket stays good while its key is current or previous; two rotations later the client
/// gets a full handshake (and its request an answer), never an error.
#[test]
fn ticket_keys_rotate_without_failing_a_client() {
    let upstream = named("up");
    let proxy = Coregate::start(&tls_config("0", &[default_cert()], "", upstream.addr(), ""));
    let plane = proxy.server().plane();
    let rotate = || {
        plane.rotate_ticket_keys().expect("a new key");
        // A collection is answered after every command sent before it: the keys are in.
        plane.collect();
    };
    let config = client_config(&[&rustls::version::TLS13]);
    assert!(!resumes(proxy.addr(), &config));
    rotate();
    assert!(resumes(proxy.addr(), &config), "sealed by the previous key");
    // That resumption's tickets are sealed by the current key (generation 2).
    rotate();
    rotate();
    assert!(!resumes(proxy.addr(), &config), "two rotations later: full");
    assert!(
        resumes(proxy.addr(), &config),
        "and fresh tickets resume again"
    );
    assert_eq!(plane.ticket_keys().generation, 4);
}

/// TLS 1.2 clients that do not use tickets resume by session id, from the shard's cache.
#[test]
fn tls_1_2_resumes_by_session_id_from_the_shard_cache() {
    let upstream = named("up");
    let proxy = Coregate::start(&tls_config("0", &[default_cert()], "", upstream.addr(), ""));
    let mut config = (*client_config(&[&rustls::version::TLS12])).clone();
    config.resumption = rustls::client::Resumption::in_memory_sessions(16)
        .tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
    let config = Arc::new(config);
    assert!(!resumes(proxy.addr(), &config));
    assert!(resumes(proxy.addr(), &config), "resumed by session id");
}

/// A handshake refused, seen by the client either at once or (TLS 1.3: the server checks the
/// client's certificate after the client finished) as no answer to its first request.
fn refused(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> bool {
    let Ok(mut client) = Client::connect_tls(addr, config, TEST_NAME) else {
        return true;
    };
    client.send(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n");
    client.read_response(false).is_none()
}

fn client_cert_proxy(upstream: &Upstream, auth: &str) -> Coregate {
    let tls_extra = format!(
        ", client_ca = \"{}\", client_auth = \"{auth}\", client_cert_header = \"X-Client-Cert\"",
        authority().ca_file().display()
    );
    let limited = "[[route]]\npath = \"/limited\"\nupstream = \"up\"\n\
                   rate_limit = { rate = \"1/m\", burst = 1, key = \"client_cert\" }\n";
    // The limited route is listed first: the catch-all would match /limited too.
    let text = tls_config("0", &[default_cert()], &tls_extra, upstream.addr(), "");
    let text = text.replace(
        "[[route]]\npath_prefix",
        &format!("{limited}\n[[route]]\npath_prefix"),
    );
    Coregate::start(&text)
}

/// `client_auth = "required"`: no certificate or one from another authority is refused in the
/// handshake (counted as `client_certificate`); a verified client's identity goes upstream in
/// the configured header (a copy the client sent is dropped) and keys its rate limit.
#[test]
fn client_certificates_required_refused_and_forwarded() {
    let upstream = Upstream::start(echo());
    let proxy = client_cert_proxy(&upstream, "required");
    let addr = proxy.addr();
    assert!(refused(addr, client_config(&[])), "no certificate");
    let stranger = coregate_tests::tls::Authority::stranger().issue_client("mallory");
    assert!(
        refused(
            addr,
            coregate_tests::tls::client_config_with_cert(&stranger)
        ),
        "a certificate nobody trusts"
    );
    let alice = authority().issue_client("alice");
    let bob = authority().issue_client("bob");
    let mut client = Client::connect_tls(
        addr,
        coregate_tests::tls::client_config_with_cert(&alice),
        TEST_NAME,
    )
    .expect("alice's handshake");
    let response = client.get("/hello", &["x-client-cert: root"]);
    assert_eq!(response.status, 200);
    let seen = upstream.wait_for(1);
    assert_eq!(seen[0].fields_named("x-client-cert"), ["alice"]);
    // The limit counts per certificate: alice's second request is over, bob's first is not.
    assert_eq!(client.get("/limited", &[]).status, 200);
    assert_eq!(client.get("/limited", &[]).status, 429);
    let mut other = Client::connect_tls(
        addr,
        coregate_tests::tls::client_config_with_cert(&bob),
        TEST_NAME,
    )
    .expect("bob's handshake");
    assert_eq!(other.get("/limited", &[]).status, 200);

    let metrics = admin(
        proxy.server().admin_addr().unwrap(),
        "GET",
        "/metrics",
        Some(TOKEN),
    );
    assert!(
        metrics
            .body
            .contains("coregate_tls_handshake_failures_total{reason=\"client_certificate\"} 2"),
        "{}",
        metrics.body
    );
}

/// `client_auth = "optional"`: a client without a certificate is served without an identity
/// (and cannot forge one); one with a certificate has it forwarded.
#[test]
fn client_certificates_optional() {
    let upstream = Upstream::start(echo());
    let proxy = client_cert_proxy(&upstream, "optional");
    let mut anonymous = Client::connect_tls(proxy.addr(), client_config(&[]), TEST_NAME).unwrap();
    assert_eq!(anonymous.get("/a", &["x-client-cert: alice"]).status, 200);
    let carol = authority().issue_client("carol");
    let mut client = Client::connect_tls(
        proxy.addr(),
        coregate_tests::tls::client_config_with_cert(&carol),
        TEST_NAME,
    )
    .unwrap();
    assert_eq!(client.get("/b", &[]).status, 200);
    let seen = upstream.wait_for(2);
    assert!(
        seen[0].fields_named("x-client-cert").is_empty(),
        "{:?}",
        seen[0]
    );
    assert_eq!(seen[1].fields_named("x-client-cert"), ["carol"]);
    let stranger = coregate_tests::tls::Authority::stranger().issue_client("mallory");
    assert!(
        refused(
            proxy.addr(),
            coregate_tests::tls::client_config_with_cert(&stranger)
        ),
        "a certificate that does not verify is refused even when optional"
    );
}

/// The tests' clients speak plain HTTP to a port a stopped TLS proxy had once a plain proxy
/// binds it (tests run in parallel and reuse ports). Before: the address stayed noted as TLS,
/// and a client spoke TLS to the plain proxy, failing now and then with `InvalidContentType`
/// in tests that had nothing to do with TLS.
#[test]
fn a_port_a_plain_proxy_took_over_is_spoken_to_in_plain_http() {
    use coregate_tests::harness::{FORWARD_ALL, TLS, config};
    let upstream = Upstream::start(echo());
    let tls = Coregate::start(&config(TLS, "0", upstream.addr(), FORWARD_ALL));
    let addr = tls.addr();
    assert!(Client::connect(addr).tls().is_some());
    assert_eq!(Client::connect(addr).get("/a", &[]).status, 200);
    tls.shutdown(Duration::ZERO);
    let plain = Coregate::start(
        &config("uring", "0", upstream.addr(), FORWARD_ALL)
            .replace("127.0.0.1:0", &addr.to_string()),
    );
    assert_eq!(plain.addr(), addr, "the plain proxy took the port over");
    let mut client = Client::connect(addr);
    assert!(
        client.tls().is_none(),
        "a client would speak TLS to a plain proxy"
    );
    assert_eq!(client.get("/b", &[]).status, 200);
}
