//! What a verified token's claims must say, and which of them travel upstream as headers.
//!
//! Owns claim rules (`equals`, `contains`), the conversion of a claim into a header value and
//! its sanitising. A claim value comes from the token issuer, who may have copied user input
//! into it (a display name, an email), so a value that would not be a safe field value is never
//! forwarded: any control byte (below 0x20, or DEL; CR, LF, NUL and tab included) drops the
//! claim, and so does a value longer than [`MAX_FORWARDED_VALUE_BYTES`]. Bytes above 0x7F (UTF-8
//! text) pass as they are, as RFC 9110 permits in field values.
//!
//! The pipeline must remove any header of the same names the client sent, or a client could
//! pose as the identity a token would have proven.

use serde_json::{Map, Value};

/// The longest claim value forwarded as a header.
pub const MAX_FORWARDED_VALUE_BYTES: usize = 1024;

/// The longest identity accepted from a token.
pub const MAX_IDENTITY_BYTES: usize = 256;

/// The longest claim name a rule or a forward may use.
pub const MAX_CLAIM_NAME_BYTES: usize = 64;

/// What a rule asks of a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimCheck {
    /// The claim is this string (or a number or boolean written like it: `"true"`, `"42"`).
    Equals(String),
    /// The claim is an array holding this string, or a string of space-separated words holding
    /// it as one word (the OAuth `scope` claim: `"orders:read orders:write"`).
    Contains(String),
}

/// A claim that must be present and satisfy a check, or the request is refused with 403.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRule {
    pub claim: String,
    pub check: ClaimCheck,
}

/// A claim forwarded upstream as a request header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardClaim {
    pub claim: String,
    /// Field name, lowercase after validation.
    pub header: String,
}

/// Header names a claim may never be forwarded as: they frame the message or belong to one hop.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "expect",
];

pub(super) fn validate_claim_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > MAX_CLAIM_NAME_BYTES {
        return Err("a claim name has 1 to 64 characters");
    }
    if name.bytes().any(|b| b.is_ascii_control()) {
        return Err("a claim name cannot have control characters");
    }
    Ok(())
}

pub(super) fn validate_header_name(name: &str) -> Result<String, &'static str> {
    if name.is_empty() || name.len() > 128 {
        return Err("a forwarded header name has 1 to 128 characters");
    }
    if !name.bytes().all(crate::http1::is_tchar) {
        return Err("a forwarded header name has a character a field name cannot have");
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) {
        return Err("claims cannot be forwarded as a framing or hop-by-hop header");
    }
    Ok(lower)
}

impl ClaimRule {
    pub(super) fn holds(&self, claims: &Map<String, Value>) -> bool {
        let Some(value) = claims.get(&self.claim) else {
            return false;
        };
        match &self.check {
            ClaimCheck::Equals(wanted) => match value {
                Value::String(text) => text == wanted,
                Value::Number(number) => number.to_string() == *wanted,
                Value::Bool(flag) => (if *flag { "true" } else { "false" }) == wanted,
                _ => false,
            },
            ClaimCheck::Contains(wanted) => match value {
                Value::Array(items) => items
                    .iter()
                    .any(|item| item.as_str() == Some(wanted.as_str())),
                Value::String(words) => words.split(' ').any(|word| word == wanted),
                _ => false,
            },
        }
    }
}

/// The header value of a claim, or `None` when it must not be forwarded: strings as they are,
/// numbers and booleans as JSON writes them, arrays of those joined with `,`; objects and null
/// never. Surrounding spaces are trimmed (a field value cannot carry them).
pub(super) fn header_value(value: &Value) -> Option<Vec<u8>> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(_) | Value::Bool(_) => value.to_string(),
        Value::Array(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    Value::String(text) => parts.push(text.clone()),
                    Value::Number(_) | Value::Bool(_) => parts.push(item.to_string()),
                    _ => return None,
                }
            }
            parts.join(",")
        }
        Value::Null | Value::Object(_) => return None,
    };
    let trimmed = text.trim_matches([' ', '\t']);
    safe_field_value(trimmed.as_bytes()).then(|| trimmed.as_bytes().to_vec())
}

/// A non-empty value of at most [`MAX_FORWARDED_VALUE_BYTES`] without control bytes.
pub(super) fn safe_field_value(bytes: &[u8]) -> bool {
    !bytes.is_empty()
        && bytes.len() <= MAX_FORWARDED_VALUE_BYTES
        && bytes.iter().all(|&b| b >= 0x20 && b != 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn rules_check_equality_and_membership() {
        let c = claims(json!({
            "tenant": "acme", "level": 3, "admin": true,
            "scope": "orders:read orders:write", "roles": ["viewer", "editor"],
            "nested": {"a": 1}
        }));
        let rule = |claim: &str, check| ClaimRule {
            claim: claim.to_owned(),
            check,
        };
        let eq = |v: &str| ClaimCheck::Equals(v.to_owned());
        let has = |v: &str| ClaimCheck::Contains(v.to_owned());
        assert!(rule("tenant", eq("acme")).holds(&c));
        assert!(!rule("tenant", eq("Acme")).holds(&c));
        assert!(rule("level", eq("3")).holds(&c));
        assert!(rule("admin", eq("true")).holds(&c));
        assert!(rule("scope", has("orders:write")).holds(&c));
        assert!(!rule("scope", has("orders")).holds(&c));
        assert!(rule("roles", has("editor")).holds(&c));
        assert!(!rule("roles", has("owner")).holds(&c));
        assert!(!rule("missing", eq("x")).holds(&c));
        assert!(!rule("nested", eq("{\"a\":1}")).holds(&c));
    }

    #[test]
    fn only_safe_values_are_forwarded() {
        let value = |v: Value| header_value(&v).map(|b| String::from_utf8(b).unwrap());
        assert_eq!(
            value(json!("alice@example.com")),
            Some("alice@example.com".into())
        );
        assert_eq!(value(json!(" padded ")), Some("padded".into()));
        assert_eq!(value(json!("Jos\u{e9}")), Some("Jos\u{e9}".into()));
        assert_eq!(value(json!(42)), Some("42".into()));
        assert_eq!(value(json!(false)), Some("false".into()));
        assert_eq!(value(json!(["a", "b", 3])), Some("a,b,3".into()));
        for unsafe_value in [
            json!("line\r\nX-Injected: 1"),
            json!("nul\u{0}"),
            json!("del\u{7f}"),
            json!("bell\u{7}"),
            json!("tab\tinside"),
            json!(["ok", "bad\n"]),
            json!(["ok", {"a": 1}]),
            json!({"a": 1}),
            json!(null),
            json!(""),
            json!("   "),
            json!("x".repeat(MAX_FORWARDED_VALUE_BYTES + 1)),
        ] {
            assert_eq!(header_value(&unsafe_value), None, "{unsafe_value}");
        }
    }

    #[test]
    fn forwarded_names_are_field_names_and_not_framing() {
        assert_eq!(validate_header_name("X-User"), Ok("x-user".to_owned()));
        assert!(validate_header_name("Content-Length").is_err());
        assert!(validate_header_name("Host").is_err());
        assert!(validate_header_name("x user").is_err());
        assert!(validate_header_name("").is_err());
        assert!(validate_claim_name("sub").is_ok());
        assert!(validate_claim_name("").is_err());
        assert!(validate_claim_name("a\nb").is_err());
    }
}
