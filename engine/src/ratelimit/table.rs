//! The bounded table of keys one limiter holds on one shard.
//!
//! Owns where a key's state lives: a fixed array of 32-byte slots, allocated once at
//! construction and never grown, found by open addressing with a bounded probe window. It decides
//! which slot a new key takes and which key gives way when the window is full; it knows nothing
//! of rates or shares (the slot's fields are the limiter's to interpret).
//!
//! # Finding a key
//!
//! A key's window is the [`PROBE_WINDOW`] slots from `hash & (slots - 1)` on, wrapping. A slot,
//! once taken, is never emptied (only handed to another key), so a key is always before the
//! first empty slot of its window and a lookup stops there: in a table that is not full most
//! lookups read one slot, and none reads more than the window (512 bytes, eight cache lines).
//!
//! # Making room
//!
//! A new key takes, in this order:
//! 1. the first slot of its window, before the first empty one, whose key is *idle*: its TAT is
//!    at or before `now`, so its state equals that of a key never seen and dropping it loses
//!    nothing (only that interval's demand counts, which the share exchange tolerates). Reusing
//!    it rather than the empty slot keeps the table sparse, so lookups of new keys end early;
//! 2. else the first empty slot;
//! 3. else, the window being full of active keys, the slot of the key closest to idle (the
//!    smallest TAT). That key loses its state and will start again with a full burst, so this is
//!    counted as an eviction. Keys that were refused recently have their TAT far ahead, so a
//!    flood of new keys evicts other new keys first and cannot clear a limited client's state.

use super::key::KeyHash;

/// Keys one limiter holds per shard when the configuration does not say: 8,192 slots of
/// [`SLOT_BYTES`], 256 KiB per limiter per shard. That covers the active keys of a busy route
/// (a key only needs a slot while its TAT is ahead of the clock, about `burst / rate` after its
/// last request); a flood of more distinct keys evicts, it does not grow.
pub const DEFAULT_KEYS_PER_SHARD: usize = 8_192;

/// The most slots a table may have (2^24 slots, 512 MiB), whatever the configuration asks.
pub const MAX_KEYS_PER_SHARD: usize = 1 << 24;

/// Slots a lookup may read: the bound on probing, and the set an eviction chooses from. With
/// linear probing a window can be full well before the table is; measured with every key
/// active (none reclaimable), 100,000 keys evict 188 of each other in 262,144 slots with a
/// window of 8, and 9 with 16, so 16 it is: lookups still end at the first empty slot, so
/// only the worst case grows. Size tables at about twice the keys that are active at once.
pub const PROBE_WINDOW: usize = 16;

/// Bytes per slot. The table of `n` slots takes `n * SLOT_BYTES` bytes, allocated at
/// construction; nothing else in the table grows.
pub const SLOT_BYTES: usize = std::mem::size_of::<Slot>();

/// One key's state. The layout is the limiter's business; 32 bytes so two fit a cache line.
#[derive(Clone, Copy, Debug, Default)]
#[repr(C)]
pub(super) struct Slot {
    /// The key's hash; 0 = never used.
    pub hash: u64,
    /// Theoretical arrival time, nanoseconds on the caller's clock.
    pub tat: u64,
    /// Requests checked during the report interval `epoch`.
    pub attempts: u32,
    /// Requests admitted during the report interval `epoch`.
    pub admitted: u32,
    /// The report interval the two counts belong to.
    pub epoch: u16,
    /// The share update `share` was looked up in.
    pub share_epoch: u16,
    /// The key's entry in the shard's share table, or `shares::EVEN`.
    pub share: u16,
    /// Set once the key is on the interval's report list.
    pub listed: bool,
}

const _: () = assert!(SLOT_BYTES == 32);

/// How a slot was found for a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Place {
    /// The key was in the table.
    Known,
    /// A never-used slot.
    Empty,
    /// An idle key's slot: nothing was lost.
    Reclaimed,
    /// An active key's slot: that key lost its state.
    Evicted,
}

pub(super) struct KeyTable {
    slots: Box<[Slot]>,
    mask: usize,
}

/// Slots of a table for `keys` keys: a power of two, at least [`PROBE_WINDOW`], at most
/// [`MAX_KEYS_PER_SHARD`]. `const` for the memory cap computed from it.
pub(super) const fn slots_for(keys: usize) -> usize {
    let keys = if keys < PROBE_WINDOW {
        PROBE_WINDOW
    } else if keys > MAX_KEYS_PER_SHARD {
        MAX_KEYS_PER_SHARD
    } else {
        keys
    };
    keys.next_power_of_two()
}

