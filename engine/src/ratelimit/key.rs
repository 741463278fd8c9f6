//! What a limit counts by, and the 64-bit keyed hash a key is stored as.
//!
//! Owns the key kinds of the configuration (`key = "client_ip" | "header:NAME" | "identity" |
//! "route"`), the bytes each kind hashes (IPv6 addresses masked to their prefix, IPv4-mapped
//! IPv6 read as IPv4) and the hash itself. It never stores the key's bytes and never allocates:
//! a header value or an identity is hashed where it lies, in the request buffer.
//!
//! # The hash
//!
//! SipHash-1-3 with a 128-bit key, the [`HashSeed`], which the caller draws once per process at
//! random and gives to every shard, so that every shard maps a client to the same [`KeyHash`]
//! (the node-wide share exchange names keys by hash). SipHash is a keyed pseudo-random function:
//! without the seed a client cannot choose keys that collide or that pile into one probe window
//! of the table.
//!
//! Two different keys with the same hash share one bucket: both are limited together, which can
//! make the limit stricter for them, never looser. It is also unlikely: a new key meets a stored
//! one with probability `n / 2^64` for `n` keys in the table (`8192 / 2^64 = 4.4e-16`), so a
//! shard checking a billion new keys sees a shared bucket with probability below one in a
//! million. Every kind of key is hashed under its own key derived from the seed ([`KeyHasher`]),
//! so an IP address and a header value with the same bytes never meet.

use std::net::IpAddr;

use siphasher::sip::SipHasher13;

/// IPv6 clients are counted by this prefix when the configuration does not say: a /64 is one
/// customer link (RFC 6177), and a host picks from 2^64 addresses inside it, so counting by
/// the full address would let one host take the limit 2^64 times.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// The longest header name a `header:NAME` key may have.
pub const MAX_HEADER_NAME_LEN: usize = 128;

/// The process-wide secret that keys the hash. Draw it at random once per process (16 bytes
/// from the OS) and give the same seed to every shard; a new seed after a restart only means
/// every key starts idle.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HashSeed {
    k0: u64,
    k1: u64,
}

impl HashSeed {
    pub const fn new(k0: u64, k1: u64) -> HashSeed {
        HashSeed { k0, k1 }
    }

    pub const fn from_bytes(bytes: [u8; 16]) -> HashSeed {
        let [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p] = bytes;
        HashSeed {
            k0: u64::from_le_bytes([a, b, c, d, e, f, g, h]),
            k1: u64::from_le_bytes([i, j, k, l, m, n, o, p]),
        }
    }
}

// The seed is a secret: never print it.
impl std::fmt::Debug for HashSeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashSeed(..)")
    }
}

/// A key as the tables store it. Never zero: zero marks an empty slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(u64);

impl KeyHash {
    /// A hash from its value, as the share messages carry it. Zero becomes one.
    pub const fn from_u64(value: u64) -> KeyHash {
        KeyHash(if value == 0 { 1 } else { value })
    }

    pub const fn get(self) -> u64 {
        self.0
    }
}

/// What a limit counts by, from `key = "..."` in the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySpec {
    /// The client's address: IPv4 by /32, IPv6 by its first `ipv6_prefix` bits.
    ClientIp { ipv6_prefix: u8 },
    /// The value of a request header, compared byte for byte. The name is stored lowercase.
    Header(Box<str>),
    /// The identity authentication established (an API key's or a token's subject).
    Identity,
    /// The identity of the client's verified TLS certificate (see `tls::x509`).
    ClientCert,
    /// Nothing: one bucket for the whole route.
    Route,
}

