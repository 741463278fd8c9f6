//! TLS termination settings: what a `[[listener]] tls = { ... }` table compiles into, and the
//! rustls server configuration each shard builds from it.
//!
//! | file | owns |
//! |---|---|
//! | this file | [`ListenerTls`] (validated settings), [`ListenerTls::server_config`] (one per shard per generation), `coregate check`'s TLS warnings |
//! | `certificate.rs` | one chain and key: loaded, matched, checked for expiry and order |
//! | `sni.rs` | choosing the certificate by server name: exact, wildcard, default or refusal |
//! | `pem.rs` | the PEM envelope, with line numbers for errors |
//! | `x509.rs` | a certificate's validity period and DNS names |
//! | `upstream.rs` | TLS towards upstreams: name, trust, client certificate (mTLS), each shard's client config, the pool key |
//! | `record.rs` | application records after the handshake: sealed and opened in place with the keys rustls negotiated |
//! | `ticket.rs` | resumption: ticket keys (made and rotated by the control plane, sent to every shard), each shard's sealer and session-id caches |
//!
//! The record layer itself (records received into the shard's buffers, encrypted into them and
//! sent on the ring) is `io/tls.rs`'s: it belongs behind `io::Conn::recv` and `io::Conn::send`.
//! This module does no I/O besides what the configuration loader asks of it (reading the
//! files, through `config/`).
//!
//! Certificates reload with the configuration: a new generation's snapshot carries new
//! server configurations, new connections handshake with them, and connections already open
//! keep the configuration they started with (an `Arc`), so a reload drops nothing.
//!
//! TLS is user space here: rustls's records on the shard's own ring. kTLS (`TCP_ULP "tls"`) is
//! not used; `coregate check` says so.

pub mod certificate;
pub mod pem;
pub mod record;
pub mod sni;
pub mod ticket;
pub mod upstream;
pub mod x509;

use std::sync::Arc;

use rustls::ServerConfig;
use rustls::server::{ServerSessionMemoryCache, WebPkiClientVerifier};

pub use certificate::{CertError, Certificate};
pub use sni::SniResolver;
pub use ticket::{ShardTls, TicketKeys, Ticketer};
pub use upstream::UpstreamTls;

/// The only application protocol coregate speaks over TLS today (`h2` joins once HTTP/2 exists).
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// Sessions each shard remembers per TLS listener for session-id resumption (TLS 1.2) and
/// stateful TLS 1.3 tickets: about 100 bytes each, so 4096 cost under half a MiB per shard.
pub const DEFAULT_SESSION_CACHE: usize = 4096;

/// Certificates expiring within this many days make `coregate check` warn.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// What a client that names a server no certificate covers gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownName {
    /// The default (first) certificate: the client decides whether it trusts it.
    Default,
    /// A handshake alert: the handshake fails.
    Refuse,
}

impl UnknownName {
    pub fn as_str(self) -> &'static str {
        match self {
            UnknownName::Default => "default",
            UnknownName::Refuse => "refuse",
        }
    }
}

/// The lowest TLS version a listener accepts (TLS 1.3 is always offered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MinVersion {
    Tls12,
    Tls13,
}

impl MinVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            MinVersion::Tls12 => "1.2",
            MinVersion::Tls13 => "1.3",
        }
    }
}

/// A listener's validated TLS settings. Immutable; shared by every shard's snapshot.
#[derive(Debug)]
pub struct ListenerTls {
    /// In file order; the first is the default.
    pub certificates: Vec<Certificate>,
    pub unknown_name: UnknownName,
    pub min_version: MinVersion,
    /// Client certificates asked for, when configured.
    pub client: Option<ClientAuth>,
    resolver: Arc<SniResolver>,
}

/// Client-certificate verification on a listener (`client_ca`, `client_auth`,
/// `client_cert_header`).
#[derive(Debug)]
pub struct ClientAuth {
    /// The CA bundle, as configured.
    pub ca_path: std::path::PathBuf,
    /// The certificates a client's chain must lead to.
    pub roots: Arc<rustls::RootCertStore>,
    /// A client without a certificate is refused (`"required"`) or served without an identity
    /// (`"optional"`). A certificate that does not verify is refused either way.
    pub required: bool,
    /// The request header that carries the verified identity upstream (lowercase). A
    /// client's own fields of this name are always removed first.
    pub header: Option<Box<str>>,
}

impl ListenerTls {
    /// Settings over loaded certificates (at least one).
    pub fn new(
        certificates: Vec<Certificate>,
        unknown_name: UnknownName,
        min_version: MinVersion,
    ) -> ListenerTls {
        let resolver = Arc::new(SniResolver::new(&certificates, unknown_name));
        ListenerTls {
            certificates,
            unknown_name,
            min_version,
            client: None,
            resolver,
        }
    }

    /// The same settings, asking clients for certificates.
    pub fn with_client_auth(self, client: ClientAuth) -> ListenerTls {
        ListenerTls {
            client: Some(client),
            ..self
        }
    }

