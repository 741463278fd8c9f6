//! What a hashing policy (`ring_hash`, `maglev`) hashes, and the hash itself.
//!
//! Owns [`HashOn`] (a header, a cookie or the client's address) and [`hash_bytes`], a fixed
//! 64-bit hash with a fixed seed: every shard, every restart and every coregate of a fleet maps
//! the same key to the same point, so a client sticks to its endpoint wherever it lands. It is
//! not a defence against chosen keys (nothing here is secret); bounded load (`ring_hash`) is
//! what keeps one hot key from overloading an endpoint.
//!
//! Hashing reads the request in place and allocates nothing.

use std::net::IpAddr;

use crate::request::RequestView;

/// What a hashing policy hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashOn {
    /// The client's address (IPv4-mapped IPv6 counts as IPv4).
    ClientIp,
    /// The first field of this name (lowercase).
    Header(Box<str>),
    /// The cookie of this name, from any `Cookie` field.
    Cookie(Box<str>),
}

impl HashOn {
    /// The key of `request`, hashed; `None` when the request lacks the header or cookie (the
    /// caller then picks as `random` does, as Envoy does).
    pub fn key(&self, request: &RequestView<'_>) -> Option<u64> {
        match self {
            HashOn::ClientIp => Some(hash_ip(request.client)),
            HashOn::Header(name) => request.fields.get(name.as_bytes()).map(hash_bytes),
            HashOn::Cookie(name) => request
                .fields
                .all(b"cookie")
                .find_map(|line| cookie(line, name.as_bytes()))
                .map(hash_bytes),
        }
    }

    /// How the configuration writes it: `client_ip`, `header:NAME`, `cookie:NAME`.
    pub fn parse(text: &str) -> Result<HashOn, &'static str> {
        const SHAPE: &str = "expected \"client_ip\", \"header:NAME\" or \"cookie:NAME\"";
        if text == "client_ip" {
            return Ok(HashOn::ClientIp);
        }
        let (kind, name) = text.split_once(':').ok_or(SHAPE)?;
        if name.is_empty() || !name.bytes().all(crate::http1::is_tchar) {
            return Err("the name after ':' must be a header or cookie name (a token)");
        }
        match kind {
            "header" => Ok(HashOn::Header(name.to_ascii_lowercase().into())),
            "cookie" => Ok(HashOn::Cookie(name.into())),
            _ => Err(SHAPE),
        }
    }
}

impl std::fmt::Display for HashOn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HashOn::ClientIp => f.write_str("client_ip"),
            HashOn::Header(name) => write!(f, "header:{name}"),
            HashOn::Cookie(name) => write!(f, "cookie:{name}"),
        }
    }
}

/// The value of cookie `name` in one `Cookie` field (`a=1; b=2`), RFC 6265 sec. 4.2.1.
fn cookie<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    line.split(|&b| b == b';').find_map(|pair| {
        let pair = pair.trim_ascii();
        let (key, value) = pair.split_at(pair.iter().position(|&b| b == b'=')?);
        (key == name).then(|| &value[1..])
    })
}

/// The client's address, hashed; an IPv4 client of a dual-stack listener hashes as IPv4.
pub fn hash_ip(ip: IpAddr) -> u64 {
    match ip.to_canonical() {
        IpAddr::V4(v4) => hash_bytes(&v4.octets()),
        IpAddr::V6(v6) => hash_bytes(&v6.octets()),
    }
}

const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
const MUL: u64 = 0xff51_afd7_ed55_8ccd;

/// A 64-bit hash of `bytes`: eight bytes at a time multiplied in, then murmur3's finaliser.
/// Fast on short keys (a session id hashes in a few nanoseconds) and the same everywhere.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    let mut h = SEED ^ (bytes.len() as u64).wrapping_mul(MUL);
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        h = (h ^ mix(word))
            .rotate_left(27)
            .wrapping_mul(5)
            .wrapping_add(0x52dc_e729);
    }
    let mut tail = [0u8; 8];
    let rest = chunks.remainder();
    tail[..rest.len()].copy_from_slice(rest);
    h ^= mix(u64::from_le_bytes(tail));
    mix(h)
}

/// murmur3's 64-bit finaliser: every input bit affects every output bit.
pub fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(MUL);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_found_among_others() {
        assert_eq!(cookie(b"a=1; sid=xyz; b=2", b"sid"), Some(&b"xyz"[..]));
        assert_eq!(cookie(b"sid=", b"sid"), Some(&b""[..]));
        assert_eq!(cookie(b"asid=1; sidx=2", b"sid"), None);
        assert_eq!(cookie(b"novalue; sid=7", b"sid"), Some(&b"7"[..]));
    }

    #[test]
    fn hashes_differ_by_every_byte_and_length() {
        let base = hash_bytes(b"session-0001");
        assert_ne!(base, hash_bytes(b"session-0002"));
        assert_ne!(base, hash_bytes(b"session-000"));
        assert_ne!(hash_bytes(b""), hash_bytes(b"\0"));
        assert_eq!(base, hash_bytes(b"session-0001"), "stable");
    }

    #[test]
    fn mapped_ipv4_hashes_as_ipv4() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(hash_ip(v4), hash_ip(mapped));
    }

    #[test]
    fn the_configuration_forms_parse() {
        assert_eq!(HashOn::parse("client_ip"), Ok(HashOn::ClientIp));
        assert_eq!(
            HashOn::parse("header:X-User"),
            Ok(HashOn::Header("x-user".into()))
        );
        assert_eq!(
            HashOn::parse("cookie:sid"),
            Ok(HashOn::Cookie("sid".into()))
        );
        assert!(HashOn::parse("header:").is_err());
        assert!(HashOn::parse("query:id").is_err());
        assert!(HashOn::parse("client").is_err());
    }
}