impl Default for KeySpec {
    fn default() -> KeySpec {
        KeySpec::ClientIp {
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }
}

impl KeySpec {
    /// Parses `"client_ip"`, `"header:x-api-key"`, `"identity"`, `"client_cert"` or `"route"`.
    pub fn parse(text: &str) -> Result<KeySpec, &'static str> {
        match text.trim() {
            "client_ip" => Ok(KeySpec::default()),
            "identity" => Ok(KeySpec::Identity),
            "client_cert" => Ok(KeySpec::ClientCert),
            "route" => Ok(KeySpec::Route),
            "" => Err(
                "empty key; use \"client_ip\", \"header:NAME\", \"identity\", \"client_cert\" or \"route\"",
            ),
            other => {
                let Some(name) = other.strip_prefix("header:") else {
                    return Err(
                        "unknown key; use \"client_ip\", \"header:NAME\", \"identity\", \"client_cert\" or \"route\"",
                    );
                };
                if name.is_empty() {
                    return Err("missing header name after \"header:\", like \"header:x-api-key\"");
                }
                if name.len() > MAX_HEADER_NAME_LEN {
                    return Err("header name is too long");
                }
                if !name.bytes().all(crate::http1::is_tchar) {
                    return Err(
                        "the header name after \"header:\" has a character a field name cannot have",
                    );
                }
                Ok(KeySpec::Header(name.to_ascii_lowercase().into()))
            }
        }
    }

    /// The same spec counting IPv6 clients by another prefix length (1 to 128).
    pub fn with_ipv6_prefix(self, prefix: u8) -> Result<KeySpec, &'static str> {
        if !(1..=128).contains(&prefix) {
            return Err("an IPv6 prefix length is between 1 and 128");
        }
        match self {
            KeySpec::ClientIp { .. } => Ok(KeySpec::ClientIp {
                ipv6_prefix: prefix,
            }),
            _ => Err("an IPv6 prefix only applies to key = \"client_ip\""),
        }
    }

    /// The header a `header:NAME` key reads (lowercase), for the pipeline to look up.
    pub fn header_name(&self) -> Option<&str> {
        match self {
            KeySpec::Header(name) => Some(name),
            _ => None,
        }
    }

    /// Builds the key for one request from what the pipeline has at hand. A missing header,
    /// identity or client certificate counts as the empty value: all requests without one
    /// share one bucket, so leaving it out is no way around the limit.
    pub fn key_for<'a>(
        &self,
        client_ip: IpAddr,
        header: Option<&'a [u8]>,
        identity: Option<&'a [u8]>,
        client_cert: Option<&'a [u8]>,
    ) -> LimitKey<'a> {
        match self {
            KeySpec::ClientIp { .. } => LimitKey::ClientIp(client_ip),
            KeySpec::Header(_) => LimitKey::Header(header.unwrap_or(b"")),
            KeySpec::Identity => LimitKey::Identity(identity.unwrap_or(b"")),
            KeySpec::ClientCert => LimitKey::ClientCert(client_cert.unwrap_or(b"")),
            KeySpec::Route => LimitKey::Route,
        }
    }
}

