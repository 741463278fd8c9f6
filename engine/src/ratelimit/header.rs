//! The response header values a limit decision is written as: `Retry-After`, and the
//! `RateLimit-Policy` and `RateLimit` fields of the IETF draft (draft-ietf-httpapi-ratelimit-
//! headers, revisions 09 to 12 share this syntax).
//!
//! Owns the formatting only, into fixed-size values on the stack: no allocation, no I/O. The
//! pipeline decides which responses carry which fields.
//!
//! | field | value | meaning here |
//! |---|---|---|
//! | `RateLimit-Policy` | `"<name>";q=<count>;w=<seconds>` | the configured rate: `q` requests per `w` seconds (`"100/s"` is `q=100;w=1`), node-wide |
//! | `RateLimit` | `"<name>";r=<remaining>;t=<seconds>` | `r`: requests this shard would still admit at once for the key; `t`: seconds until the key's full burst is back (rounded up) |
//! | `Retry-After` | `<seconds>` | on a 429: seconds until one request is admitted, rounded up, at least 1 |
//!
//! Both draft fields are Structured Field Lists of one Item whose value is a String (the policy
//! name). On a 429, `RateLimit` says `r=0;t=<Retry-After>`, so `Retry-After` never points before
//! the end of the effective window, as the draft asks. The partition key parameter (`pk`) is
//! never sent: it would echo the client's key (an API key, an address) into the response.
//!
//! `r` is what the shard that answered can admit, which is its share of the node's burst: a
//! client reading it is told to slow down a little earlier than the node would require, never
//! later.

use super::rate::{NANOS_PER_SECOND, Quota};

/// The policy name when the configuration gives none.
pub const DEFAULT_POLICY_NAME: &str = "default";

/// The longest policy name kept; longer names are cut.
pub const MAX_POLICY_NAME_LEN: usize = 64;

/// Room for the longest value: a quoted name of [`MAX_POLICY_NAME_LEN`] bytes (escapes
/// doubling it), two parameters of up to 20 digits and their separators.
const VALUE_CAPACITY: usize = 2 * MAX_POLICY_NAME_LEN + 2 + 2 * (3 + 20);

/// One header value, formatted on the stack.
#[derive(Clone, Copy)]
pub struct HeaderValue {
    bytes: [u8; VALUE_CAPACITY],
    len: usize,
}

impl HeaderValue {
    const fn new() -> HeaderValue {
        HeaderValue {
            bytes: [0; VALUE_CAPACITY],
            len: 0,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn push(&mut self, bytes: &[u8]) {
        // Callers stay within VALUE_CAPACITY by construction; cut rather than panic.
        let room = VALUE_CAPACITY - self.len;
        let n = bytes.len().min(room);
        self.bytes[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
    }

    fn push_number(&mut self, mut n: u64) {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.push(&digits[at..]);
    }
}

impl std::fmt::Debug for HeaderValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl PartialEq<&str> for HeaderValue {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

/// A policy name as a Structured Field String: printable ASCII, `"` and `\` escaped. Other
/// bytes become `_`; at most [`MAX_POLICY_NAME_LEN`] bytes are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicyName {
    /// The quoted, escaped form, ready to write.
    quoted: Box<[u8]>,
}

impl PolicyName {
    pub fn new(name: &str) -> PolicyName {
        let name = if name.is_empty() {
            DEFAULT_POLICY_NAME
        } else {
            name
        };
        let mut quoted = Vec::with_capacity(2 * MAX_POLICY_NAME_LEN + 2);
        quoted.push(b'"');
        for &byte in name.as_bytes().iter().take(MAX_POLICY_NAME_LEN) {
            match byte {
                b'"' | b'\\' => quoted.extend_from_slice(&[b'\\', byte]),
                0x20..=0x7e => quoted.push(byte),
                _ => quoted.push(b'_'),
            }
        }
        quoted.push(b'"');
        PolicyName {
            quoted: quoted.into_boxed_slice(),
        }
    }

    pub fn quoted(&self) -> &[u8] {
        &self.quoted
    }
}

/// `RateLimit-Policy` for a quota.
pub fn policy_value(name: &PolicyName, quota: Quota) -> HeaderValue {
    let mut value = HeaderValue::new();
    value.push(name.quoted());
    value.push(b";q=");
    value.push_number(u64::from(quota.rate().count()));
    value.push(b";w=");
    value.push_number(quota.rate().per().seconds());
    value
}

/// `RateLimit` for a decision's numbers.
pub fn rate_limit_value(name: &PolicyName, remaining: u32, reset_nanos: u64) -> HeaderValue {
    let mut value = HeaderValue::new();
    value.push(name.quoted());
    value.push(b";r=");
    value.push_number(u64::from(remaining));
    value.push(b";t=");
    value.push_number(seconds_up(reset_nanos));
    value
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1 (a 0 would invite an
/// immediate retry that is refused again).
pub fn retry_after_value(wait_nanos: u64) -> HeaderValue {
    let mut value = HeaderValue::new();
    value.push_number(retry_after_seconds(wait_nanos));
    value
}

pub const fn retry_after_seconds(wait_nanos: u64) -> u64 {
    let seconds = seconds_up(wait_nanos);
    if seconds == 0 { 1 } else { seconds }
}

const fn seconds_up(nanos: u64) -> u64 {
    nanos.div_ceil(NANOS_PER_SECOND)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::rate::Rate;

    #[test]
    fn values_follow_the_draft_syntax() {
        let name = PolicyName::new("orders");
        let quota = Quota::new(Rate::parse("6000/m").unwrap(), Some(50)).unwrap();
        assert_eq!(policy_value(&name, quota), "\"orders\";q=6000;w=60");
        assert_eq!(
            rate_limit_value(&name, 12, 1_500_000_000),
            "\"orders\";r=12;t=2"
        );
        assert_eq!(rate_limit_value(&name, 0, 0), "\"orders\";r=0;t=0");
        assert_eq!(retry_after_value(1), "1");
        assert_eq!(retry_after_value(0), "1");
        assert_eq!(retry_after_value(3 * NANOS_PER_SECOND), "3");
        assert_eq!(retry_after_value(3 * NANOS_PER_SECOND + 1), "4");
        assert_eq!(retry_after_value(u64::MAX), "18446744074");
    }

    #[test]
    fn names_become_structured_field_strings() {
        assert_eq!(PolicyName::new("").quoted(), b"\"default\"");
        assert_eq!(PolicyName::new("a\"b\\c").quoted(), b"\"a\\\"b\\\\c\"");
        assert_eq!(PolicyName::new("caf\u{e9}\r\n").quoted(), b"\"caf____\"");
        let long = "\"".repeat(200);
        let name = PolicyName::new(&long);
        assert_eq!(name.quoted().len(), 2 * MAX_POLICY_NAME_LEN + 2);
        let quota = Quota::new(Rate::parse("1000000/s").unwrap(), None).unwrap();
        let value = rate_limit_value(&name, u32::MAX, u64::MAX);
        assert!(value.as_bytes().ends_with(b";r=4294967295;t=18446744074"));
        assert!(
            policy_value(&name, quota)
                .as_bytes()
                .ends_with(b";q=1000000;w=1")
        );
    }
}
