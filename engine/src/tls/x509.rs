//! The facts coregate reads from a certificate itself: its validity period (for expiry checks),
//! its DNS names (subject alternative names, for choosing a certificate by SNI and for
//! `coregate check`'s coverage warnings), and the identity a client certificate names (for
//! rate-limit keys and the forwarded header). Signatures and chains are rustls's and webpki's
//! business, not this module's.
//!
//! The DER reader is deliberately small: definite lengths of at most four bytes, every length
//! checked against what is left, anything unexpected refused with a sentence, never a panic.

/// What a certificate says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFacts {
    /// Seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// `dNSName` entries of the subject alternative name extension, lowercased, as written
    /// (wildcards keep their `*.`).
    pub dns_names: Vec<String>,
    /// Who the certificate names: its first subject alternative name that is a DNS name, an
    /// e-mail address or a URI, else its subject's common name. Printable ASCII only
    /// (anything else is left out), so it can travel in a header field.
    pub identity: Option<String>,
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;
const DNS_NAME: u8 = 0x82;
const EMAIL: u8 = 0x81;
const URI: u8 = 0x86;
const SET: u8 = 0x31;
/// 2.5.4.3, commonName.
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// 2.5.29.17, subjectAltName.
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// Reads the facts of a DER certificate.
pub fn facts(der: &[u8]) -> Result<CertFacts, &'static str> {
    let mut outer = Reader(der);
    let mut cert = Reader(outer.expect(SEQUENCE)?);
    let mut tbs = Reader(cert.expect(SEQUENCE)?);
    if tbs.peek() == Some(VERSION) {
        tbs.any()?;
    }
    tbs.expect(INTEGER)?; // serial number
    tbs.expect(SEQUENCE)?; // signature algorithm
    tbs.expect(SEQUENCE)?; // issuer
    let mut validity = Reader(tbs.expect(SEQUENCE)?);
    let not_before = time(&mut validity)?;
    let not_after = time(&mut validity)?;
    let subject = tbs.expect(SEQUENCE)?;
    tbs.expect(SEQUENCE)?; // subject public key info
    let mut dns_names = Vec::new();
    let mut san_identity = None;
    while let Some(tag) = tbs.peek() {
        let (tag, value) = (tag, tbs.any()?.1);
        if tag != EXTENSIONS {
            continue; // issuer or subject unique id
        }
        let mut list = Reader(Reader(value).expect(SEQUENCE)?);
        while !list.0.is_empty() {
            let mut extension = Reader(list.expect(SEQUENCE)?);
            let id = extension.expect(OID)?;
            if extension.peek() == Some(BOOLEAN) {
                extension.any()?;
            }
            let value = extension.expect(OCTET_STRING)?;
            if id != SUBJECT_ALT_NAME {
                continue;
            }
            let mut names = Reader(Reader(value).expect(SEQUENCE)?);
            while !names.0.is_empty() {
                let (tag, name) = names.any()?;
                if san_identity.is_none() && matches!(tag, DNS_NAME | EMAIL | URI) {
                    san_identity = printable(name);
                }
                if tag == DNS_NAME {
                    let name = std::str::from_utf8(name)
                        .map_err(|_| "a DNS name in the certificate is not text")?;
                    dns_names.push(name.to_ascii_lowercase());
                }
            }
        }
    }
    let identity = san_identity.or_else(|| common_name(subject));
    Ok(CertFacts {
        not_before,
        not_after,
        dns_names,
        identity,
    })
}

/// The (last) common name of a distinguished name, when printable.
fn common_name(name: &[u8]) -> Option<String> {
    let mut rdns = Reader(name);
    let mut found = None;
    while !rdns.0.is_empty() {
        let mut set = Reader(rdns.expect(SET).ok()?);
        while !set.0.is_empty() {
            let mut pair = Reader(set.expect(SEQUENCE).ok()?);
            let id = pair.expect(OID).ok()?;
            let (_, value) = pair.any().ok()?;
            if id == COMMON_NAME {
                found = printable(value);
            }
        }
    }
    found
}

/// Bytes that may stand in a header field and a log line: visible ASCII and spaces.
fn printable(bytes: &[u8]) -> Option<String> {
    (!bytes.is_empty() && bytes.iter().all(|&b| b == b' ' || b.is_ascii_graphic()))
        .then(|| String::from_utf8_lossy(bytes).into_owned())
}

