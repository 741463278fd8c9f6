//! Public keys from PEM files: the textual envelope, and the few DER structures inside it.
//!
//! Owns the decoding of `-----BEGIN PUBLIC KEY-----` (X.509 SubjectPublicKeyInfo, RSA or EC
//! P-256) and `-----BEGIN RSA PUBLIC KEY-----` (PKCS #1) into the raw parts the signature code
//! needs: an RSA modulus and exponent, or an uncompressed P-256 point. Bytes in, parts or a short
//! sentence out; no I/O (the caller reads the file), no allocation beyond the decoded DER.
//!
//! The DER reader is deliberately small: definite lengths of at most three bytes, the handful
//! of tags these structures use, every length checked against what is left. Anything else is
//! refused, never guessed at.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The largest PEM file read (an 8192-bit RSA public key is about 1.5 KiB).
pub const MAX_PEM_BYTES: usize = 16 * 1024;

/// A public key's parts, borrowed from its DER.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicKeyParts<'a> {
    /// Big-endian modulus and public exponent, without leading zero bytes.
    Rsa {
        modulus: &'a [u8],
        exponent: &'a [u8],
    },
    /// `0x04 || x || y`, 65 bytes.
    P256 { point: &'a [u8] },
}

/// The label and DER bytes of the one PEM block in `text`.
pub fn decode_pem(text: &[u8]) -> Result<(String, Vec<u8>), &'static str> {
    if text.len() > MAX_PEM_BYTES {
        return Err("the PEM file is too large for a public key");
    }
    let text = std::str::from_utf8(text).map_err(|_| "a PEM file is ASCII text")?;
    let begin = text
        .find("-----BEGIN ")
        .ok_or("no \"-----BEGIN\" line; expected a PEM public key")?;
    let after_begin = &text[begin + "-----BEGIN ".len()..];
    let label_end = after_begin
        .find("-----")
        .ok_or("the BEGIN line does not end with \"-----\"")?;
    let label = &after_begin[..label_end];
    let body_and_rest = &after_begin[label_end + "-----".len()..];
    let end_line = format!("-----END {label}-----");
    let body_end = body_and_rest
        .find(&end_line)
        .ok_or("no END line matching the BEGIN line")?;
    let rest = &body_and_rest[body_end + end_line.len()..];
    if rest.contains("-----BEGIN ") {
        return Err("one key per PEM file; use a JWKS document for several keys");
    }
    let body: Vec<u8> = body_and_rest[..body_end]
        .bytes()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let der = STANDARD
        .decode(&body)
        .map_err(|_| "the PEM body is not valid base64")?;
    Ok((label.to_owned(), der))
}

