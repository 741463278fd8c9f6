//! Application records once the handshake is over, sealed and opened by coregate in place in
//! the shard's own buffers. rustls runs the handshake and keeps the secrets (it derives the
//! next ones on a key update and stores an upstream's session tickets: its
//! `KernelConnection`); this module protects the records with *ring*'s AEADs under the keys
//! rustls hands over. rustls 0.23's own record layer allocates a `Vec` for every record it
//! opens or seals; this one allocates nothing.
//!
//! The rules, per version:
//! - TLS 1.3 (RFC 8446 5.2-5.3): every record says "application data" outside; the real type is
//!   the last non-zero byte of the plaintext (zeros after it are padding); the additional
//!   data is the record header; the nonce is the IV XOR the record's sequence number.
//! - TLS 1.2 (RFC 5246 6.2.3.3): the type is the record's own; the additional data is the
//!   sequence number, type, version and plaintext length. AES-GCM (RFC 5288) carries an
//!   explicit 8-byte nonce after the header, the receiver's nonce is the 4-byte salt then
//!   those bytes; coregate sends the IV XOR the sequence number there, as rustls does.
//!   ChaCha20-Poly1305 (RFC 7905) has no explicit part and forms its nonce as TLS 1.3 does.
//!
//! A cipher suite limits how many records one key may protect; at the limit coregate ends the
//! connection (a client reconnects), where rustls would update a TLS 1.3 key: the smallest
//! limit is 2^23 records, 128 GiB of full records on one connection.

use std::ops::Range;

use ring::aead;
use rustls::{ConnectionTrafficSecrets, ProtocolVersion, SupportedCipherSuite};

/// A record header: type, version, length.
pub const HEADER: usize = 5;

/// The most plaintext one record carries (RFC 8446 5.1, RFC 5246 6.2.1).
pub const MAX_PLAINTEXT: usize = 16 * 1024;

/// The AEAD tag of every suite coregate offers.
const TAG: usize = 16;

/// TLS 1.2 AES-GCM's nonce bytes carried in each record.
const EXPLICIT_NONCE: usize = 8;

/// The most a TLS 1.3 ciphertext may exceed the plaintext limit by (RFC 8446 5.2).
const TLS13_EXPANSION: usize = 256;

/// The most a TLS 1.2 ciphertext may exceed the plaintext limit by (RFC 5246 6.2.3).
const TLS12_EXPANSION: usize = 2048;

/// The record version every record after the handshake carries.
const LEGACY_VERSION: [u8; 2] = [3, 3];

/// What a record carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentType {
    Alert,
    Handshake,
    ApplicationData,
}

impl ContentType {
    fn byte(self) -> u8 {
        match self {
            ContentType::Alert => 21,
            ContentType::Handshake => 22,
            ContentType::ApplicationData => 23,
        }
    }

    fn of(byte: u8) -> Option<ContentType> {
        match byte {
            21 => Some(ContentType::Alert),
            22 => Some(ContentType::Handshake),
            23 => Some(ContentType::ApplicationData),
            _ => None,
        }
    }
}

/// Why a record could not be sealed or opened. Every one ends the session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// Not a record the protocol allows here (type, length or padding).
    Malformed(&'static str),
    /// The record did not authenticate: tampered with, or not sealed by the peer.
    BadRecordMac,
    /// More than 2^14 bytes of plaintext in one record.
    Overflow,
    /// The cipher suite's limit of records under one key is reached.
    KeyExhausted,
    /// The output cannot hold the sealed record.
    NoRoom,
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::Malformed(what) => write!(f, "TLS record: {what}"),
            RecordError::BadRecordMac => f.write_str("TLS record: bad record MAC"),
            RecordError::Overflow => f.write_str("TLS record: plaintext over 16 KiB"),
            RecordError::KeyExhausted => {
                f.write_str("TLS record: the cipher suite's record limit reached")
            }
            RecordError::NoRoom => f.write_str("TLS record: no room for the sealed record"),
        }
    }
}

