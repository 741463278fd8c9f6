//! A shard's small cache of tokens it has verified, so a client that sends the same token again
//! does not pay a signature check per request.
//!
//! Owns a fixed number of entries, found by the SHA-256 digest of the whole token (a collision
//! resistant key: a cache hit is as good as a verification, whoever chooses the tokens), each
//! valid until the earlier of the token's expiry (plus leeway) and [`DEFAULT_TOKEN_CACHE_TTL_SECONDS`]
//! after it was verified. It belongs to one shard and one verifier: a cache handed to another
//! verifier (a new config snapshot) is emptied first, so a key or rule change is never bypassed.
//! Only verified tokens are cached, never refusals.
//!
//! Memory: [`DEFAULT_TOKEN_CACHE_ENTRIES`] entries of 32 bytes of digest, the verified identity
//! (at most 256 bytes) and the forwarded claim values (at most 1 KiB each), allocated when a
//! token is inserted and freed when it is replaced.

use subtle::ConstantTimeEq;

use super::VerifiedToken;

/// Entries per shard when the configuration does not say.
pub const DEFAULT_TOKEN_CACHE_ENTRIES: usize = 1_024;

/// The longest a verified token is trusted without a new check, when the configuration does not
/// say. Bounds how long a token stays accepted after its key is removed from a JWKS document
/// that is reloaded without a new snapshot.
pub const DEFAULT_TOKEN_CACHE_TTL_SECONDS: u64 = 300;

/// Entries one lookup reads.
const PROBE_WINDOW: usize = 4;

struct Entry {
    digest: [u8; 32],
    valid_until: u64,
    token: VerifiedToken,
}

/// Counters for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheCounters {
    pub hits: u64,
    pub misses: u64,
    /// Valid entries replaced to make room.
    pub evictions: u64,
}

/// Verified tokens of one verifier on one shard.
pub struct TokenCache {
    entries: Box<[Option<Entry>]>,
    mask: usize,
    ttl_seconds: u64,
    /// The verifier the entries were verified by.
    pub(super) owner: u64,
    counters: CacheCounters,
}

impl TokenCache {
    /// A cache of at least `entries` entries (a power of two from 4 to 2^20). To verify without
    /// caching, call `JwtVerifier::verify` instead.
    pub fn new(entries: usize, ttl_seconds: u64) -> TokenCache {
        let slots = entries.clamp(PROBE_WINDOW, 1 << 20).next_power_of_two();
        TokenCache {
            entries: (0..slots).map(|_| None).collect(),
            mask: slots - 1,
            ttl_seconds,
            owner: 0,
            counters: CacheCounters::default(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    pub fn counters(&self) -> CacheCounters {
        self.counters
    }

    pub(super) fn clear(&mut self) {
        self.entries.iter_mut().for_each(|entry| *entry = None);
    }

    fn window(&self, digest: &[u8; 32]) -> impl Iterator<Item = usize> + use<> {
        let start = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) as usize;
        let mask = self.mask;
        (0..PROBE_WINDOW).map(move |step| (start + step) & mask)
    }

    pub(super) fn get(&mut self, digest: &[u8; 32], now_unix: u64) -> Option<usize> {
        for index in self.window(digest) {
            let Some(entry) = &self.entries[index] else {
                continue;
            };
            if bool::from(entry.digest.ct_eq(digest)) {
                if now_unix < entry.valid_until {
                    self.counters.hits += 1;
                    return Some(index);
                }
                self.entries[index] = None;
                break;
            }
        }
        self.counters.misses += 1;
        None
    }

    pub(super) fn token(&self, index: usize) -> &VerifiedToken {
        &self.entries[index]
            .as_ref()
            .expect("index returned by get or insert")
            .token
    }

    /// Stores a verified token; returns its index.
    pub(super) fn insert(
        &mut self,
        digest: [u8; 32],
        token: VerifiedToken,
        now_unix: u64,
        expires: Option<u64>,
    ) -> usize {
        let valid_until = now_unix
            .saturating_add(self.ttl_seconds)
            .min(expires.unwrap_or(u64::MAX));
        // An empty or expired entry first, else the one expiring soonest.
        let mut chosen = None;
        let mut soonest = u64::MAX;
        for index in self.window(&digest) {
            match &self.entries[index] {
                None => {
                    chosen = Some(index);
                    break;
                }
                Some(entry) if entry.valid_until <= now_unix || entry.digest == digest => {
                    chosen = Some(index);
                    break;
                }
                Some(entry) if entry.valid_until < soonest => {
                    soonest = entry.valid_until;
                    chosen = Some(index);
                }
                Some(_) => {}
            }
        }
        // The window is never empty, so something was chosen.
        let index = chosen.unwrap_or(digest[0] as usize & self.mask);
        if self.entries[index]
            .as_ref()
            .is_some_and(|entry| entry.valid_until > now_unix && entry.digest != digest)
        {
            self.counters.evictions += 1;
        }
        self.entries[index] = Some(Entry {
            digest,
            valid_until,
            token,
        });
        index
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(identity: &str) -> VerifiedToken {
        VerifiedToken {
            identity: identity.into(),
            headers: Vec::new(),
            expires_at: None,
            dropped_claims: 0,
        }
    }

    fn digest(first: u8, tag: u8) -> [u8; 32] {
        let mut digest = [tag; 32];
        digest[..8].copy_from_slice(&u64::from(first).to_le_bytes());
        digest
    }

    #[test]
    fn entries_live_until_expiry_or_ttl() {
        let mut cache = TokenCache::new(8, 300);
        let a = digest(1, 1);
        let at = cache.insert(a, token("alice"), 1_000, Some(1_100));
        assert_eq!(cache.get(&a, 1_099), Some(at));
        assert_eq!(&*cache.token(at).identity, "alice");
        assert_eq!(cache.get(&a, 1_100), None);
        // Gone once expired.
        assert_eq!(cache.get(&a, 1_000), None);
        let b = digest(2, 2);
        cache.insert(b, token("bob"), 1_000, None);
        assert!(cache.get(&b, 1_299).is_some());
        assert!(cache.get(&b, 1_300).is_none());
        assert_eq!(
            cache.counters(),
            CacheCounters {
                hits: 2,
                misses: 3,
                evictions: 0
            }
        );
    }

    #[test]
    fn a_full_window_gives_up_the_entry_expiring_soonest() {
        let mut cache = TokenCache::new(8, 300);
        for tag in 0..4 {
            cache.insert(digest(0, tag), token("x"), 0, Some(100 + u64::from(tag)));
        }
        cache.insert(digest(0, 9), token("new"), 0, Some(500));
        assert!(cache.get(&digest(0, 0), 1).is_none());
        assert!(cache.get(&digest(0, 1), 1).is_some());
        assert!(cache.get(&digest(0, 9), 1).is_some());
        assert_eq!(cache.counters().evictions, 1);
    }

    #[test]
    fn sizes_are_bounded() {
        assert_eq!(TokenCache::new(0, 300).capacity(), PROBE_WINDOW);
        assert_eq!(TokenCache::new(1000, 300).capacity(), 1024);
        assert_eq!(TokenCache::new(usize::MAX, 300).capacity(), 1 << 20);
    }
}
