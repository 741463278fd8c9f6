//! Rate limits and authentication at the edge, end to end: allowed, limited (429 with its
//! fields, nothing upstream), 401 and 403 with their challenges, identities and claims forwarded
//! (and not forgeable by the client), and a node-wide limit that holds across two shards.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use coregate_tests::client::Client;
use coregate_tests::harness::{Coregate, MECHANISMS, config};
use coregate_tests::upstream::{Recorded, Reply, Upstream, echo, ok};

const HS_SECRET: &str = "an e2e secret that is long enough for HS256";
const EC_PRIVATE: &str = include_str!("../../engine/src/auth/testdata/es256-private.pem");
const EC_PUBLIC_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../engine/src/auth/testdata/es256-public.pem"
);

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// An HS256 token for `claims`.
fn hs256(claims: &serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, HS_SECRET.as_bytes());
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64(tag.as_ref()))
}

/// An ES256 token for `claims`, signed with the test key pair's private half.
fn es256(claims: &serde_json::Value) -> String {
    let der: String = EC_PRIVATE
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(der)
        .unwrap();
    let rng = ring::rand::SystemRandom::new();
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &der,
        &rng,
    )
    .unwrap();
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"ES256","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let signature = pair.sign(&rng, input.as_bytes()).unwrap();
    format!("{input}.{}", b64(signature.as_ref()))
}

fn counting_upstream() -> Upstream {
    Upstream::start(Arc::new(|_: &Recorded| Reply::Raw(ok(b"through"))))
}

#[test]
fn over_the_limit_is_429_with_its_fields_and_never_reaches_the_upstream() {
    for io in MECHANISMS {
        let upstream = counting_upstream();
        let routes = "[[route]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"up\"\n\
                      rate_limit = { rate = \"1/m\", burst = 3, key = \"header:x-api-key\" }\n";
        let proxy = Coregate::start(&config(io, "0", upstream.addr(), routes));
        let mut client = Client::connect(proxy.addr());
        for _ in 0..3 {
            assert_eq!(client.get("/", &["x-api-key: alpha"]).status, 200, "{io}");
        }
        let limited = client.get("/", &["x-api-key: alpha"]);
        assert_eq!(limited.status, 429, "{io}");
        let retry: u64 = limited
            .field("retry-after")
            .expect("retry-after")
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{io}: retry-after {retry}");
        assert_eq!(
            limited.field("ratelimit-policy"),
            Some("\"api\";q=1;w=60"),
            "{io}"
        );
        let remaining = limited.field("ratelimit").expect("ratelimit");
        assert!(remaining.starts_with("\"api\";r=0;t="), "{io}: {remaining}");
        assert_eq!(limited.field("content-type"), Some("text/plain"), "{io}");
        assert!(limited.body_text().contains("rate limit"), "{io}");
        assert_eq!(
            limited.field("connection"),
            None,
            "{io}: the connection stays open"
        );
        // Another key has its own budget; no key at all is one more key.
        assert_eq!(client.get("/", &["x-api-key: beta"]).status, 200, "{io}");
        assert_eq!(client.get("/", &[]).status, 200, "{io}");
        assert_eq!(
            upstream.requests().len(),
            5,
            "{io}: the limited request never went up"
        );
    }
}

/// A request without the limit's header is keyed as having none, whatever an earlier request
/// on the shard carried: the shard reuses its field slots, and the slots past this request's
/// fields still hold the spans of the earlier one's.
#[test]
fn a_missing_key_header_never_reads_an_earlier_requests_fields() {
    for io in MECHANISMS {
        let upstream = counting_upstream();
        let routes = "[[route]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"up\"\n\
                      rate_limit = { rate = \"1/m\", burst = 1, key = \"header:x-api-key\" }\n";
        // One shard, so both connections share its field slots.
        let proxy = Coregate::start(&config(io, "0", upstream.addr(), routes));
        // Field 1 of this request: `x-api-key` at bytes 25..34, its value at 36..40.
        let keyed = b"GET / HTTP/1.1\r\nHost: h\r\nx-api-key: KEY1\r\n\r\n";
        let mut first = Client::connect(proxy.addr());
        first.send(keyed);
        assert_eq!(
            first.read_response(false).expect("answer").status,
            200,
            "{io}"
        );
        first.send(keyed);
        assert_eq!(
            first.read_response(false).expect("answer").status,
            429,
            "{io}: KEY1 has used its burst"
        );
        // One field only, and the same bytes at 25..34 and 36..40, inside the target.
        let unkeyed = b"GET /aaaaaaaaaaaaaaaaaaaax-api-key::KEY1 HTTP/1.1\r\nHost: h\r\n\r\n";
        assert_eq!(&unkeyed[25..34], b"x-api-key");
        assert_eq!(&unkeyed[36..40], b"KEY1");
        let mut second = Client::connect(proxy.addr());
        second.send(unkeyed);
        assert_eq!(
            second.read_response(false).expect("answer").status,
            200,
            "{io}: a request without the header has a budget of its own"
        );
        assert_eq!(upstream.requests().len(), 2, "{io}");
    }
}

