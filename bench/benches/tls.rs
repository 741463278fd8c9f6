//! Criterion benchmark: what does TLS cost coregate's shards, by the piece?
//!
//! Questions: the CPU of one handshake with coregate's own listener configuration (ECDSA P-256
//! certificate, TLS 1.3, X25519, *ring*), full and resumed from a session ticket sealed with
//! the control plane's keys; and of one 16 KiB record sealed and opened (the AES-GCM suite
//! rustls negotiates by default). Baselines: the handshake's
//! client side runs in the same loop, so each figure is one handshake's server *and* client
//! work, and `copy 16 KiB` is the memcpy a record costs at the least.
//!
//! The handshakes run between rustls's buffered connections over in-memory buffers, so what
//! is measured is the protocol and the crypto, not the ring.
//!
//! Run: `cargo bench -p coregate-bench --bench tls -- --warm-up-time 1 --measurement-time 3`
//!
//! Figures: bench/RESULTS.md, "TLS termination".

use std::hint::black_box;
use std::io::{Read, Write};
use std::sync::Arc;

use coregate_engine::tls::record::{ContentType, RecordKeys};
use coregate_engine::tls::{
    ListenerTls, MinVersion, ShardTls, TicketKeys, UnknownName, certificate, provider,
};
use criterion::{Criterion, criterion_group, criterion_main};
use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};

/// coregate's server configuration for one listener on one shard, tickets on.
fn server_config() -> Arc<ServerConfig> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["bench.test".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let loaded = certificate::load(
        "cert.pem".as_ref(),
        cert.pem().as_bytes(),
        "key.pem".as_ref(),
        key.serialize_pem().as_bytes(),
        certificate::unix_now(),
    )
    .unwrap();
    let shard = ShardTls::default();
    shard
        .ticketer
        .set(Arc::new(TicketKeys::first().expect("random keys")));
    ListenerTls::new(vec![loaded], UnknownName::Default, MinVersion::Tls12)
        .server_config_for("bench", &shard)
}

fn client_config() -> Arc<ClientConfig> {
    #[derive(Debug)]
    struct Any(rustls::crypto::WebPkiSupportedAlgorithms);
    impl rustls::client::danger::ServerCertVerifier for Any {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.supported_schemes()
        }
    }
    let provider = provider();
    let any = Any(provider.signature_verification_algorithms);
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(any))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Moves records between the two ends until neither has anything to say.
fn pump(client: &mut ClientConnection, server: &mut ServerConnection) {
    let mut buf = Vec::with_capacity(32 * 1024);
    loop {
        let mut moved = false;
        buf.clear();
        while client.wants_write() {
            client.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            moved = true;
            let mut rest = buf.as_slice();
            while !rest.is_empty() {
                server.read_tls(&mut rest).unwrap();
                server.process_new_packets().unwrap();
            }
        }
        buf.clear();
        while server.wants_write() {
            server.write_tls(&mut buf).unwrap();
        }
        if !buf.is_empty() {
            moved = true;
            let mut rest = buf.as_slice();
            while !rest.is_empty() {
                client.read_tls(&mut rest).unwrap();
                client.process_new_packets().unwrap();
            }
        }
        if !moved {
            return;
        }
    }
}

fn handshake(
    client: &Arc<ClientConfig>,
    server: &Arc<ServerConfig>,
) -> (ClientConnection, ServerConnection) {
    let mut c = ClientConnection::new(client.clone(), "bench.test".try_into().unwrap()).unwrap();
    let mut s = ServerConnection::new(server.clone()).unwrap();
    pump(&mut c, &mut s);
    assert!(!c.is_handshaking() && !s.is_handshaking());
    // What the figures claim to measure: X25519, not whatever a provider default puts first.
    let group = c.negotiated_key_exchange_group().map(|g| g.name());
    assert_eq!(group, Some(rustls::NamedGroup::X25519));
    (c, s)
}