/// One request's key, borrowed from the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKey<'a> {
    ClientIp(IpAddr),
    Header(&'a [u8]),
    Identity(&'a [u8]),
    ClientCert(&'a [u8]),
    Route,
}

/// Kinds of key, each hashed under a key of its own (domain separation).
const KIND_IPV4: usize = 0;
const KIND_IPV6: usize = 1;
const KIND_HEADER: usize = 2;
const KIND_IDENTITY: usize = 3;
const KIND_ROUTE: usize = 4;
const KIND_CLIENT_CERT: usize = 5;

/// The hash functions of one seed, one per kind of key, derived once (a limiter keeps one):
/// kind `k` uses the SipHash key `(sip(seed, [k, 0]), sip(seed, [k, 1]))`. Separate keys rather
/// than a kind byte before the bytes let each key be hashed in one pass over bytes that stay
/// where they are, and an IP address and a header value with the same bytes still never meet.
#[derive(Clone, Copy)]
pub struct KeyHasher {
    by_kind: [SipHasher13; 6],
}

impl KeyHasher {
    pub fn new(seed: HashSeed) -> KeyHasher {
        let base = SipHasher13::new_with_keys(seed.k0, seed.k1);
        let derive = |kind: usize| {
            SipHasher13::new_with_keys(base.hash(&[kind as u8, 0]), base.hash(&[kind as u8, 1]))
        };
        KeyHasher {
            by_kind: [0, 1, 2, 3, 4, 5].map(derive),
        }
    }

    /// The key's hash, IPv6 addresses masked to `ipv6_prefix` bits.
    #[inline]
    pub fn hash(&self, key: LimitKey<'_>, ipv6_prefix: u8) -> KeyHash {
        let hash = match key {
            LimitKey::ClientIp(ip) => match ip {
                IpAddr::V4(v4) => self.by_kind[KIND_IPV4].hash(&v4.octets()),
                // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; they are the
                // same clients as on an IPv4 socket.
                IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                    Some(v4) => self.by_kind[KIND_IPV4].hash(&v4.octets()),
                    None => {
                        let masked = u128::from(v6) & prefix_mask(ipv6_prefix);
                        let mut bytes = [0u8; 17];
                        bytes[..16].copy_from_slice(&masked.to_be_bytes());
                        bytes[16] = ipv6_prefix;
                        self.by_kind[KIND_IPV6].hash(&bytes)
                    }
                },
            },
            LimitKey::Header(value) => self.by_kind[KIND_HEADER].hash(value),
            LimitKey::Identity(identity) => self.by_kind[KIND_IDENTITY].hash(identity),
            LimitKey::ClientCert(identity) => self.by_kind[KIND_CLIENT_CERT].hash(identity),
            LimitKey::Route => self.by_kind[KIND_ROUTE].hash(&[]),
        };
        KeyHash::from_u64(hash)
    }
}

// Derived from the seed: as secret as it.
impl std::fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

impl LimitKey<'_> {
    /// The key's hash under `seed`, IPv6 addresses masked to `ipv6_prefix` bits. Derives the
    /// hash functions on every call; a [`KeyHasher`] keeps them (what a limiter does).
    pub fn hash(self, seed: HashSeed, ipv6_prefix: u8) -> KeyHash {
        KeyHasher::new(seed).hash(self, ipv6_prefix)
    }
}

