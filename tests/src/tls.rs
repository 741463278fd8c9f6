//! TLS for the end-to-end tests: a certificate authority and certificates made at test time
//! (rcgen), written to a directory of the test process; client configurations trusting that
//! authority; and the list of proxies whose first listener speaks TLS, so [`Client::connect`]
//! and [`exchange`] speak TLS to them and every conformance case runs over both transports.
//!
//! [`Client::connect`]: crate::client::Client::connect
//! [`exchange`]: crate::harness::exchange

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

/// The name test clients ask for (SNI) unless a test says otherwise.
pub const TEST_NAME: &str = "test.local";

/// The process's certificate authority.
pub struct Authority {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pub cert: rcgen::Certificate,
    dir: PathBuf,
}

/// A certificate and key written as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The leaf's DER, to tell which certificate a handshake got.
    pub der: Vec<u8>,
}

impl CertFiles {
    /// `{ cert = "...", key = "..." }` for a listener's `certificates`.
    pub fn toml(&self) -> String {
        format!(
            "{{ cert = \"{}\", key = \"{}\" }}",
            self.cert.display(),
            self.key.display()
        )
    }
}

/// The process's authority, made on first use.
pub fn authority() -> &'static Authority {
    static AUTHORITY: OnceLock<Authority> = OnceLock::new();
    AUTHORITY.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("coregate-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the certificate directory");
        let key = rcgen::KeyPair::generate().expect("a CA key");
        let mut params = rcgen::CertificateParams::new(vec![]).expect("CA parameters");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "coregate test CA");
        let cert = params.self_signed(&key).expect("a CA certificate");
        std::fs::write(dir.join("ca.pem"), cert.pem()).expect("write the CA");
        Authority {
            issuer: rcgen::Issuer::new(params, key),
            cert,
            dir,
        }
    })
}

impl Authority {
    /// The CA certificate's PEM file (for curl and openssl).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `names` signed by the authority, with a key of `alg`, written to
    /// fresh files.
    pub fn issue(&self, names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> CertFiles {
        let key = rcgen::KeyPair::generate_for(alg).expect("a key");
        self.issue_for_key(names, &key)
    }

    /// A certificate for `names` and an existing key, written to fresh files.
    pub fn issue_for_key(&self, names: &[&str], key: &rcgen::KeyPair) -> CertFiles {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .expect("names")
            .signed_by(key, &self.issuer)
            .expect("a certificate");
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let files = CertFiles {
            cert: self.dir.join(format!("cert-{n}.pem")),
            key: self.dir.join(format!("cert-{n}.key")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write a certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write a key");
        files
    }

    /// A client certificate naming `common_name` (no subject alternative names), written to
    /// fresh files.
    pub fn issue_client(&self, common_name: &str) -> CertFiles {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let key = rcgen::KeyPair::generate().expect("a key");
        let mut params = rcgen::CertificateParams::new(vec![]).expect("parameters");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer).expect("a certificate");
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let files = CertFiles {
            cert: self.dir.join(format!("client-{n}.pem")),
            key: self.dir.join(format!("client-{n}.key")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write a certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write a key");
        files
    }

    /// Another authority, in a directory of its own (for certificates nobody trusts).
    pub fn stranger() -> Authority {
        let dir =
            std::env::temp_dir().join(format!("coregate-tls-stranger-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the directory");
        let key = rcgen::KeyPair::generate().expect("a CA key");
        let mut params = rcgen::CertificateParams::new(vec![]).expect("CA parameters");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).expect("a CA certificate");
        std::fs::write(dir.join("ca.pem"), cert.pem()).expect("write the CA");
        Authority {
            issuer: rcgen::Issuer::new(params, key),
            cert,
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The certificate every TLS conformance run serves: `test.local`, `localhost`, and any name
/// under `wild.test`.
pub fn default_cert() -> &'static CertFiles {
    static CERT: OnceLock<CertFiles> = OnceLock::new();
    CERT.get_or_init(|| {
        authority().issue(
            &[TEST_NAME, "localhost", "*.wild.test"],
            &rcgen::PKCS_ECDSA_P256_SHA256,
        )
    })
}

/// `tls = { ... }` for a listener serving [`default_cert`].
pub fn listener_tls() -> String {
    format!("tls = {{ certificates = [{}] }}", default_cert().toml())
}

/// A client configuration trusting the test authority, offering `http/1.1`, with the given
/// protocol versions (empty: rustls's defaults, 1.2 and 1.3).
pub fn client_config(versions: &[&'static rustls::SupportedProtocolVersion]) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(authority().cert.der().to_vec()))
        .expect("the CA is a valid root");
    let builder = ClientConfig::builder_with_provider(coregate_engine::tls::provider());
    let builder = if versions.is_empty() {
        builder.with_safe_default_protocol_versions()
    } else {
        builder.with_protocol_versions(versions)
    }
    .expect("versions the provider supports");
    let mut config = builder.with_root_certificates(roots).with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// [`client_config`] presenting the client certificate `cert`.
pub fn client_config_with_cert(cert: &CertFiles) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from(authority().cert.der().to_vec()))
        .expect("the CA is a valid root");
    let chain = vec![CertificateDer::from(cert.der.clone())];
    let key_pem = std::fs::read_to_string(&cert.key).expect("the key");
    let key = rcgen::KeyPair::from_pem(&key_pem).expect("a PEM key");
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut config = ClientConfig::builder_with_provider(coregate_engine::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("a usable client certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A client session for `name`.
pub fn client_session(config: Arc<ClientConfig>, name: &str) -> ClientConnection {
    let name = ServerName::try_from(name.to_owned()).expect("a valid server name");
    ClientConnection::new(config, name).expect("a client session")
}

fn tls_proxies() -> &'static Mutex<HashSet<SocketAddr>> {
    static PROXIES: OnceLock<Mutex<HashSet<SocketAddr>>> = OnceLock::new();
    PROXIES.get_or_init(Default::default)
}

/// Notes whether the proxy now listening at `addr` speaks TLS (called when a proxy starts).
pub fn note_speaks_tls(addr: SocketAddr, tls: bool) {
    let mut proxies = tls_proxies().lock().expect("registry");
    if tls {
        proxies.insert(addr);
    } else {
        proxies.remove(&addr);
    }
}

/// Whether the proxy at `addr` speaks TLS.
pub fn speaks_tls(addr: SocketAddr) -> bool {
    tls_proxies().lock().expect("registry").contains(&addr)
}

/// A client configuration that accepts any certificate (signatures still checked) and keeps
/// the last one it was shown, for tests of which certificate a name gets.
pub fn any_cert_config(
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> (Arc<ClientConfig>, Arc<Mutex<Vec<u8>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let provider = coregate_engine::tls::provider();
    let verifier = Arc::new(AnyCert {
        seen: seen.clone(),
        algorithms: provider.signature_verification_algorithms,
    });
    let builder = ClientConfig::builder_with_provider(provider);
    let builder = if versions.is_empty() {
        builder.with_safe_default_protocol_versions()
    } else {
        builder.with_protocol_versions(versions)
    }
    .expect("versions the provider supports");
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    (Arc::new(config), seen)
}

#[derive(Debug)]
struct AnyCert {
    seen: Arc<Mutex<Vec<u8>>>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.seen.lock().expect("seen") = end_entity.to_vec();
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