impl std::error::Error for RecordError {}

/// An opened record: its type and where its plaintext lies in the record's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    pub typ: ContentType,
    pub plaintext: Range<usize>,
}

/// The length of the whole record at the start of `bytes`, once its header is there.
pub fn record_len(bytes: &[u8]) -> Option<usize> {
    let header = bytes.get(..HEADER)?;
    Some(HEADER + u16::from_be_bytes([header[3], header[4]]) as usize)
}

/// One direction's protection: key, static IV, and the sequence number of the next record.
struct Direction {
    key: aead::LessSafeKey,
    iv: [u8; aead::NONCE_LEN],
    seq: u64,
    limit: u64,
}

impl Direction {
    fn new(seq: u64, secrets: &ConnectionTrafficSecrets, limit: u64) -> Result<Self, RecordError> {
        let (algorithm, key, iv) = match secrets {
            ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (&aead::AES_128_GCM, key, iv),
            ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (&aead::AES_256_GCM, key, iv),
            ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
                (&aead::CHACHA20_POLY1305, key, iv)
            }
            _ => return Err(RecordError::Malformed("a cipher coregate does not offer")),
        };
        let key = aead::UnboundKey::new(algorithm, key.as_ref())
            .map_err(|_| RecordError::Malformed("a key of the wrong length"))?;
        let iv: [u8; aead::NONCE_LEN] = iv
            .as_ref()
            .try_into()
            .map_err(|_| RecordError::Malformed("an IV of the wrong length"))?;
        Ok(Direction {
            key: aead::LessSafeKey::new(key),
            iv,
            seq,
            limit,
        })
    }

    /// The next record's sequence number and nonce (the IV XOR the sequence number,
    /// big-endian in the last eight bytes), refused past the suite's limit.
    fn next(&mut self) -> Result<(u64, [u8; aead::NONCE_LEN]), RecordError> {
        if self.seq >= self.limit {
            return Err(RecordError::KeyExhausted);
        }
        let seq = self.seq;
        self.seq += 1;
        let mut nonce = self.iv;
        for (byte, seq) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *byte ^= seq;
        }
        Ok((seq, nonce))
    }
}

/// Both directions of an established session.
pub struct RecordKeys {
    tls13: bool,
    /// TLS 1.2 AES-GCM: 8 nonce bytes travel in each record.
    explicit_nonce: bool,
    limit: u64,
    seal: Direction,
    open: Direction,
}

impl RecordKeys {
    /// Keys for the session rustls negotiated. `tx` and `rx` are its extracted secrets with
    /// the sequence number each direction has reached.
    pub fn new(
        version: ProtocolVersion,
        suite: SupportedCipherSuite,
        tx: (u64, ConnectionTrafficSecrets),
        rx: (u64, ConnectionTrafficSecrets),
    ) -> Result<RecordKeys, RecordError> {
        let tls13 = match version {
            ProtocolVersion::TLSv1_3 => true,
            ProtocolVersion::TLSv1_2 => false,
            _ => return Err(RecordError::Malformed("a version coregate does not offer")),
        };
        let limit = match suite {
            SupportedCipherSuite::Tls13(suite) => suite.common.confidentiality_limit,
            SupportedCipherSuite::Tls12(suite) => suite.common.confidentiality_limit,
        };
        let explicit_nonce =
            !tls13 && !matches!(tx.1, ConnectionTrafficSecrets::Chacha20Poly1305 { .. });
        Ok(RecordKeys {
            tls13,
            explicit_nonce,
            limit,
            seal: Direction::new(tx.0, &tx.1, limit)?,
            open: Direction::new(rx.0, &rx.1, limit)?,
        })
    }

    /// After a TLS 1.3 key update: the next records sent use `secrets`, from sequence 0.
    pub fn rekey_seal(&mut self, secrets: &ConnectionTrafficSecrets) -> Result<(), RecordError> {
        self.seal = Direction::new(0, secrets, self.limit)?;
        Ok(())
    }