#[test]
fn api_keys_identify_clients_who_cannot_forge_their_identity() {
    for io in MECHANISMS {
        let upstream = Upstream::start(echo());
        let routes = r#"
[[auth]]
name = "partners"
kind = "api_key"
keys = [{ identity = "acme", key = "acme-key-0123456789" }]
identity_header = "x-consumer"

[[route]]
path_prefix = "/"
upstream = "up"
auth = "partners"
rate_limit = { rate = "1/m", burst = 2, key = "identity" }
"#;
        let proxy = Coregate::start(&config(io, "0", upstream.addr(), routes));
        let mut client = Client::connect(proxy.addr());
        let missing = client.get("/", &[]);
        assert_eq!(missing.status, 401, "{io}");
        assert_eq!(
            missing.field("www-authenticate"),
            Some("ApiKey realm=\"coregate\", header=\"x-api-key\""),
            "{io}"
        );
        let wrong = client.get("/", &["x-api-key: acme-key-012345678X"]);
        assert_eq!(wrong.status, 401, "{io}");
        assert_eq!(
            upstream.requests().len(),
            0,
            "{io}: refused requests stay here"
        );

        let through = client.get(
            "/",
            &["x-api-key: acme-key-0123456789", "x-consumer: admin"],
        );
        assert_eq!(through.status, 200, "{io}");
        let bearer = client.get("/", &["authorization: Bearer acme-key-0123456789"]);
        assert_eq!(
            bearer.status, 200,
            "{io}: the key may come as a bearer token"
        );
        let seen = upstream.requests();
        assert_eq!(
            seen[0].fields_named("x-consumer"),
            ["acme"],
            "{io}: not the forged one"
        );
        // The identity keys the limit: the third request of acme is refused.
        let third = client.get("/", &["x-api-key: acme-key-0123456789"]);
        assert_eq!(third.status, 429, "{io}");
    }
}

#[test]
fn jwt_outcomes_allowed_401_and_403() {
    for io in MECHANISMS {
        let upstream = Upstream::start(echo());
        let routes = format!(
            r#"
[[auth]]
name = "users"
kind = "jwt"
secret = "{HS_SECRET}"
public_key_file = "{EC_PUBLIC_PATH}"
issuer = "https://issuer.test"
audience = "api"
require = [{{ claim = "scope", contains = "read" }}]
forward_claims = {{ email = "x-user-email" }}
identity_header = "x-user"

[[route]]
path_prefix = "/"
upstream = "up"
auth = "users"
"#
        );
        let proxy = Coregate::start(&config(io, "0", upstream.addr(), &routes));
        let mut client = Client::connect(proxy.addr());
        let good = serde_json::json!({
            "sub": "user-7", "iss": "https://issuer.test", "aud": "api",
            "exp": now() + 300, "scope": "read write", "email": "u7@example.test"
        });
        for token in [hs256(&good), es256(&good)] {
            let response = client.get(
                "/",
                &[
                    &format!("authorization: Bearer {token}"),
                    "x-user: someone-else",
                    "x-user-email: forged@example.test",
                ],
            );
            assert_eq!(response.status, 200, "{io}: {}", response.body_text());
        }
        let seen = upstream.requests();
        assert_eq!(seen.len(), 2, "{io}");
        for request in &seen {
            assert_eq!(request.fields_named("x-user"), ["user-7"], "{io}");
            assert_eq!(
                request.fields_named("x-user-email"),
                ["u7@example.test"],
                "{io}"
            );
        }

        let mut expired = good.clone();
        expired["exp"] = serde_json::json!(now() - 3600);
        let mut wrong_issuer = good.clone();
        wrong_issuer["iss"] = serde_json::json!("https://elsewhere.test");
        // The signature's last character changed: to 'Q' from 'A', else to 'A' (both keep the
        // unused low bits zero, so the token stays canonical base64url and only the signature
        // is wrong).
        let mut tampered = hs256(&good);
        let last = tampered.pop();
        tampered.push(if last == Some('A') { 'Q' } else { 'A' });
        for (what, authorization) in [
            ("missing", None),
            ("expired", Some(hs256(&expired))),
            ("wrong issuer", Some(hs256(&wrong_issuer))),
            ("bad signature", Some(tampered)),
            ("not a token", Some("not.a.token".to_owned())),
        ] {
            let header = authorization.map(|t| format!("authorization: Bearer {t}"));
            let extra: Vec<&str> = header.iter().map(String::as_str).collect();
            let response = client.get("/", &extra);
            assert_eq!(response.status, 401, "{io}: {what}");
            let challenge = response.field("www-authenticate").unwrap_or_default();
            assert!(
                challenge.starts_with("Bearer realm=\"coregate\""),
                "{io}: {what}: {challenge}"
            );
            if what != "missing" {
                assert!(
                    challenge.contains("error=\"invalid_token\""),
                    "{io}: {what}: {challenge}"
                );
            }
        }
        let mut reader = good.clone();
        reader["scope"] = serde_json::json!("write");
        let forbidden = client.get("/", &[&format!("authorization: Bearer {}", hs256(&reader))]);
        assert_eq!(forbidden.status, 403, "{io}");
        assert!(
            forbidden
                .field("www-authenticate")
                .unwrap_or_default()
                .contains("error=\"insufficient_scope\""),
            "{io}"
        );
        assert_eq!(
            upstream.requests().len(),
            2,
            "{io}: no refused request went up"
        );
    }
}

