//! The PEM envelope of certificate chains and private keys: every `-----BEGIN ...-----` block
//! of a file, with its label, its decoded DER and the line it starts on, so a mistake is named
//! by file and line.
//!
//! Bytes in, blocks or a sentence out; no I/O (the caller reads the file). Text outside the
//! blocks (comments such as `openssl x509 -text` writes) is skipped, as OpenSSL does.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The largest PEM file read: a chain of a dozen 4096-bit RSA certificates is about 25 KiB.
pub const MAX_PEM_BYTES: usize = 1024 * 1024;

/// One decoded block.
#[derive(Debug, PartialEq, Eq)]
pub struct Block {
    /// What the BEGIN line names: `CERTIFICATE`, `PRIVATE KEY`, `EC PRIVATE KEY`, ...
    pub label: String,
    pub der: Vec<u8>,
    /// 1-based line of the BEGIN line.
    pub line: usize,
}

/// A mistake in the envelope, at a 1-based line (0: the file as a whole).
#[derive(Debug, PartialEq, Eq)]
pub struct PemError {
    pub line: usize,
    pub message: String,
}

/// Every block of `text`, in file order. A file with no block is an error.
pub fn blocks(text: &[u8]) -> Result<Vec<Block>, PemError> {
    let whole = |message: &str| PemError {
        line: 0,
        message: message.to_owned(),
    };
    if text.len() > MAX_PEM_BYTES {
        return Err(whole(
            "the file is larger than 1 MiB; not a PEM certificate or key",
        ));
    }
    let text = std::str::from_utf8(text).map_err(|_| whole("not a PEM file (it is not text)"))?;
    let mut blocks = Vec::new();
    // (label, first line, base64 so far)
    let mut open: Option<(String, usize, String)> = None;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        let at = |message: String| PemError {
            line: number,
            message,
        };
        if let Some(label) = marker(line, "-----BEGIN ") {
            if let Some((label, first, _)) = &open {
                return Err(at(format!(
                    "a BEGIN line inside the {label:?} block that starts on line {first}"
                )));
            }
            open = Some((label.to_owned(), number, String::new()));
        } else if let Some(label) = marker(line, "-----END ") {
            let Some((begun, first, body)) = open.take() else {
                return Err(at(format!("an END {label:?} line without a BEGIN line")));
            };
            if begun != label {
                return Err(at(format!(
                    "END {label:?} closes the {begun:?} block that starts on line {first}"
                )));
            }
            let der = STANDARD.decode(body.as_bytes()).map_err(|_| PemError {
                line: first,
                message: format!("the {begun:?} block is not valid base64"),
            })?;
            blocks.push(Block {
                label: begun,
                der,
                line: first,
            });
        } else if let Some((_, _, body)) = open.as_mut() {
            // RFC 7468 headers (`Proc-Type:`) mean an encrypted legacy key.
            if line.contains(':') {
                return Err(at(
                    "an encrypted private key; coregate reads unencrypted keys only \
                     (openssl pkey -in KEY -out PLAIN)"
                        .to_owned(),
                ));
            }
            body.push_str(line);
        }
    }
    if let Some((label, first, _)) = open {
        return Err(PemError {
            line: first,
            message: format!("the {label:?} block has no END line"),
        });
    }
    if blocks.is_empty() {
        return Err(whole("no \"-----BEGIN\" line: not a PEM file"));
    }
    Ok(blocks)
}

/// The label of a `-----BEGIN LABEL-----` (or END) line.
fn marker<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    line.strip_prefix(prefix)?.strip_suffix("-----")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_read_in_order_with_their_lines() {
        let text =
            b"subject=CN = a\n-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n\
                     \n-----BEGIN PRIVATE KEY-----\nAwQ=\n-----END PRIVATE KEY-----\n";
        let blocks = blocks(text).unwrap();
        assert_eq!(blocks.len(), 2);
        assert_eq!(
            (blocks[0].label.as_str(), &blocks[0].der[..], blocks[0].line),
            ("CERTIFICATE", &[0u8, 1, 2][..], 2)
        );
        assert_eq!(
            (blocks[1].label.as_str(), blocks[1].line),
            ("PRIVATE KEY", 6)
        );
    }

    #[test]
    fn mistakes_are_named_by_line() {
        let missing_end = blocks(b"\n-----BEGIN CERTIFICATE-----\nAAEC\n").unwrap_err();
        assert_eq!(missing_end.line, 2);
        assert!(missing_end.message.contains("no END line"));
        let bad_base64 =
            blocks(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").unwrap_err();
        assert_eq!(bad_base64.line, 1);
        let crossed =
            blocks(b"-----BEGIN CERTIFICATE-----\nAAEC\n-----END PRIVATE KEY-----\n").unwrap_err();
        assert_eq!(crossed.line, 3);
        assert_eq!(blocks(b"hello").unwrap_err().line, 0);
        assert_eq!(blocks(&[0xff, 0xfe]).unwrap_err().line, 0);
    }

    #[test]
    fn an_encrypted_legacy_key_is_refused_by_name() {
        let text = b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAEC\n\
                     -----END RSA PRIVATE KEY-----\n";
        assert!(blocks(text).unwrap_err().message.contains("encrypted"));
    }
}