    /// After the peer's TLS 1.3 key update: the next records received use `secrets`.
    pub fn rekey_open(&mut self, secrets: &ConnectionTrafficSecrets) -> Result<(), RecordError> {
        self.open = Direction::new(0, secrets, self.limit)?;
        Ok(())
    }

    pub fn is_tls13(&self) -> bool {
        self.tls13
    }

    /// The most plaintext a received record of `record_len` bytes can carry.
    pub fn most_plaintext_in(&self, record_len: usize) -> usize {
        record_len.saturating_sub(self.sealed_len(0))
    }

    /// The bytes a record of `plaintext` bytes takes on the wire.
    pub fn sealed_len(&self, plaintext: usize) -> usize {
        let inner_type = usize::from(self.tls13);
        let explicit = if self.explicit_nonce {
            EXPLICIT_NONCE
        } else {
            0
        };
        HEADER + explicit + plaintext + inner_type + TAG
    }

    /// Seals `plaintext` (at most 16 KiB) as one record of type `typ` at the start of `out`;
    /// returns the record's length.
    pub fn seal(
        &mut self,
        typ: ContentType,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, RecordError> {
        assert!(
            plaintext.len() <= MAX_PLAINTEXT,
            "one record carries at most 16 KiB"
        );
        let total = self.sealed_len(plaintext.len());
        let out = out.get_mut(..total).ok_or(RecordError::NoRoom)?;
        let (seq, nonce) = self.seal.next()?;
        let body = if self.explicit_nonce {
            out[HEADER..HEADER + EXPLICIT_NONCE].copy_from_slice(&nonce[4..]);
            HEADER + EXPLICIT_NONCE
        } else {
            HEADER
        };
        let sealed_end = total - TAG;
        out[body..body + plaintext.len()].copy_from_slice(plaintext);
        let header = if self.tls13 {
            out[body + plaintext.len()] = typ.byte();
            header(ContentType::ApplicationData, total - HEADER)
        } else {
            header(typ, total - HEADER)
        };
        out[..HEADER].copy_from_slice(&header);
        let tag = if self.tls13 {
            self.seal_in_place(nonce, &header, &mut out[body..sealed_end])
        } else {
            let aad = tls12_aad(seq, typ.byte(), LEGACY_VERSION, plaintext.len());
            self.seal_in_place(nonce, &aad, &mut out[body..sealed_end])
        }?;
        out[sealed_end..].copy_from_slice(tag.as_ref());
        Ok(total)
    }

    fn seal_in_place(
        &self,
        nonce: [u8; aead::NONCE_LEN],
        aad: &[u8],
        in_out: &mut [u8],
    ) -> Result<aead::Tag, RecordError> {
        self.seal
            .key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                in_out,
            )
            .map_err(|_| RecordError::KeyExhausted)
    }

    /// Opens the one whole record `record` (header included, as [`record_len`] measured it)
    /// in place.
    pub fn open(&mut self, record: &mut [u8]) -> Result<Opened, RecordError> {
        assert!(
            record.len() >= HEADER && record_len(record) == Some(record.len()),
            "open is given exactly one whole record"
        );
        if self.tls13 {
            self.open_tls13(record)
        } else {
            self.open_tls12(record)
        }
    }

