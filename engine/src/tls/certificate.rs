//! One certificate a listener serves: its PEM chain and private key turned into rustls's
//! [`CertifiedKey`], with everything that can be wrong about the pair found at load time, never
//! in a handshake: an unreadable or malformed file (named with its line), a key of a type
//! rustls cannot sign with, a key that does not match the certificate, a chain whose
//! certificates do not certify each other in order, a certificate expired or not yet valid.
//!
//! Pure apart from reading the clock once per load (the caller passes `now`); the caller
//! reads the files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
    UnixTime,
};
use rustls::sign::CertifiedKey;

use super::pem::{self, Block};
use super::x509::{self, CertFacts};

/// A loaded, checked certificate and key.
#[derive(Clone, Debug)]
pub struct Certificate {
    /// The chain file, as the configuration resolved it.
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    pub key: Arc<CertifiedKey>,
    /// The leaf's validity and DNS names.
    pub facts: CertFacts,
}

/// Why a pair cannot be served: a file (and line, 0 when the file as a whole) and a sentence.
#[derive(Debug, PartialEq, Eq)]
pub struct CertError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            0 => write!(f, "{}: {}", self.file.display(), self.message),
            line => write!(f, "{}:{line}: {}", self.file.display(), self.message),
        }
    }
}

/// What a certificate is presented for, which its chain must allow (extended key usage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Usage {
    /// A listener's certificate.
    Server,
    /// coregate's certificate towards an upstream (mTLS).
    Client,
}

/// Loads a listener's pair from the two files' contents. `now` is seconds since the Unix epoch.
pub fn load(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
    now: i64,
) -> Result<Certificate, CertError> {
    load_for(cert_path, cert_pem, key_path, key_pem, now, Usage::Server)
}

/// Loads a pair presented for `usage`.
pub fn load_for(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
    now: i64,
    usage: Usage,
) -> Result<Certificate, CertError> {
    let cert_error = |line: usize, message: String| CertError {
        file: cert_path.to_path_buf(),
        line,
        message,
    };
    let key_error = |line: usize, message: String| CertError {
        file: key_path.to_path_buf(),
        line,
        message,
    };
    let blocks = pem::blocks(cert_pem).map_err(|e| cert_error(e.line, e.message))?;
    let mut chain = Vec::new();
    let mut lines = Vec::new();
    for Block { label, der, line } in blocks {
        if label != "CERTIFICATE" {
            return Err(cert_error(
                line,
                format!(
                    "a {label:?} block in the certificate chain (expected CERTIFICATE blocks only)"
                ),
            ));
        }
        chain.push(CertificateDer::from(der));
        lines.push(line);
    }
    let facts = x509::facts(&chain[0]).map_err(|e| cert_error(lines[0], e.to_owned()))?;
    if now > facts.not_after {
        return Err(cert_error(
            lines[0],
            format!("the certificate expired on {}", date(facts.not_after)),
        ));
    }
    if now < facts.not_before {
        return Err(cert_error(
            lines[0],
            format!(
                "the certificate is not valid before {}",
                date(facts.not_before)
            ),
        ));
    }
    check_chain(&chain, &lines, now, usage).map_err(|(line, message)| cert_error(line, message))?;

    let key_blocks = pem::blocks(key_pem).map_err(|e| key_error(e.line, e.message))?;
    let mut keys = key_blocks
        .into_iter()
        .filter(|b| b.label != "EC PARAMETERS");
    let Some(Block { label, der, line }) = keys.next() else {
        return Err(key_error(0, "no private key block".into()));
    };
    if keys.next().is_some() {
        return Err(key_error(
            0,
            "more than one private key; one key per file".into(),
        ));
    }
    let private = match label.as_str() {
        "PRIVATE KEY" => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)),
        "EC PRIVATE KEY" => PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)),
        "RSA PRIVATE KEY" => PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)),
        "ENCRYPTED PRIVATE KEY" => {
            return Err(key_error(
                line,
                "an encrypted private key; coregate reads unencrypted keys only".into(),
            ));
        }
        "CERTIFICATE" => {
            return Err(key_error(
                line,
                "a certificate where the private key was expected".into(),
            ));
        }
        other => {
            return Err(key_error(
                line,
                format!(
                    "a {other:?} block; expected PRIVATE KEY (PKCS #8), EC PRIVATE KEY (SEC1) \
                     or RSA PRIVATE KEY (PKCS #1)"
                ),
            ));
        }
    };
    let signing = rustls::crypto::ring::sign::any_supported_type(&private).map_err(|_| {
        key_error(
            line,
            "not a usable key: coregate signs with ECDSA P-256 or P-384, Ed25519 or RSA \
             (2048 bits or more)"
                .into(),
        )
    })?;
    let key = CertifiedKey::new(chain, signing);
    match key.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => {
            return Err(key_error(
                line,
                format!(
                    "this key does not match the certificate in {}",
                    cert_path.display()
                ),
            ));
        }
    }
    Ok(Certificate {
        cert_path: cert_path.to_path_buf(),
        key_path: key_path.to_path_buf(),
        key: Arc::new(key),
        facts,
    })
}

