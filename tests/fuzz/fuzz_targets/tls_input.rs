//! Fuzz target: the parsers coregate runs itself over TLS bytes and files, on arbitrary input:
//! the ClientHello server-name reader (`tls::hello::server_name`, fed by the network), the PEM
//! envelope (`tls::pem::blocks`) and the certificate facts reader (`tls::x509::facts`, fed by
//! configuration files and by the client certificates a listener verifies).
//!
//! Properties checked:
//! - none of them panics, whatever the bytes;
//! - a server name is found only in a complete first record: cutting the input shorter than
//!   that record's declared length gives `Incomplete`, never a different name;
//! - every PEM block found starts on a line that exists, and blocks come in file order;
//! - a certificate's period, when read, is within what its time formats can say.

#![no_main]

use coregate_engine::tls::hello::{Hello, server_name};
use coregate_engine::tls::{pem, x509};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Hello::Name(name) = server_name(data) {
        let record = 5 + u16::from_be_bytes([data[3], data[4]]) as usize;
        assert!(record <= data.len(), "a name from an incomplete record");
        if record > 5 {
            assert_eq!(server_name(&data[..record - 1]), Hello::Incomplete);
        }
        if let Some(name) = name {
            assert!(name.len() <= u16::MAX as usize);
        }
    }
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
