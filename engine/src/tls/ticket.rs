//! Session resumption shared by the shards: the keys that seal stateless session tickets, made
//! and rotated by the control plane and handed to every shard through its mailbox, so a
//! ticket one shard issued resumes on any other; and what each shard keeps of its own (its
//! [`ShardTls`]: the ticket sealer with the keys it was last sent, and a session-id cache per
//! TLS listener for TLS 1.2 clients that do not use tickets).
//!
//! A ticket is `key name (16) | nonce (12) | AES-256-GCM(session state) | tag (16)`, the key
//! name authenticated as associated data. A shard seals with the current key and opens with the
//! current or the previous one, so a ticket stays good for one rotation after the key that
//! sealed it was replaced ([`DEFAULT_TICKET_ROTATION`]); older tickets fall back to a full
//! handshake, never to an error.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};

use super::DEFAULT_SESSION_CACHE;

/// How often the control plane makes a new ticket key. A ticket is accepted until the key
/// after the one that sealed it is replaced: between one and two rotations.
pub const DEFAULT_TICKET_ROTATION: Duration = Duration::from_secs(12 * 3600);

/// What clients are told a ticket is good for (RFC 8446 4.6.1 `ticket_lifetime`): one
/// rotation, the least it is accepted for.
pub const TICKET_LIFETIME_SECS: u32 = DEFAULT_TICKET_ROTATION.as_secs() as u32;

const NAME_LEN: usize = 16;
const TAG_LEN: usize = 16;

/// One ticket key: its public name and its AES-256-GCM key.
struct TicketKey {
    name: [u8; NAME_LEN],
    key: LessSafeKey,
}

impl TicketKey {
    fn new(random: &SystemRandom) -> Option<TicketKey> {
        let mut name = [0u8; NAME_LEN];
        let mut secret = [0u8; 32];
        random.fill(&mut name).ok()?;
        random.fill(&mut secret).ok()?;
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &secret).ok()?);
        Some(TicketKey { name, key })
    }
}

/// The keys in force: the current one seals, both open. Made by the control plane only.
pub struct TicketKeys {
    current: Arc<TicketKey>,
    previous: Option<Arc<TicketKey>>,
    /// Counts the keys made so far (1 for the first), for logs and tests.
    pub generation: u64,
}

impl fmt::Debug for TicketKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key material.
        write!(f, "TicketKeys(generation {})", self.generation)
    }
}

impl TicketKeys {
    /// The first keys. `None` only if the kernel's random source failed.
    pub fn first() -> Option<TicketKeys> {
        Some(TicketKeys {
            current: Arc::new(TicketKey::new(&SystemRandom::new())?),
            previous: None,
            generation: 1,
        })
    }

    /// The next keys: a new current key, this one's current kept to open older tickets.
    pub fn rotated(&self) -> Option<TicketKeys> {
        Some(TicketKeys {
            current: Arc::new(TicketKey::new(&SystemRandom::new())?),
            previous: Some(self.current.clone()),
            generation: self.generation + 1,
        })
    }

    fn seal(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        ticket.extend_from_slice(&self.current.name);
        ticket.extend_from_slice(&nonce);
        ticket.extend_from_slice(plain);
        let (head, body) = ticket.split_at_mut(NAME_LEN + NONCE_LEN);
        let tag = self
            .current
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&head[..NAME_LEN]),
                body,
            )
            .ok()?;
        ticket.extend_from_slice(tag.as_ref());
        Some(ticket)
    }

    fn open(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        if ticket.len() < NAME_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (name, rest) = ticket.split_at(NAME_LEN);
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|key| key.name == name)?;
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = sealed.to_vec();
        let plain = key
            .key
            .open_in_place(nonce, Aad::from(name), &mut body)
            .ok()?;
        let len = plain.len();
        body.truncate(len);
        Some(body)
    }
}

/// A shard's ticket sealer: the keys the control plane last sent it. rustls wants it `Send +
/// Sync`; only the shard's own thread uses it, so its lock is never contended.
#[derive(Default)]
pub struct Ticketer {
    keys: RwLock<Option<Arc<TicketKeys>>>,
}

impl fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ticketer")
    }
}

impl Ticketer {
    pub fn set(&self, keys: Arc<TicketKeys>) {
        if let Ok(mut slot) = self.keys.write() {
            *slot = Some(keys);
        }
    }

    fn keys(&self) -> Option<Arc<TicketKeys>> {
        self.keys.read().ok()?.clone()
    }
}

impl ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        self.keys().is_some()
    }

    fn lifetime(&self) -> u32 {
        TICKET_LIFETIME_SECS
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.keys()?.seal(plain)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.keys()?.open(cipher)
    }
}

/// What one shard keeps for resumption, across configuration generations.
#[derive(Default)]
pub struct ShardTls {
    pub ticketer: Arc<Ticketer>,
    /// Session-id caches by TLS listener name, kept across reloads.
    caches: RefCell<HashMap<Box<str>, Arc<dyn StoresServerSessions>>>,
}

impl ShardTls {
    /// The session cache of the TLS listener `name`, made when new.
    pub fn cache(&self, name: &str) -> Arc<dyn StoresServerSessions> {
        self.caches
            .borrow_mut()
            .entry(name.into())
            .or_insert_with(|| ServerSessionMemoryCache::new(DEFAULT_SESSION_CACHE))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_opens_under_its_key_and_the_next_one_only() {
        let first = Arc::new(TicketKeys::first().unwrap());
        let ticket = first.seal(b"session state").unwrap();
        assert_eq!(first.open(&ticket).unwrap(), b"session state");
        let second = first.rotated().unwrap();
        assert_eq!(second.generation, 2);
        assert_eq!(
            second.open(&ticket).unwrap(),
            b"session state",
            "previous key"
        );
        let third = second.rotated().unwrap();
        assert_eq!(
            third.open(&ticket),
            None,
            "two rotations later: a full handshake"
        );
    }

    #[test]
    fn tampered_or_short_tickets_do_not_open() {
        let keys = TicketKeys::first().unwrap();
        let mut ticket = keys.seal(b"state").unwrap();
        for i in 0..ticket.len() {
            ticket[i] ^= 1;
            assert_eq!(keys.open(&ticket), None, "byte {i} flipped");
            ticket[i] ^= 1;
        }
        for len in 0..ticket.len() {
            assert_eq!(keys.open(&ticket[..len]), None);
        }
    }

    #[test]
    fn a_shard_without_keys_issues_no_tickets() {
        let ticketer = Ticketer::default();
        assert!(!ticketer.enabled());
        assert_eq!(ticketer.encrypt(b"x"), None);
        ticketer.set(Arc::new(TicketKeys::first().unwrap()));
        assert!(ticketer.enabled());
        let ticket = ticketer.encrypt(b"x").unwrap();
        assert_eq!(ticketer.decrypt(&ticket).unwrap(), b"x");
    }
}