/// Each certificate of the chain must be certified by the next one (the order servers send
/// them in). The last one is taken as trusted here: whether a client trusts it is the
/// client's business.
fn check_chain(
    chain: &[CertificateDer<'static>],
    lines: &[usize],
    now: i64,
    usage: Usage,
) -> Result<(), (usize, String)> {
    if chain.len() < 2 {
        return Ok(());
    }
    let last = chain.len() - 1;
    let anchor = webpki::anchor_from_trusted_cert(&chain[last]).map_err(|e| {
        (
            lines[last],
            format!("the chain's last certificate cannot be read ({e})"),
        )
    })?;
    let leaf = webpki::EndEntityCert::try_from(&chain[0])
        .map_err(|e| (lines[0], format!("the certificate cannot be read ({e})")))?;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.max(0) as u64));
    leaf.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &chain[1..last],
        time,
        match usage {
            Usage::Server => webpki::KeyUsage::server_auth(),
            Usage::Client => webpki::KeyUsage::client_auth(),
        },
        None,
        None,
    )
    .map_err(|e| {
        (
            lines[0],
            format!(
                "the chain does not verify ({e}): list the certificate first, then each \
                 issuer in order"
            ),
        )
    })?;
    Ok(())
}

/// `YYYY-MM-DD` of a Unix time.
pub fn date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn try_load(cert: &str, key: &str) -> Result<Certificate, CertError> {
        load(
            Path::new("c.pem"),
            cert.as_bytes(),
            Path::new("k.pem"),
            key.as_bytes(),
            unix_now(),
        )
    }

    #[test]
    fn ecdsa_p256_p384_ed25519_and_rsa_keys_load() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let (cert, key) = pair(alg);
            let loaded = try_load(&cert, &key).unwrap();
            assert_eq!(loaded.facts.dns_names, ["a.example"]);
        }
    }

    #[test]
    fn a_key_that_does_not_match_its_certificate_is_named() {
        let (cert, _) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other_key) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let err = try_load(&cert, &other_key).unwrap_err();
        assert_eq!(err.file, Path::new("k.pem"));
        assert!(err.message.contains("does not match"), "{err}");
    }

    #[test]
    fn an_expired_certificate_is_named_with_its_date() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.example".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let err = try_load(&cert.pem(), &key.serialize_pem()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.pem:1: the certificate expired on 2021-01-01"
        );
    }

    #[test]
    fn a_chain_out_of_order_is_refused_and_in_order_accepted() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(vec![]).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["a.example".into()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        let good = format!("{}{}", leaf.pem(), ca.pem());
        try_load(&good, &leaf_key.serialize_pem()).unwrap();
        let (stranger, _) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let bad = format!("{}{}", leaf.pem(), stranger);
        let err = try_load(&bad, &leaf_key.serialize_pem()).unwrap_err();
        assert!(err.message.contains("chain does not verify"), "{err}");
    }

    #[test]
    fn a_private_key_in_the_chain_file_is_named_by_line() {
        let (cert, key) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        let text = format!("{cert}{key}");
        let err = try_load(&text, &key).unwrap_err();
        assert!(err.line > 1 && err.message.contains("PRIVATE KEY"), "{err}");
    }

    #[test]
    fn dates_print_as_iso() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(1_796_601_600), "2026-12-07");
    }
}