    fn open_tls13(&mut self, record: &mut [u8]) -> Result<Opened, RecordError> {
        if record[0] != ContentType::ApplicationData.byte() {
            return Err(RecordError::Malformed(
                "a record type TLS 1.3 does not allow here",
            ));
        }
        let sealed = record.len() - HEADER;
        if sealed > MAX_PLAINTEXT + TLS13_EXPANSION {
            return Err(RecordError::Overflow);
        }
        if sealed < TAG + 1 {
            return Err(RecordError::Malformed("a record shorter than its tag"));
        }
        let header: [u8; HEADER] = record[..HEADER].try_into().expect("HEADER bytes");
        let (_, nonce) = self.open.next()?;
        let nonce = aead::Nonce::assume_unique_for_key(nonce);
        let inner = self
            .open
            .key
            .open_in_place(nonce, aead::Aad::from(header), &mut record[HEADER..])
            .map_err(|_| RecordError::BadRecordMac)?;
        // The content type is the last byte that is not padding.
        let type_at = inner
            .iter()
            .rposition(|&byte| byte != 0)
            .ok_or(RecordError::Malformed("a record of padding only"))?;
        if type_at > MAX_PLAINTEXT {
            return Err(RecordError::Overflow);
        }
        let typ = ContentType::of(inner[type_at]).ok_or(RecordError::Malformed(
            "an inner content type TLS 1.3 does not allow",
        ))?;
        Ok(Opened {
            typ,
            plaintext: HEADER..HEADER + type_at,
        })
    }

    fn open_tls12(&mut self, record: &mut [u8]) -> Result<Opened, RecordError> {
        let typ = ContentType::of(record[0]).ok_or(RecordError::Malformed(
            "a record type TLS 1.2 does not allow here",
        ))?;
        let sealed = record.len() - HEADER;
        if sealed > MAX_PLAINTEXT + TLS12_EXPANSION {
            return Err(RecordError::Overflow);
        }
        let explicit = if self.explicit_nonce {
            EXPLICIT_NONCE
        } else {
            0
        };
        if sealed < explicit + TAG {
            return Err(RecordError::Malformed("a record shorter than its tag"));
        }
        let (seq, mut nonce) = self.open.next()?;
        if self.explicit_nonce {
            nonce = self.open.iv;
            nonce[4..].copy_from_slice(&record[HEADER..HEADER + EXPLICIT_NONCE]);
        }
        let plaintext_len = sealed - explicit - TAG;
        let aad = tls12_aad(seq, record[0], [record[1], record[2]], plaintext_len);
        let body = HEADER + explicit;
        self.open
            .key
            .open_in_place(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad),
                &mut record[body..],
            )
            .map_err(|_| RecordError::BadRecordMac)?;
        if plaintext_len > MAX_PLAINTEXT {
            return Err(RecordError::Overflow);
        }
        Ok(Opened {
            typ,
            plaintext: body..body + plaintext_len,
        })
    }
}

fn header(typ: ContentType, len: usize) -> [u8; HEADER] {
    let len = u16::try_from(len).expect("a sealed record is under 64 KiB");
    let [high, low] = len.to_be_bytes();
    [typ.byte(), LEGACY_VERSION[0], LEGACY_VERSION[1], high, low]
}

/// TLS 1.2's additional data: sequence number, type, version, plaintext length.
fn tls12_aad(seq: u64, typ: u8, version: [u8; 2], plaintext_len: usize) -> [u8; 13] {
    let mut aad = [0; 13];
    aad[..8].copy_from_slice(&seq.to_be_bytes());
    aad[8] = typ;
    aad[9..11].copy_from_slice(&version);
    // Callers bound the length by the record's own 16-bit length field.
    aad[11..].copy_from_slice(&(plaintext_len as u16).to_be_bytes());
    aad
}

/// The handshake messages of one record's plaintext (after the handshake: key updates, and
/// an upstream's session tickets): `(type, body)` each, or an error for a message cut short.
/// A message split over records is refused; no TLS stack splits these short messages.
pub fn handshake_messages(
    mut plaintext: &[u8],
) -> impl Iterator<Item = Result<(u8, &[u8]), RecordError>> {
    std::iter::from_fn(move || {
        if plaintext.is_empty() {
            return None;
        }
        let Some((&[typ, a, b, c], rest)) = plaintext.split_first_chunk::<4>() else {
            plaintext = &[];
            return Some(Err(RecordError::Malformed("a handshake message cut short")));
        };
        let len = u32::from_be_bytes([0, a, b, c]) as usize;
        if rest.len() < len {
            plaintext = &[];
            return Some(Err(RecordError::Malformed("a handshake message cut short")));
        }
        let (body, rest) = rest.split_at(len);
        plaintext = rest;
        Some(Ok((typ, body)))
    })
}

