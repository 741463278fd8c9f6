//! Fuzz target: the parsers coregate runs itself over TLS bytes and files, on arbitrary input:
//! the record layer after the handshake (`tls::record`: records cut from the input and opened,
//! their handshake messages split; fed by the network), the PEM envelope (`tls::pem::blocks`)
//! and the certificate facts reader (`tls::x509::facts`, fed by configuration files and by the
//! client certificates a listener verifies).
//!
//! Properties checked:
//! - none of them panics, whatever the bytes;
//! - a record opens only if it was sealed with the key (arbitrary bytes never do), and what
//!   coregate seals opens again to the same plaintext, for both versions;
//! - every PEM block found starts on a line that exists, and blocks come in file order;
//! - a certificate's period, when read, is within what its time formats can say.

#![no_main]

use coregate_engine::tls::record::{self, ContentType, RecordKeys};
use coregate_engine::tls::{pem, x509};
use libfuzzer_sys::fuzz_target;
use rustls::ConnectionTrafficSecrets;
use rustls::crypto::cipher::{AeadKey, Iv};
use rustls::crypto::ring::cipher_suite;

/// Keys both ways from fixed secrets: one end's sealing key is the other's opening key.
fn keys(version: rustls::ProtocolVersion) -> RecordKeys {
    let secrets = || ConnectionTrafficSecrets::Aes256Gcm {
        key: AeadKey::from([7; 32]),
        iv: Iv::new([9; 12]),
    };
    let suite = match version {
        rustls::ProtocolVersion::TLSv1_3 => cipher_suite::TLS13_AES_256_GCM_SHA384,
        _ => cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    };
    RecordKeys::new(version, suite, (0, secrets()), (0, secrets())).expect("keys")
}

fn records(data: &[u8]) {
    for version in [
        rustls::ProtocolVersion::TLSv1_3,
        rustls::ProtocolVersion::TLSv1_2,
    ] {
        // Arbitrary bytes cut into records: none opens (the tag is 128 bits).
        let mut opener = keys(version);
        let mut bytes = data.to_vec();
        let mut at = 0;
        while let Some(len) = record::record_len(&bytes[at..]) {
            if at + len > bytes.len() {
                break;
            }
            assert!(
                opener.open(&mut bytes[at..at + len]).is_err(),
                "forged record opened"
            );
            at += len;
        }
        // Sealed by coregate, opened again whole.
        let (mut sealer, mut opener) = (keys(version), keys(version));
        let plaintext = &data[..data.len().min(record::MAX_PLAINTEXT)];
        let mut out = vec![0; sealer.sealed_len(plaintext.len())];
        let n = sealer
            .seal(ContentType::ApplicationData, plaintext, &mut out)
            .expect("sealed");
        let opened = opener.open(&mut out[..n]).expect("opened");
        assert_eq!(opened.typ, ContentType::ApplicationData);
        assert_eq!(&out[opened.plaintext], plaintext);
    }
    for message in record::handshake_messages(data) {
        if let Ok((_, body)) = message {
            assert!(body.len() < data.len());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    records(data);
    if let Ok(blocks) = pem::blocks(data) {
        let lines = data.split(|&b| b == b'\n').count();
        let mut last = 0;
        for block in &blocks {
            assert!(
                block.line > last && block.line <= lines,
                "block line {}",
                block.line
            );
            last = block.line;
        }
    }
    if let Ok(facts) = x509::facts(data) {
        // UTCTime reaches 1950..2049, GeneralizedTime 0000..9999 (a leap second at the end).
        for t in [facts.not_before, facts.not_after] {
            assert!((-62_167_219_200..=253_402_300_800).contains(&t), "time {t}");
        }
    }
});