fn time(r: &mut Reader<'_>) -> Result<i64, &'static str> {
    let (tag, value) = r.any()?;
    // ASCII only, so the fixed offsets below always fall on character boundaries.
    if !value.is_ascii() {
        return Err("a validity time is not ASCII text");
    }
    let text = std::str::from_utf8(value).map_err(|_| "a validity time is not text")?;
    let (year, rest) = match tag {
        UTC_TIME if text.len() == 13 => {
            let yy: i64 = digits(&text[..2])?;
            // RFC 5280 4.1.2.5.1: 50-99 are 19xx, 00-49 are 20xx.
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        GENERALIZED_TIME if text.len() == 15 => (digits(&text[..4])?, &text[4..]),
        _ => return Err("a validity time is neither UTCTime nor GeneralizedTime in UTC"),
    };
    if !rest.ends_with('Z') {
        return Err("a validity time is not in UTC");
    }
    let month: i64 = digits(&rest[0..2])?;
    let day: i64 = digits(&rest[2..4])?;
    let hour: i64 = digits(&rest[4..6])?;
    let minute: i64 = digits(&rest[6..8])?;
    let second: i64 = digits(&rest[8..10])?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return Err("a validity time is out of range");
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

fn digits(text: &str) -> Result<i64, &'static str> {
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a validity time has a non-digit");
    }
    text.parse().map_err(|_| "a validity time has a non-digit")
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The unread rest of a DER value.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// The next element's tag and contents.
    fn any(&mut self) -> Result<(u8, &'a [u8]), &'static str> {
        const TRUNCATED: &str = "the certificate's DER is truncated";
        let (&tag, rest) = self.0.split_first().ok_or(TRUNCATED)?;
        let (&first, mut rest) = rest.split_first().ok_or(TRUNCATED)?;
        let len = if first < 0x80 {
            first as usize
        } else {
            let count = (first & 0x7f) as usize;
            if count == 0 || count > 4 || rest.len() < count {
                return Err("the certificate's DER has an unsupported length");
            }
            let len = rest[..count]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | b as usize);
            rest = &rest[count..];
            len
        };
        if rest.len() < len {
            return Err(TRUNCATED);
        }
        let (value, rest) = rest.split_at(len);
        self.0 = rest;
        Ok((tag, value))
    }

    fn expect(&mut self, tag: u8) -> Result<&'a [u8], &'static str> {
        match self.any()? {
            (found, value) if found == tag => Ok(value),
            _ => Err("the certificate's DER is not an X.509 certificate"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_count_days_from_the_epoch() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 12, 7), 20_794);
    }

    #[test]
    fn a_validity_time_with_non_ascii_text_is_refused_not_sliced() {
        // UTCTime whose 13 bytes are valid UTF-8 with a three-byte character where the
        // minutes stand: slicing at fixed offsets would split that character.
        let mut der = vec![UTC_TIME, 13];
        der.extend_from_slice("26120703\u{5300}\nZ".as_bytes());
        assert_eq!(der.len(), 15);
        assert_eq!(
            time(&mut Reader(&der)),
            Err("a validity time is not ASCII text")
        );
        let mut der = vec![GENERALIZED_TIME, 15];
        der.extend_from_slice("2026120703\u{5300}\nZ\0".as_bytes());
        assert_eq!(
            time(&mut Reader(&der)),
            Err("a validity time is not ASCII text")
        );
    }

    #[test]
    fn a_generated_certificate_gives_its_names_and_period() {
        let mut params =
            rcgen::CertificateParams::new(vec!["a.example".into(), "*.B.example".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2024, 1, 2);
        params.not_after = rcgen::date_time_ymd(2049, 12, 31);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let facts = facts(cert.der()).unwrap();
        assert_eq!(facts.dns_names, ["a.example", "*.b.example"]);
        assert_eq!(facts.identity.as_deref(), Some("a.example"));
        assert_eq!(facts.not_before, days_from_civil(2024, 1, 2) * 86_400);
        assert_eq!(facts.not_after, days_from_civil(2049, 12, 31) * 86_400);
    }

    #[test]
    fn a_certificate_without_names_is_known_by_its_common_name() {
        let mut params = rcgen::CertificateParams::new(vec![]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client-7");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            facts(cert.der()).unwrap().identity.as_deref(),
            Some("client-7")
        );
    }

    #[test]
    fn truncated_or_foreign_der_is_refused_not_panicked() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = cert.der();
        for cut in 0..der.len() {
            let _ = facts(&der[..cut]);
        }
        assert!(facts(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(facts(b"").is_err());
    }
}