/// Handshake message types that may follow the handshake.
pub const NEW_SESSION_TICKET: u8 = 4;
pub const KEY_UPDATE: u8 = 24;

/// A KeyUpdate asking nothing of the receiver (RFC 8446 4.6.3), as a handshake message.
pub const KEY_UPDATE_NOT_REQUESTED: [u8; 5] = [KEY_UPDATE, 0, 0, 1, 0];

/// The alert that ends a stream on purpose: warning, close_notify.
pub const CLOSE_NOTIFY: [u8; 2] = [1, 0];

#[cfg(test)]
mod tests {
    //! Records sealed here are read by rustls and records rustls seals are opened here, for
    //! every suite and version coregate offers; then what must be refused is.

    use std::io::{Read, Write};
    use std::sync::Arc;

    use rustls::crypto::ring::cipher_suite as suites;
    use rustls::{ClientConfig, ClientConnection, ServerConfig, ServerConnection};
    use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

    use super::*;

    const ALL: [(SupportedCipherSuite, &SupportedProtocolVersion); 6] = [
        (suites::TLS13_AES_128_GCM_SHA256, &rustls::version::TLS13),
        (suites::TLS13_AES_256_GCM_SHA384, &rustls::version::TLS13),
        (
            suites::TLS13_CHACHA20_POLY1305_SHA256,
            &rustls::version::TLS13,
        ),
        (
            suites::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            &rustls::version::TLS12,
        ),
        (
            suites::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            &rustls::version::TLS12,
        ),
        (
            suites::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            &rustls::version::TLS12,
        ),
    ];