/// The parts of a PEM public key, from a decoded block.
pub fn public_key_parts<'a>(
    label: &str,
    der: &'a [u8],
) -> Result<PublicKeyParts<'a>, &'static str> {
    match label {
        "PUBLIC KEY" => parse_spki(der),
        "RSA PUBLIC KEY" => parse_pkcs1(der),
        "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" | "ENCRYPTED PRIVATE KEY" => Err(
            "this is a private key; configure the public key (openssl pkey -pubout) and keep the private key with the issuer",
        ),
        "CERTIFICATE" => {
            Err("this is a certificate; configure its public key (openssl x509 -pubkey -noout)")
        }
        _ => Err("expected a \"PUBLIC KEY\" or \"RSA PUBLIC KEY\" PEM block"),
    }
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// rsaEncryption, 1.2.840.113549.1.1.1
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// prime256v1 (P-256), 1.2.840.10045.3.1.7
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// A cursor over DER bytes.
struct Der<'a> {
    rest: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(bytes: &'a [u8]) -> Der<'a> {
        Der { rest: bytes }
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    /// The next element's tag and contents.
    fn element(&mut self) -> Result<(u8, &'a [u8]), &'static str> {
        const TRUNCATED: &str = "the key's DER encoding is truncated";
        let (&tag, rest) = self.rest.split_first().ok_or(TRUNCATED)?;
        let (&first, mut rest) = rest.split_first().ok_or(TRUNCATED)?;
        let len = match first {
            0..=0x7f => usize::from(first),
            0x81..=0x83 => {
                let count = usize::from(first & 0x7f);
                if rest.len() < count {
                    return Err(TRUNCATED);
                }
                let (digits, after) = rest.split_at(count);
                rest = after;
                let len = digits.iter().fold(0usize, |n, &d| n << 8 | usize::from(d));
                if digits[0] == 0 || len < 0x80 {
                    return Err("the key's DER encoding has a non-minimal length");
                }
                len
            }
            _ => return Err("the key's DER encoding has an unsupported length"),
        };
        if rest.len() < len {
            return Err(TRUNCATED);
        }
        let (contents, after) = rest.split_at(len);
        self.rest = after;
        Ok((tag, contents))
    }

    fn expect(&mut self, tag: u8) -> Result<&'a [u8], &'static str> {
        match self.element()? {
            (found, contents) if found == tag => Ok(contents),
            _ => Err("the key's DER structure is not a public key"),
        }
    }

    /// A positive INTEGER's magnitude, without its sign byte.
    fn unsigned(&mut self) -> Result<&'a [u8], &'static str> {
        let bytes = self.expect(TAG_INTEGER)?;
        match bytes {
            [] => Err("the key has an empty integer"),
            [first, ..] if first & 0x80 != 0 => Err("the key has a negative integer"),
            [0, rest @ ..] if !rest.is_empty() => Ok(rest),
            _ => Ok(bytes),
        }
    }
}

/// SubjectPublicKeyInfo ::= SEQUENCE { SEQUENCE { algorithm OID, parameters }, BIT STRING }
fn parse_spki(der: &[u8]) -> Result<PublicKeyParts<'_>, &'static str> {
    let mut outer = Der::new(der);
    let mut info = Der::new(outer.expect(TAG_SEQUENCE)?);
    if !outer.is_empty() {
        return Err("bytes after the public key");
    }
    let mut algorithm = Der::new(info.expect(TAG_SEQUENCE)?);
    let oid = algorithm.expect(TAG_OID)?;
    let key = info.expect(TAG_BIT_STRING)?;
    if !info.is_empty() {
        return Err("the key's DER structure is not a public key");
    }
    let key = match key {
        [0, bits @ ..] => bits,
        _ => return Err("the public key's bit string is not whole bytes"),
    };
    if oid == OID_RSA {
        // Parameters are NULL (or, from some encoders, absent).
        if !algorithm.is_empty() {
            algorithm.expect(TAG_NULL)?;
        }
        parse_pkcs1(key)
    } else if oid == OID_EC {
        if algorithm.expect(TAG_OID)? != OID_P256 {
            return Err("only P-256 EC keys are supported (ES256)");
        }
        match key {
            [0x04, ..] if key.len() == 65 => Ok(PublicKeyParts::P256 { point: key }),
            [0x02 | 0x03, ..] => {
                Err("compressed EC points are not supported; export the key uncompressed")
            }
            _ => Err("the EC public key is not a P-256 point"),
        }
    } else {
        Err("only RSA and EC P-256 public keys are supported")
    }
}

/// RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
fn parse_pkcs1(der: &[u8]) -> Result<PublicKeyParts<'_>, &'static str> {
    let mut outer = Der::new(der);
    let mut key = Der::new(outer.expect(TAG_SEQUENCE)?);
    if !outer.is_empty() {
        return Err("bytes after the public key");
    }
    let modulus = key.unsigned()?;
    let exponent = key.unsigned()?;
    if !key.is_empty() {
        return Err("the RSA public key has extra fields");
    }
    Ok(PublicKeyParts::Rsa { modulus, exponent })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_SPKI: &str = include_str!("../testdata/rs256-public.pem");
    const RSA_PKCS1: &str = include_str!("../testdata/rs256-public-pkcs1.pem");
    const EC_SPKI: &str = include_str!("../testdata/es256-public.pem");
    const EC_PRIVATE: &str = include_str!("../testdata/es256-private.pem");

    fn parts(pem: &str) -> Result<PublicKeyParts<'static>, &'static str> {
        let (label, der) = decode_pem(pem.as_bytes())?;
        let der: &'static [u8] = der.leak();
        public_key_parts(&label, der)
    }

    #[test]
    fn openssl_public_keys_parse() {
        let Ok(PublicKeyParts::Rsa { modulus, exponent }) = parts(RSA_SPKI) else {
            panic!("RSA SPKI");
        };
        assert_eq!(modulus.len(), 256);
        assert_eq!(exponent, [1, 0, 1]);
        assert_eq!(
            parts(RSA_PKCS1),
            Ok(PublicKeyParts::Rsa { modulus, exponent })
        );
        let Ok(PublicKeyParts::P256 { point }) = parts(EC_SPKI) else {
            panic!("EC SPKI");
        };
        assert_eq!(point.len(), 65);
    }

    #[test]
    fn wrong_kinds_of_pem_are_named() {
        assert!(parts(EC_PRIVATE).unwrap_err().contains("private key"));
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(parts(cert).unwrap_err().contains("certificate"));
        assert!(parts("hello").unwrap_err().contains("BEGIN"));
        let two = format!("{EC_SPKI}{EC_SPKI}");
        assert!(parts(&two).unwrap_err().contains("one key per PEM"));
        let bad = "-----BEGIN PUBLIC KEY-----\n!!!!\n-----END PUBLIC KEY-----\n";
        assert!(parts(bad).unwrap_err().contains("base64"));
        let unended = "-----BEGIN PUBLIC KEY-----\nAAAA\n";
        assert!(parts(unended).unwrap_err().contains("END"));
    }

    #[test]
    fn der_lengths_and_integers_are_checked() {
        // SEQUENCE claiming 5 bytes with 1 present.
        assert!(
            parse_spki(&[0x30, 0x05, 0x00])
                .unwrap_err()
                .contains("truncated")
        );
        // Indefinite and over-long lengths.
        assert!(parse_spki(&[0x30, 0x80]).is_err());
        assert!(parse_spki(&[0x30, 0x84, 1, 0, 0, 0]).is_err());
        assert!(
            parse_spki(&[0x30, 0x81, 0x05])
                .unwrap_err()
                .contains("non-minimal")
        );
        assert!(
            parse_spki(&[0x30, 0x82, 0x00, 0x05])
                .unwrap_err()
                .contains("non-minimal")
        );
        // RSAPublicKey with a negative modulus.
        assert!(
            parse_pkcs1(&[0x30, 0x06, 0x02, 0x01, 0x80, 0x02, 0x01, 0x03])
                .unwrap_err()
                .contains("negative")
        );
        assert_eq!(
            parse_pkcs1(&[0x30, 0x07, 0x02, 0x02, 0x00, 0x80, 0x02, 0x01, 0x03]),
            Ok(PublicKeyParts::Rsa {
                modulus: &[0x80],
                exponent: &[3]
            })
        );
        assert!(parse_pkcs1(&[0x30, 0x03, 0x02, 0x01, 0x03, 0x00]).is_err());
    }
}