fn handshakes(cr: &mut Criterion) {
    let server = server_config();
    let mut group = cr.benchmark_group("handshake");
    group.bench_function("full (TLS 1.3, ECDSA P-256, X25519)", |b| {
        b.iter(|| {
            // A fresh client configuration each time: no session to resume.
            let (c, _) = handshake(&client_config(), &server);
            black_box(c.handshake_kind())
        })
    });
    let resuming = client_config();
    let (c, _) = handshake(&resuming, &server);
    drop(c);
    group.bench_function("resumed (ticket)", |b| {
        b.iter(|| {
            let (c, _) = handshake(&resuming, &server);
            assert_eq!(c.handshake_kind(), Some(rustls::HandshakeKind::Resumed));
            black_box(c.handshake_kind())
        })
    });
    group.finish();
}

fn records(cr: &mut Criterion) {
    let server = server_config();
    let (mut client, mut server) = handshake(&client_config(), &server);
    let plain = vec![0x5au8; 16 * 1024];
    let mut sealed = Vec::with_capacity(17 * 1024);
    let mut opened = vec![0u8; 16 * 1024];
    let mut group = cr.benchmark_group("record 16 KiB");
    group.throughput(criterion::Throughput::Bytes(plain.len() as u64));
    group.bench_function("encrypt (rustls)", |b| {
        b.iter(|| {
            server.writer().write_all(&plain).unwrap();
            sealed.clear();
            while server.wants_write() {
                server.write_tls(&mut sealed).unwrap();
            }
            black_box(sealed.len())
        })
    });
    group.bench_function("decrypt (rustls)", |b| {
        b.iter_batched(
            || {
                // The same record can be opened once; seal a fresh one each time (not timed).
                client.writer().write_all(&plain).unwrap();
                let mut wire = Vec::new();
                while client.wants_write() {
                    client.write_tls(&mut wire).unwrap();
                }
                wire
            },
            |wire| {
                // read_tls takes a bounded amount per call.
                let mut rest = wire.as_slice();
                while !rest.is_empty() {
                    server.read_tls(&mut rest).unwrap();
                    server.process_new_packets().unwrap();
                }
                server.reader().read_exact(&mut opened).unwrap();
                black_box(opened[0])
            },
            criterion::BatchSize::SmallInput,
        );
    });
    let (mut ours, mut theirs) = record_keys();
    let mut out = vec![0u8; 17 * 1024];
    group.bench_function("seal (coregate, in place)", |b| {
        b.iter(|| {
            let n = ours
                .seal(ContentType::ApplicationData, black_box(&plain), &mut out)
                .unwrap();
            black_box(n)
        })
    });
    group.bench_function("open (coregate, in place)", |b| {
        b.iter_batched(
            || {
                let mut record = vec![0u8; theirs.sealed_len(plain.len())];
                theirs
                    .seal(ContentType::ApplicationData, &plain, &mut record)
                    .unwrap();
                record
            },
            |mut record| black_box(ours.open(&mut record).unwrap().plaintext.len()),
            criterion::BatchSize::SmallInput,
        );
    });
    group.bench_function("copy 16 KiB (baseline)", |b| {
        b.iter(|| {
            opened.copy_from_slice(black_box(&plain));
            black_box(opened[0])
        })
    });
    group.finish();
}

/// The server's record keys and the client's, from one handshake: what a shard takes over
/// from rustls, and a peer to seal what it opens.
fn record_keys() -> (RecordKeys, RecordKeys) {
    let mut client = (*client_config()).clone();
    client.enable_secret_extraction = true;
    let (c, s) = handshake(&Arc::new(client), &server_config());
    let version = s.protocol_version().unwrap();
    let suite = s.negotiated_cipher_suite().unwrap();
    let (ours, theirs) = (
        s.dangerous_extract_secrets().unwrap(),
        c.dangerous_extract_secrets().unwrap(),
    );
    (
        RecordKeys::new(version, suite, ours.tx, ours.rx).unwrap(),
        RecordKeys::new(version, suite, theirs.tx, theirs.rx).unwrap(),
    )
}

criterion_group!(benches, handshakes, records);
criterion_main!(benches);