    /// A finished handshake between two rustls connections in memory, offering one suite.
    fn handshaken(
        suite: SupportedCipherSuite,
        version: &'static SupportedProtocolVersion,
    ) -> (ServerConnection, ClientConnection) {
        let mut provider = (*crate::tls::provider()).clone();
        provider.cipher_suites = vec![suite];
        let provider = Arc::new(provider);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["record.test".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let mut server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .unwrap();
        server.enable_secret_extraction = true;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        client.enable_secret_extraction = true;
        let mut server = ServerConnection::new(Arc::new(server)).unwrap();
        let mut client =
            ClientConnection::new(Arc::new(client), "record.test".try_into().unwrap()).unwrap();
        while server.is_handshaking() || client.is_handshaking() || server.wants_write() {
            move_records(&mut client, &mut server);
            move_records(&mut server, &mut client);
        }
        (server, client)
    }

    fn move_records<A, B>(from: &mut A, to: &mut B)
    where
        A: std::ops::DerefMut<Target = rustls::ConnectionCommon<A::Data>> + Sided,
        B: std::ops::DerefMut<Target = rustls::ConnectionCommon<B::Data>> + Sided,
    {
        let mut wire = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut wire).unwrap();
        }
        let mut wire = &wire[..];
        while !wire.is_empty() {
            to.read_tls(&mut wire).unwrap();
            to.process_new_packets().unwrap();
        }
    }

    trait Sided {
        type Data;
    }
    impl Sided for ServerConnection {
        type Data = rustls::server::ServerConnectionData;
    }
    impl Sided for ClientConnection {
        type Data = rustls::client::ClientConnectionData;
    }

    /// The server's keys, taken over from rustls, and the rustls client still talking.
    fn server_keys(
        suite: SupportedCipherSuite,
        version: &'static SupportedProtocolVersion,
    ) -> (RecordKeys, ClientConnection) {
        let (server, client) = handshaken(suite, version);
        let negotiated = server.negotiated_cipher_suite().unwrap();
        let version = server.protocol_version().unwrap();
        let secrets = server.dangerous_extract_secrets().unwrap();
        let keys = RecordKeys::new(version, negotiated, secrets.tx, secrets.rx).unwrap();
        (keys, client)
    }

    /// Both ends' keys, for records rustls would never send.
    fn both_keys(
        suite: SupportedCipherSuite,
        version: &'static SupportedProtocolVersion,
    ) -> (RecordKeys, RecordKeys) {
        let (server, client) = handshaken(suite, version);
        let negotiated = server.negotiated_cipher_suite().unwrap();
        let version = server.protocol_version().unwrap();
        let theirs = client.dangerous_extract_secrets().unwrap();
        let ours = server.dangerous_extract_secrets().unwrap();
        (
            RecordKeys::new(version, negotiated, ours.tx, ours.rx).unwrap(),
            RecordKeys::new(version, negotiated, theirs.tx, theirs.rx).unwrap(),
        )
    }

    fn sealed(keys: &mut RecordKeys, typ: ContentType, plaintext: &[u8]) -> Vec<u8> {
        let mut out = vec![0; keys.sealed_len(plaintext.len())];
        let n = keys.seal(typ, plaintext, &mut out).unwrap();
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn records_pass_both_ways_between_rustls_and_coregate_for_every_suite() {
        for (suite, version) in ALL {
            let (mut keys, mut client) = server_keys(suite, version);
            for size in [0, 1, 1000, MAX_PLAINTEXT] {
                let plaintext: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
                // coregate -> rustls
                let record = sealed(&mut keys, ContentType::ApplicationData, &plaintext);
                let mut wire = &record[..];
                while !wire.is_empty() {
                    client.read_tls(&mut wire).unwrap();
                    client.process_new_packets().unwrap();
                }
                let mut got = vec![0; size];
                if size > 0 {
                    client.reader().read_exact(&mut got).unwrap();
                }
                assert_eq!(got, plaintext, "{suite:?} {size} bytes to rustls");
                // rustls -> coregate
                if size == 0 {
                    continue;
                }
                client.writer().write_all(&plaintext).unwrap();
                let mut wire = Vec::new();
                while client.wants_write() {
                    client.write_tls(&mut wire).unwrap();
                }
                let mut opened = Vec::new();
                let mut at = 0;
                while at < wire.len() {
                    let len = record_len(&wire[at..]).unwrap();
                    let record = &mut wire[at..at + len];
                    let Opened { typ, plaintext } = keys.open(record).unwrap();
                    assert_eq!(typ, ContentType::ApplicationData);
                    opened.extend_from_slice(&record[plaintext]);
                    at += len;
                }
                assert_eq!(opened, plaintext, "{suite:?} {size} bytes from rustls");
            }
        }
    }

    #[test]
    fn a_close_notify_from_rustls_opens_as_an_alert() {
        for (suite, version) in ALL {
            let (mut keys, mut client) = server_keys(suite, version);
            client.send_close_notify();
            let mut wire = Vec::new();
            client.write_tls(&mut wire).unwrap();
            let opened = keys.open(&mut wire).unwrap();
            assert_eq!(opened.typ, ContentType::Alert, "{suite:?}");
            assert_eq!(&wire[opened.plaintext], &CLOSE_NOTIFY, "{suite:?}");
        }
    }

    #[test]
    fn a_tampered_record_does_not_open() {
        for (suite, version) in ALL {
            let (mut ours, mut theirs) = both_keys(suite, version);
            let mut record = sealed(&mut theirs, ContentType::ApplicationData, b"GET / HTTP/1.1");
            let last = record.len() - 1;
            record[last] ^= 1;
            assert_eq!(
                ours.open(&mut record),
                Err(RecordError::BadRecordMac),
                "{suite:?}"
            );
        }
    }

    #[test]
    fn a_record_replayed_or_reordered_does_not_open() {
        let (suite, version) = ALL[0];
        let (mut ours, mut theirs) = both_keys(suite, version);
        let _first = sealed(&mut theirs, ContentType::ApplicationData, b"one");
        let mut second = sealed(&mut theirs, ContentType::ApplicationData, b"two");
        assert_eq!(ours.open(&mut second), Err(RecordError::BadRecordMac));

        let (mut ours, mut theirs) = both_keys(suite, version);
        let first = sealed(&mut theirs, ContentType::ApplicationData, b"one");
        ours.open(&mut first.clone()).unwrap();
        assert_eq!(
            ours.open(&mut first.clone()),
            Err(RecordError::BadRecordMac)
        );
    }

    #[test]
    fn records_the_protocol_does_not_allow_are_refused_before_decrypting() {
        for (suite, version) in ALL {
            let (mut ours, _) = both_keys(suite, version);
            // Longer than any ciphertext may be.
            let mut long = vec![23, 3, 3, 0x48, 0x01];
            long.resize(HEADER + 0x4801, 0);
            assert_eq!(
                ours.open(&mut long),
                Err(RecordError::Overflow),
                "{suite:?}"
            );
            // Shorter than its tag.
            let mut short = vec![23, 3, 3, 0, 4, 1, 2, 3, 4];
            assert!(
                matches!(ours.open(&mut short), Err(RecordError::Malformed(_))),
                "{suite:?}"
            );
            // A type no record may have after the handshake.
            let mut change = vec![20, 3, 3, 0, 1, 1];
            assert!(
                matches!(ours.open(&mut change), Err(RecordError::Malformed(_))),
                "{suite:?}"
            );
        }
    }

    #[test]
    fn tls13_hides_the_type_inside_and_tls12_shows_it() {
        for (suite, version) in ALL {
            let (mut ours, mut theirs) = both_keys(suite, version);
            let mut record = sealed(&mut theirs, ContentType::Alert, &CLOSE_NOTIFY);
            let outer = if version == &rustls::version::TLS13 {
                23
            } else {
                21
            };
            assert_eq!(record[0], outer, "{suite:?}");
            let opened = ours.open(&mut record).unwrap();
            assert_eq!(opened.typ, ContentType::Alert);
            assert_eq!(&record[opened.plaintext], &CLOSE_NOTIFY);
        }
    }

    #[test]
    fn no_record_is_sealed_past_the_suites_limit() {
        let (suite, version) = ALL[0];
        let (mut ours, _) = both_keys(suite, version);
        ours.seal.limit = ours.seal.seq + 1;
        sealed(&mut ours, ContentType::ApplicationData, b"last");
        let mut out = vec![0; 64];
        assert_eq!(
            ours.seal(ContentType::ApplicationData, b"one too many", &mut out),
            Err(RecordError::KeyExhausted)
        );
    }

    #[test]
    fn a_record_that_does_not_fit_is_not_sealed() {
        let (suite, version) = ALL[3];
        let (mut ours, _) = both_keys(suite, version);
        let mut out = vec![0; 20];
        assert_eq!(
            ours.seal(
                ContentType::ApplicationData,
                b"twenty bytes and more",
                &mut out
            ),
            Err(RecordError::NoRoom)
        );
    }

    #[test]
    fn handshake_messages_are_split_and_cut_ones_refused() {
        let two = [24, 0, 0, 1, 1, 4, 0, 0, 2, 9, 9];
        let messages: Vec<_> = handshake_messages(&two).collect();
        assert_eq!(messages, vec![Ok((24, &[1][..])), Ok((4, &[9, 9][..]))]);
        let cut = [4, 0, 0, 5, 1];
        assert!(matches!(
            handshake_messages(&cut).collect::<Vec<_>>()[..],
            [Err(RecordError::Malformed(_))]
        ));
        assert!(matches!(
            handshake_messages(&[24, 0]).collect::<Vec<_>>()[..],
            [Err(RecordError::Malformed(_))]
        ));
    }
}