/// Sends GETs on `keep_alive` connections (or a new one per request) until `stop`; counts 200s
/// and 429s.
fn hammer(
    addr: std::net::SocketAddr,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
    allowed: Arc<AtomicU64>,
    limited: Arc<AtomicU64>,
) {
    let mut stream: Option<TcpStream> = None;
    let mut buf = vec![0u8; 4096];
    while !stop.load(Ordering::SeqCst) {
        let conn = match &mut stream {
            Some(conn) => conn,
            None => match TcpStream::connect(addr) {
                Ok(conn) => stream.insert(conn),
                Err(_) => continue,
            },
        };
        let connection = if keep_alive { "keep-alive" } else { "close" };
        if conn
            .write_all(
                format!("GET / HTTP/1.1\r\nhost: t\r\nconnection: {connection}\r\n\r\n").as_bytes(),
            )
            .is_err()
        {
            stream = None;
            continue;
        }
        let mut got = Vec::new();
        let status = loop {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
            let text = String::from_utf8_lossy(&got);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|l| l.trim().parse().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    break head.split(' ').nth(1).map(str::to_owned);
                }
            }
        };
        match status.as_deref() {
            Some("200") => allowed.fetch_add(1, Ordering::SeqCst),
            Some("429") => limited.fetch_add(1, Ordering::SeqCst),
            _ => 0,
        };
        if !keep_alive || status.is_none() {
            stream = None;
        }
    }
}

/// Admitted requests over `seconds` of load far above the limit, through two shards.
fn admitted_under_load(keep_alive: bool, threads: usize, seconds: f64) -> (u64, u64, f64) {
    let upstream = counting_upstream();
    let routes = "[[route]]\nname = \"api\"\npath_prefix = \"/\"\nupstream = \"up\"\n\
                  rate_limit = { rate = \"40/s\", burst = 1, key = \"route\" }\n";
    let proxy = Coregate::start(&config("uring", "0-1", upstream.addr(), routes));
    let stop = Arc::new(AtomicBool::new(false));
    let allowed = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, allowed, limited) = (stop.clone(), allowed.clone(), limited.clone());
            let addr = proxy.addr();
            thread::spawn(move || hammer(addr, keep_alive, stop, allowed, limited))
        })
        .collect();
    thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    (
        allowed.load(Ordering::SeqCst),
        limited.load(Ordering::SeqCst),
        elapsed,
    )
}

#[test]
fn the_node_wide_limit_holds_across_two_shards() {
    // One keep-alive connection: all of the key's traffic on one shard, which must get the
    // whole rate once the shares are rebalanced; then connections spread over both shards.
    for (what, keep_alive, threads) in [("one shard", true, 1), ("spread", false, 4)] {
        let (allowed, limited, elapsed) = admitted_under_load(keep_alive, threads, 4.0);
        let expected = 40.0 * elapsed + 1.0;
        let ratio = allowed as f64 / expected;
        eprintln!(
            "{what}: {allowed} admitted, {limited} limited in {elapsed:.2} s, ratio {ratio:.3}"
        );
        assert!(
            limited > allowed,
            "{what}: the load was above the limit ({allowed} allowed, {limited} limited)"
        );
        assert!(
            (0.9..=1.1).contains(&ratio),
            "{what}: {allowed} admitted in {elapsed:.2} s, expected {expected:.0} (ratio {ratio:.3})"
        );
    }
}
