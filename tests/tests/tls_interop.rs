//! TLS interoperability with the clients people use: `curl` (TLS 1.2 and 1.3, HTTP/1.1 by
//! ALPN, verifying the chain and the name) and `openssl s_client` (SNI, ALPN, verification),
//! and keys in every format OpenSSL writes (PKCS #8, SEC1, PKCS #1 RSA).
//!
//! `.ci/run` installs both tools; where one is absent (a developer machine without them) the
//! test says so and skips what needs it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use coregate_tests::client::Client;
use coregate_tests::harness::Coregate;
use coregate_tests::tls::{CertFiles, TEST_NAME, authority, client_config, default_cert};
use coregate_tests::upstream::{Recorded, Reply, Upstream, ok};

fn tool(name: &str) -> bool {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
        || Command::new(name)
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
    if !found {
        eprintln!("SKIPPED: `{name}` is not installed (.ci/run installs it with apt-get)");
    }
    found
}

fn proxy(certificates: &[&CertFiles], upstream: &Upstream) -> Coregate {
    let certs: Vec<String> = certificates.iter().map(|c| c.toml()).collect();
    Coregate::start(&format!(
        "[runtime]\ncores = \"0\"\n\n[[listener]]\nname = \"secure\"\nbind = \"127.0.0.1:0\"\n\
         tls = {{ certificates = [{}] }}\n\n[[upstream]]\nname = \"up\"\nendpoints = [\"{}\"]\n\n\
         [[route]]\npath_prefix = \"/\"\nupstream = \"up\"\n",
        certs.join(", "),
        upstream.addr()
    ))
}

fn hello() -> Upstream {
    Upstream::start(Arc::new(|_: &Recorded| Reply::Raw(ok(b"hello over tls"))))
}

fn curl(addr: SocketAddr, extra: &[&str]) -> (bool, String, String) {
    let url = format!("https://{TEST_NAME}:{}/curl", addr.port());
    let resolve = format!("{TEST_NAME}:{}:127.0.0.1", addr.port());
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "10", "--http1.1"])
        .args(["--cacert", &authority().ca_file().display().to_string()])
        .args(["--resolve", &resolve])
        .args(["--write-out", "\n%{http_code} %{http_version}"])
        .args(extra)
        .arg(&url)
        .output()
        .expect("run curl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn curl_gets_a_page_over_tls_1_2_and_1_3() {
    if !tool("curl") {
        return;
    }
    let upstream = hello();
    let proxy = proxy(&[default_cert()], &upstream);
    for versions in [&["--tlsv1.3"][..], &["--tlsv1.2", "--tls-max", "1.2"][..]] {
        let (ok, out, err) = curl(proxy.addr(), versions);
        assert!(ok, "curl {versions:?} failed: {err}");
        assert_eq!(out, "hello over tls\n200 1.1", "{versions:?}");
    }
    // A name the certificate does not cover: curl refuses the handshake's certificate.
    let port = proxy.addr().port();
    let out = Command::new("curl")
        .args(["--silent", "--max-time", "10"])
        .args(["--cacert", &authority().ca_file().display().to_string()])
        .args(["--resolve", &format!("other.test:{port}:127.0.0.1")])
        .arg(format!("https://other.test:{port}/"))
        .output()
        .expect("run curl");
    assert!(
        !out.status.success(),
        "curl accepted a certificate for another name"
    );
}

#[test]
fn openssl_s_client_verifies_the_chain_and_agrees_on_alpn() {
    if !tool("openssl") {
        return;
    }
    let upstream = hello();
    let proxy = proxy(&[default_cert()], &upstream);
    let mut child = Command::new("openssl")
        .args(["s_client", "-connect", &proxy.addr().to_string()])
        .args(["-servername", TEST_NAME, "-alpn", "http/1.1", "-ign_eof"])
        .args(["-verify_return_error", "-verify_hostname", TEST_NAME])
        .args(["-CAfile", &authority().ca_file().display().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"GET /s_client HTTP/1.1\r\nhost: test.local\r\nconnection: close\r\n\r\n")
        .unwrap();
    let out = child.wait_with_output().expect("openssl finishes");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(text.contains("ALPN protocol: http/1.1"), "{text}");
    assert!(text.contains("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("hello over tls"), "{text}");
}

/// Runs openssl with `args`; panics with its error output on failure.
fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Keys as OpenSSL writes them: RSA in PKCS #8 and PKCS #1 ("RSA PRIVATE KEY"), ECDSA in SEC1
/// ("EC PRIVATE KEY"); each serves a handshake.
#[test]
fn keys_in_every_openssl_format_serve() {
    if !tool("openssl") {
        return;
    }
    let dir: PathBuf = authority().dir().join("openssl-keys");
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        &path("rsa8.key"),
    ]);
    openssl(&[
        "rsa",
        "-in",
        &path("rsa8.key"),
        "-traditional",
        "-out",
        &path("rsa1.key"),
    ]);
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &path("ec1.key"),
    ]);
    let upstream = hello();
    for (key, label) in [
        ("rsa8.key", "PRIVATE KEY"),
        ("rsa1.key", "RSA PRIVATE KEY"),
        ("ec1.key", "EC PRIVATE KEY"),
    ] {
        let key_path = dir.join(key);
        let pem = std::fs::read_to_string(&key_path).unwrap();
        assert!(pem.contains(&format!("BEGIN {label}")), "{key}: {pem}");
        let cert = certificate_for(&key_path);
        let proxy = proxy(&[&cert], &upstream);
        let mut client =
            Client::connect_tls(proxy.addr(), client_config(&[]), TEST_NAME).expect(key);
        assert_eq!(client.get("/", &[]).status, 200, "{key}");
    }
}

/// A certificate for `test.local` signed by the test authority, for the key in `key_path`.
fn certificate_for(key_path: &Path) -> CertFiles {
    // rcgen reads PKCS #8 only: convert for it, keep the original file for coregate.
    let pkcs8 = key_path.with_extension("p8");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        &key_path.display().to_string(),
        "-out",
        &pkcs8.display().to_string(),
    ]);
    let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&pkcs8).unwrap())
        .expect("rcgen reads the key");
    let files = authority().issue_for_key(&[TEST_NAME], &key);
    CertFiles {
        key: key_path.to_path_buf(),
        ..files
    }
}