fn prefix_mask(prefix: u8) -> u128 {
    match prefix {
        0 => 0,
        128.. => u128::MAX,
        bits => u128::MAX << (128 - u32::from(bits)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SEED: HashSeed = HashSeed::new(0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);

    fn ip(text: &str) -> KeyHash {
        LimitKey::ClientIp(text.parse().unwrap()).hash(SEED, DEFAULT_IPV6_PREFIX)
    }

    #[test]
    fn key_specs_parse() {
        assert_eq!(KeySpec::parse("client_ip"), Ok(KeySpec::default()));
        assert_eq!(
            KeySpec::parse("header:X-API-Key"),
            Ok(KeySpec::Header("x-api-key".into()))
        );
        assert_eq!(KeySpec::parse("identity"), Ok(KeySpec::Identity));
        assert_eq!(KeySpec::parse("route"), Ok(KeySpec::Route));
        assert!(
            KeySpec::parse("header:")
                .unwrap_err()
                .contains("missing header")
        );
        assert!(
            KeySpec::parse("header:a b")
                .unwrap_err()
                .contains("character")
        );
        assert!(
            KeySpec::parse("cookie:x")
                .unwrap_err()
                .contains("unknown key")
        );
        assert!(KeySpec::parse("").unwrap_err().contains("empty"));
        let long = format!("header:{}", "a".repeat(MAX_HEADER_NAME_LEN + 1));
        assert!(KeySpec::parse(&long).unwrap_err().contains("too long"));
        assert_eq!(
            KeySpec::default().with_ipv6_prefix(48),
            Ok(KeySpec::ClientIp { ipv6_prefix: 48 })
        );
        assert!(KeySpec::default().with_ipv6_prefix(0).is_err());
        assert!(KeySpec::Route.with_ipv6_prefix(48).is_err());
    }

    #[test]
    fn ipv6_clients_count_by_prefix() {
        assert_eq!(ip("2001:db8:1:2::1"), ip("2001:db8:1:2:ffff:1:2:3"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        let by48 = |text: &str| LimitKey::ClientIp(text.parse().unwrap()).hash(SEED, 48);
        assert_eq!(by48("2001:db8:1:2::1"), by48("2001:db8:1:ffff::1"));
        assert_ne!(by48("2001:db8:1::1"), by48("2001:db8:2::1"));
        let by128 = |text: &str| LimitKey::ClientIp(text.parse().unwrap()).hash(SEED, 128);
        assert_ne!(by128("2001:db8::1"), by128("2001:db8::2"));
    }

    #[test]
    fn ipv4_counts_by_address_and_mapped_addresses_are_ipv4() {
        assert_ne!(ip("192.0.2.1"), ip("192.0.2.2"));
        assert_eq!(ip("192.0.2.1"), ip("::ffff:192.0.2.1"));
        let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        assert_eq!(
            LimitKey::ClientIp(v4).hash(SEED, 64),
            LimitKey::ClientIp(mapped).hash(SEED, 64)
        );
        // An IPv6 address whose first bytes spell an IPv4 one is another client.
        let lookalike = IpAddr::V6(Ipv6Addr::new(0xc000, 0x0201, 0, 0, 0, 0, 0, 0));
        assert_ne!(
            LimitKey::ClientIp(lookalike).hash(SEED, 32),
            ip("192.0.2.1")
        );
    }

    #[test]
    fn kinds_never_meet_and_seeds_matter() {
        let bytes = &[192, 0, 2, 1][..];
        let header = LimitKey::Header(bytes).hash(SEED, 64);
        let identity = LimitKey::Identity(bytes).hash(SEED, 64);
        assert_ne!(header, identity);
        assert_ne!(header, ip("192.0.2.1"));
        assert_ne!(
            LimitKey::Header(b"").hash(SEED, 64),
            LimitKey::Route.hash(SEED, 64)
        );
        let other = HashSeed::new(1, 2);
        assert_ne!(
            LimitKey::Header(b"k").hash(other, 64),
            LimitKey::Header(b"k").hash(SEED, 64)
        );
        assert_eq!(
            HashSeed::from_bytes([1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]),
            other
        );
        assert_eq!(format!("{SEED:?}"), "HashSeed(..)");
        let hasher = KeyHasher::new(SEED);
        assert_eq!(format!("{hasher:?}"), "KeyHasher(..)");
        for key in [
            LimitKey::Header(b"k"),
            LimitKey::Route,
            LimitKey::Identity(b""),
        ] {
            assert_eq!(hasher.hash(key, 64), key.hash(SEED, 64));
        }
    }

    #[test]
    fn keys_come_from_the_request_and_missing_values_share_a_bucket() {
        let peer: IpAddr = "192.0.2.9".parse().unwrap();
        let spec = KeySpec::parse("header:x-api-key").unwrap();
        assert_eq!(spec.header_name(), Some("x-api-key"));
        assert_eq!(
            spec.key_for(peer, Some(b"k1"), None, None),
            LimitKey::Header(b"k1")
        );
        assert_eq!(spec.key_for(peer, None, None, None), LimitKey::Header(b""));
        assert_eq!(
            KeySpec::Identity.key_for(peer, None, Some(b"alice"), None),
            LimitKey::Identity(b"alice")
        );
        assert_eq!(
            KeySpec::default().key_for(peer, None, None, None),
            LimitKey::ClientIp(peer)
        );
        assert_eq!(
            KeySpec::Route.key_for(peer, None, None, None),
            LimitKey::Route
        );
        assert_eq!(
            KeySpec::ClientCert.key_for(peer, None, Some(b"alice"), Some(b"client-7")),
            LimitKey::ClientCert(b"client-7")
        );
        assert_eq!(
            KeySpec::ClientCert.key_for(peer, None, None, None),
            LimitKey::ClientCert(b"")
        );
    }

    #[test]
    fn zero_is_never_a_key() {
        assert_eq!(KeyHash::from_u64(0).get(), 1);
        assert_eq!(KeyHash::from_u64(7).get(), 7);
    }
}