impl KeyTable {
    /// A table of at least `keys` slots (a power of two, at least [`PROBE_WINDOW`], at most
    /// [`MAX_KEYS_PER_SHARD`]).
    pub fn with_capacity(keys: usize) -> KeyTable {
        let slots = slots_for(keys);
        KeyTable {
            slots: vec![Slot::default(); slots].into_boxed_slice(),
            mask: slots - 1,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub fn memory_bytes(&self) -> usize {
        self.slots.len() * SLOT_BYTES
    }

    /// The slot holding `hash`, or the one it should take, and how it was found. A slot that is
    /// not [`Place::Known`] still holds the previous key's fields: the caller resets them.
    #[inline]
    pub fn locate(&self, hash: KeyHash, now: u64) -> (usize, Place) {
        let hash = hash.get();
        let start = hash as usize & self.mask;
        let mut reusable: Option<usize> = None;
        let mut closest = start;
        let mut closest_tat = u64::MAX;
        for step in 0..PROBE_WINDOW {
            let index = (start + step) & self.mask;
            let slot = &self.slots[index];
            if slot.hash == hash {
                return (index, Place::Known);
            }
            if slot.hash == 0 {
                return match reusable {
                    Some(idle) => (idle, Place::Reclaimed),
                    None => (index, Place::Empty),
                };
            }
            if slot.tat <= now {
                reusable.get_or_insert(index);
            } else if slot.tat < closest_tat {
                closest_tat = slot.tat;
                closest = index;
            }
        }
        match reusable {
            Some(idle) => (idle, Place::Reclaimed),
            None => (closest, Place::Evicted),
        }
    }

    /// The slot of `hash`, if it is in the table.
    pub fn find(&self, hash: KeyHash) -> Option<usize> {
        let start = hash.get() as usize & self.mask;
        (0..PROBE_WINDOW)
            .map(|step| (start + step) & self.mask)
            .take_while(|&index| self.slots[index].hash != 0)
            .find(|&index| self.slots[index].hash == hash.get())
    }

    #[inline]
    pub fn slot(&self, index: usize) -> &Slot {
        &self.slots[index]
    }

    #[inline]
    pub fn slot_mut(&mut self, index: usize) -> &mut Slot {
        &mut self.slots[index]
    }

    pub fn slots_mut(&mut self) -> &mut [Slot] {
        &mut self.slots
    }

    /// Keys whose TAT is ahead of `now`: the ones a table must keep.
    pub fn active(&self, now: u64) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.hash != 0 && slot.tat > now)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash landing at `home` (below 64), told apart by `tag`.
    fn at(home: usize, tag: u64) -> KeyHash {
        KeyHash::from_u64((tag << 32) | home as u64)
    }

    fn put(table: &mut KeyTable, hash: KeyHash, tat: u64, now: u64) -> (usize, Place) {
        let (index, place) = table.locate(hash, now);
        let slot = table.slot_mut(index);
        slot.hash = hash.get();
        slot.tat = tat;
        (index, place)
    }

    #[test]
    fn sizes_are_powers_of_two_within_bounds() {
        assert_eq!(KeyTable::with_capacity(0).capacity(), PROBE_WINDOW);
        assert_eq!(KeyTable::with_capacity(1000).capacity(), 1024);
        assert_eq!(
            KeyTable::with_capacity(DEFAULT_KEYS_PER_SHARD).memory_bytes(),
            256 * 1024
        );
        assert_eq!(
            KeyTable::with_capacity(usize::MAX >> 1).capacity(),
            MAX_KEYS_PER_SHARD
        );
    }

    #[test]
    fn keys_are_found_again_and_probing_stops_at_an_empty_slot() {
        let mut table = KeyTable::with_capacity(64);
        let a = at(5, 1);
        let b = at(5, 2);
        assert_eq!(put(&mut table, a, 100, 0), (5, Place::Empty));
        assert_eq!(put(&mut table, b, 100, 0), (6, Place::Empty));
        assert_eq!(table.locate(a, 0), (5, Place::Known));
        assert_eq!(table.locate(b, 0), (6, Place::Known));
        assert_eq!(table.find(b), Some(6));
        assert_eq!(table.find(at(5, 3)), None);
        // The window wraps at the end of the table.
        let c = at(63, 1);
        let d = at(63, 2);
        assert_eq!(put(&mut table, c, 100, 0), (63, Place::Empty));
        assert_eq!(put(&mut table, d, 100, 0), (0, Place::Empty));
    }

    #[test]
    fn idle_keys_give_way_first_then_the_closest_to_idle() {
        let mut table = KeyTable::with_capacity(64);
        let now = 1_000;
        // Fill the window of home 8 with active keys, TATs 3000, 2900, ... decreasing.
        for tag in 0..PROBE_WINDOW as u64 {
            put(&mut table, at(8, tag), 3_000 - 100 * tag, now);
        }
        let newcomer = at(8, 99);
        let last = 8 + PROBE_WINDOW - 1;
        assert_eq!(table.locate(newcomer, now), (last, Place::Evicted));
        // Once a key's TAT has passed, it is reclaimed instead, losing nothing.
        table.slot_mut(10).tat = now;
        assert_eq!(table.locate(newcomer, now), (10, Place::Reclaimed));
        assert_eq!(table.active(now), PROBE_WINDOW - 1);
    }
}