    /// Whether a request for `host` (a name, or a `*.`-pattern of a route) gets a certificate
    /// made for it, rather than the default given to a name nobody covers.
    pub fn covers(&self, host: &str) -> bool {
        self.resolver.covers(host)
    }

    /// The rustls configuration one shard handshakes with on listener `name`: the shared
    /// certificates, the shard's ticket sealer (keys from the control plane) and its own
    /// session-id cache for the listener (a shard never touches another shard's state).
    pub fn server_config_for(&self, name: &str, shard: &ShardTls) -> Arc<ServerConfig> {
        let mut config = self.base_config();
        config.session_storage = shard.cache(name);
        config.ticketer = shard.ticketer.clone();
        Arc::new(config)
    }

    /// A configuration with a session cache of its own and no tickets (tests, benches).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let mut config = self.base_config();
        config.session_storage = ServerSessionMemoryCache::new(DEFAULT_SESSION_CACHE);
        Arc::new(config)
    }

    fn base_config(&self) -> ServerConfig {
        let provider = provider();
        let versions: &[&rustls::SupportedProtocolVersion] = match self.min_version {
            MinVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
            MinVersion::Tls13 => &[&rustls::version::TLS13],
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .expect("the ring provider supports TLS 1.2 and 1.3");
        let verifier = self.client.as_ref().and_then(|client| {
            let builder =
                WebPkiClientVerifier::builder_with_provider(client.roots.clone(), provider.clone());
            let builder = if client.required {
                builder
            } else {
                builder.allow_unauthenticated()
            };
            // Validation built the same verifier from the same roots, so this cannot fail.
            builder.build().ok()
        });
        let builder = match verifier {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.resolver.clone());
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        config.max_early_data_size = 0;
        // The record layer seals and opens application records itself (`record.rs`).
        config.enable_secret_extraction = true;
        config
    }
}

/// The crypto provider every TLS configuration uses: *ring*'s, which builds on a fresh machine
/// with a C compiler alone (aws-lc-rs would need cmake). rustls 0.23.48 deprecates it for not
/// offering post-quantum key exchange (X25519MLKEM768 is aws-lc-rs's); X25519, P-256 and P-384
/// are offered, X25519 first.
///
/// The order matters where coregate is the client (TLS upstreams): a server takes the first
/// group of the client's list it supports, and the client sends a key share for its first.
/// The provider's own default lists P-384 first, whose exchange costs several times
/// X25519's, so the order is set here. As a server, coregate follows the client's order.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::kx_group;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    Arc::new(provider)
}

/// Reads a CA bundle for verifying clients (PEM certificates) into trust anchors; an error
/// names the line.
pub fn load_roots(pem_bytes: &[u8]) -> Result<rustls::RootCertStore, (usize, String)> {
    let roots = load_roots_only(pem_bytes)?;
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), provider()).build();
    verifier.map_err(|e| (0, format!("cannot verify clients with this bundle ({e})")))?;
    Ok(roots)
}

/// Reads a CA bundle (PEM certificates) into trust anchors; an error names the line.
pub fn load_roots_only(pem_bytes: &[u8]) -> Result<rustls::RootCertStore, (usize, String)> {
    let blocks = pem::blocks(pem_bytes).map_err(|e| (e.line, e.message))?;
    let mut roots = rustls::RootCertStore::empty();
    for block in blocks {
        if block.label != "CERTIFICATE" {
            return Err((
                block.line,
                format!(
                    "a {:?} block in a CA bundle (expected CERTIFICATE blocks)",
                    block.label
                ),
            ));
        }
        roots
            .add(rustls::pki_types::CertificateDer::from(block.der))
            .map_err(|e| (block.line, format!("not a usable CA certificate ({e})")))?;
    }
    Ok(roots)
}

/// What `coregate check` warns about in a valid configuration's TLS: certificates expiring
/// within [`EXPIRY_WARNING_DAYS`] of `now`, and route hosts a TLS listener has no certificate
/// for. Each warning is one line naming the file or the host.
pub fn warnings<'a>(
    listeners: impl Iterator<Item = (&'a str, &'a ListenerTls)>,
    route_hosts: &[String],
    now: i64,
) -> Vec<String> {
    let mut warnings = Vec::new();
    for (name, tls) in listeners {
        for cert in &tls.certificates {
            let left = cert.facts.not_after - now;
            if left < EXPIRY_WARNING_DAYS * 86_400 {
                warnings.push(format!(
                    "listener {name:?}: {} expires on {} (in {} days)",
                    cert.cert_path.display(),
                    certificate::date(cert.facts.not_after),
                    left / 86_400
                ));
            }
        }
        for host in route_hosts {
            if !tls.covers(host) {
                warnings.push(format!(
                    "listener {name:?}: no certificate covers route host {host:?}; {}",
                    match tls.unknown_name {
                        UnknownName::Default => "its clients get the default certificate",
                        UnknownName::Refuse => "its clients' handshakes are refused",
                    }
                ));
            }
        }
    }
    warnings
}
