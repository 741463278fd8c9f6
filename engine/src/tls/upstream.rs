//! TLS towards an upstream: what `[[upstream]] tls = { sni, ca, verify, cert, key }` compiles
//! into, and the rustls client configuration each shard connects with.
//!
//! The name sent (SNI) and checked against the upstream's certificate is `sni` when given,
//! else the endpoint's address (no SNI is sent for an address; the certificate must name the
//! address). With `verify = true` (the default) the certificate must chain to the `ca`
//! bundle; `verify = false` still checks the handshake's signatures but trusts any
//! certificate, for test rigs only. `cert` and `key` are coregate's own client certificate
//! (mTLS).
//!
//! Pooled upstream connections are keyed by address *and* [`UpstreamTls::pool_key`]: a
//! connection made with one name, trust or client certificate is never lent to a request of
//! an upstream configured otherwise (see `upstream/mod.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, ResolvesClientCert};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::{ALPN_HTTP11, Certificate, provider};

/// An upstream's validated TLS settings. Immutable; shared by every shard's snapshot.
#[derive(Debug)]
pub struct UpstreamTls {
    /// The name to send and verify; `None`: the endpoint's address.
    pub sni: Option<ServerName<'static>>,
    /// Whether the upstream's certificate must chain to `roots`.
    pub verify: bool,
    /// The CA bundle (path and trust anchors), when configured.
    pub ca: Option<(PathBuf, Arc<RootCertStore>)>,
    /// coregate's client certificate, when configured.
    pub client_cert: Option<Certificate>,
    /// Identifies these settings (the name, whether verified, and a digest of the files'
    /// contents): pools are keyed by it.
    pub pool_key: Arc<str>,
}

impl UpstreamTls {
    pub fn new(
        sni: Option<ServerName<'static>>,
        verify: bool,
        ca: Option<(PathBuf, Arc<RootCertStore>, Vec<u8>)>,
        client_cert: Option<(Certificate, Vec<u8>)>,
    ) -> UpstreamTls {
        let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
        if let Some((_, _, bytes)) = &ca {
            digest.update(b"ca");
            digest.update(bytes);
        }
        if let Some((_, bytes)) = &client_cert {
            digest.update(b"cert");
            digest.update(bytes);
        }
        let digest = digest.finish();
        let hex: String = digest.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let name = sni
            .as_ref()
            .map_or("-".to_owned(), |n| n.to_str().into_owned());
        UpstreamTls {
            pool_key: format!("tls:{name}:{}:{hex}", if verify { "verify" } else { "any" }).into(),
            sni,
            verify,
            ca: ca.map(|(path, roots, _)| (path, roots)),
            client_cert: client_cert.map(|(cert, _)| cert),
        }
    }

    /// The name a connection to `addr` sends and verifies.
    pub fn server_name(&self, addr: SocketAddr) -> ServerName<'static> {
        self.sni
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()))
    }

    /// The client configuration one shard connects with (its own session cache, so a shard
    /// resumes its own sessions and shares nothing).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let provider = provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports TLS 1.2 and 1.3");
        let builder = match (&self.ca, self.verify) {
            (Some((_, roots)), true) => builder.with_root_certificates(roots.clone()),
            _ => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate::of(&provider))),
        };
        let mut config = match &self.client_cert {
            Some(cert) => {
                builder.with_client_cert_resolver(Arc::new(OneCertificate(cert.key.clone())))
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        // The record layer seals and opens application records itself (`record.rs`).
        config.enable_secret_extraction = true;
        Arc::new(config)
    }
}

/// `verify = false`: any certificate, but the handshake's signatures still checked (so the
/// upstream still proves it holds the key of the certificate it sent). Also what the
/// benchmark's handshake client trusts.
#[derive(Debug)]
pub struct AnyCertificate {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl AnyCertificate {
    /// Checking signatures with the algorithms `provider` offers.
    pub fn of(provider: &rustls::crypto::CryptoProvider) -> AnyCertificate {
        AnyCertificate {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// coregate's one client certificate, offered whenever an upstream asks.
#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl ResolvesClientCert for OneCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::{ClientConnection, Connection, NamedGroup, ServerConfig, ServerConnection};

    /// A server that lists every group the provider has, in the provider's own order (P-384
    /// first), as a server built on the defaults does.
    #[allow(deprecated)]
    fn default_server() -> Arc<ServerConfig> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["up.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        Arc::new(config)
    }

    /// Hands what `from` has to say to `to`; whether there was anything.
    fn flight(from: &mut Connection, to: &mut Connection) -> bool {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).unwrap();
        }
        if wire.is_empty() {
            return false;
        }
        let mut rest = wire.as_slice();
        while !rest.is_empty() {
            to.read_tls(&mut rest).unwrap();
            to.process_new_packets().unwrap();
        }
        true
    }

    /// Before: the provider's default order put P-384 first, so every handshake to a TLS
    /// upstream paid for a P-384 exchange (about 2 ms of a 2.3 ms in-memory handshake).
    #[test]
    fn handshakes_to_an_upstream_exchange_keys_over_x25519() {
        let settings = UpstreamTls::new(
            Some(ServerName::try_from("up.test").unwrap()),
            false,
            None,
            None,
        );
        let name = settings.server_name("127.0.0.1:443".parse().unwrap());
        let client = ClientConnection::new(settings.client_config(), name).unwrap();
        let mut client = Connection::from(client);
        let mut server = Connection::from(ServerConnection::new(default_server()).unwrap());
        while flight(&mut client, &mut server) | flight(&mut server, &mut client) {}
        assert!(!client.is_handshaking());
        let group = client.negotiated_key_exchange_group().map(|g| g.name());
        assert_eq!(group, Some(NamedGroup::X25519));
    }
}
