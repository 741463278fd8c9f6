//! The deadlines of a ring's operations: a hierarchical timer wheel over slot ids.
//!
//! Why a wheel: a shard holds tens of thousands of operations with a deadline (every idle
//! connection's receive), and almost none expire. Scanning them all on every sweep costs
//! O(operations); the wheel costs O(1) to add or remove a deadline and, per pass, work in
//! proportion to the deadlines that expire (plus each deadline moving down a level at most
//! [`LEVELS`] - 1 times in its life). Nothing is allocated per deadline: the links live in a
//! table indexed by slot id, which grows only when the ring's slot arena grows.
//!
//! Time is counted in ticks of [`TICK`] from the wheel's origin. A deadline is rounded *up* to
//! a tick and fires only once the clock reached that tick, so it never fires early; it fires at
//! most one tick plus one pass late.
//!
//! Deadlines added during a pass wait in a pending list until the pass ends
//! ([`Wheel::settle`]): callers compute them from the pass's clock, which is behind real time by
//! however long the pass has run, so each is pushed back by that lag before it enters the wheel.
//!
//! Layout (as in Tokio's and the Linux kernel's wheels): [`LEVELS`] levels of 64 slots; level
//! `n` slots are `64^n` ticks wide. A deadline sits at the lowest level whose current span
//! (the 64 slots around the wheel's position) contains it; when the wheel reaches a higher
//! level's slot, the deadlines in it move down.

use std::time::{Duration, Instant};

/// The wheel's resolution.
pub const TICK: Duration = Duration::from_millis(1);

/// Levels of 64 slots: 64^6 ticks of 1 ms is over two years.
const LEVELS: usize = 6;
const SLOT_BITS: u32 = 6;
const SLOTS: usize = 1 << SLOT_BITS;
/// The furthest deadline the wheel holds exactly; later ones are clamped to it.
const MAX_TICKS: u64 = (1 << (SLOT_BITS as usize * LEVELS)) - 1;

/// No slot id.
const NIL: u32 = u32::MAX;

/// Where an entry is linked.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Place {
    Unlinked,
    /// Added this pass, not settled yet; `due` holds nanoseconds since the origin.
    Pending,
    /// Due at or before the wheel's position: fires on the next expiry.
    Ready,
    /// In a wheel slot; `due` holds the tick.
    Wheel {
        level: u8,
        slot: u8,
    },
}

#[derive(Clone, Copy)]
struct Link {
    due: u64,
    prev: u32,
    next: u32,
    place: Place,
}

const UNLINKED: Link = Link {
    due: 0,
    prev: NIL,
    next: NIL,
    place: Place::Unlinked,
};

/// A doubly linked list of entries through the link table.
#[derive(Clone, Copy)]
struct List {
    head: u32,
}

impl List {
    const EMPTY: List = List { head: NIL };
}

struct Level {
    slots: [List; SLOTS],
    /// Bit `i` set: slot `i` holds entries.
    occupied: u64,
}

/// A hierarchical timer wheel keyed by slot id.
pub(super) struct Wheel {
    origin: Instant,
    /// Ticks processed: every entry due at or before this tick has fired.
    elapsed: u64,
    links: Vec<Link>,
    levels: [Level; LEVELS],
    pending: List,
    ready: List,
    len: usize,
}

impl Wheel {
    pub(super) fn new(origin: Instant) -> Wheel {
        Wheel {
            origin,
            elapsed: 0,
            links: Vec::new(),
            levels: std::array::from_fn(|_| Level {
                slots: [List::EMPTY; SLOTS],
                occupied: 0,
            }),
            pending: List::EMPTY,
            ready: List::EMPTY,
            len: 0,
        }
    }

    /// Entries in the wheel (pending ones included).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Makes room for ids below `ids` (called when the slot arena grows, never per operation).
    pub(super) fn reserve(&mut self, ids: usize) {
        if self.links.len() < ids {
            self.links.resize(ids, UNLINKED);
        }
    }

    /// Adds `id` with `deadline`, measured on the pass's clock: it enters the wheel at the end
    /// of the pass ([`Wheel::settle`]).
    pub(super) fn add(&mut self, id: u32, deadline: Instant) {
        debug_assert_eq!(self.links[id as usize].place, Place::Unlinked);
        let nanos = deadline.saturating_duration_since(self.origin).as_nanos();
        self.links[id as usize].due = u64::try_from(nanos).unwrap_or(u64::MAX);
        self.push(id, Place::Pending);
    }

    /// Removes `id` wherever it is; nothing happens if it is not in the wheel.
    pub(super) fn remove(&mut self, id: u32) {
        let Some(link) = self.links.get(id as usize) else {
            return;
        };
        if link.place != Place::Unlinked {
            self.unlink(id);
        }
    }

    /// Moves the deadlines added during the pass into the wheel, each pushed back by `lag`:
    /// how far the pass's clock was behind real time when the pass ended.
    pub(super) fn settle(&mut self, lag: Duration) {
        let lag = u64::try_from(lag.as_nanos()).unwrap_or(u64::MAX);
        let tick = TICK.as_nanos() as u64;
        while self.pending.head != NIL {
            let id = self.pending.head;
            self.unlink(id);
            let nanos = self.links[id as usize].due.saturating_add(lag);
            // Rounded up: a deadline never fires before it.
            let due = nanos.div_ceil(tick).min(MAX_TICKS);
            self.insert(id, due);
        }
    }

    /// Fires (removes and hands to `fire`) every entry due at `now`.
    pub(super) fn expire(&mut self, now: Instant, mut fire: impl FnMut(u32)) {
        let now = self.tick_of(now);
        loop {
            while self.ready.head != NIL {
                let id = self.ready.head;
                self.unlink(id);
                fire(id);
            }
            let Some((level, slot, start)) = self.next_expiration() else {
                break;
            };
            if start > now {
                break;
            }
            self.elapsed = self.elapsed.max(start);
            let mut list = std::mem::replace(&mut self.levels[level].slots[slot], List::EMPTY);
            self.levels[level].occupied &= !(1 << slot);
            while list.head != NIL {
                let id = list.head;
                list.head = self.links[id as usize].next;
                self.links[id as usize].place = Place::Unlinked;
                self.len -= 1;
                let due = self.links[id as usize].due;
                if due <= now {
                    fire(id);
                } else {
                    self.insert(id, due);
                }
            }
        }
        self.elapsed = self.elapsed.max(now);
    }

    /// When the next entry in the wheel may be due (a level's slot may only need moving down:
    /// waking then is early, never late). `None` when the wheel is empty.
    pub(super) fn next_due(&self) -> Option<Instant> {
        if self.ready.head != NIL {
            return Some(self.instant_of(self.elapsed));
        }
        self.next_expiration()
            .map(|(_, _, start)| self.instant_of(start))
    }

    fn tick_of(&self, at: Instant) -> u64 {
        let nanos = at.saturating_duration_since(self.origin).as_nanos();
        (nanos / TICK.as_nanos()).min(u128::from(MAX_TICKS)) as u64
    }

    fn instant_of(&self, tick: u64) -> Instant {
        self.origin + TICK * u32::try_from(tick).unwrap_or(u32::MAX)
    }

    /// Places `id`, due at tick `due`, at its level (or in the ready list when due already).
    fn insert(&mut self, id: u32, due: u64) {
        self.links[id as usize].due = due;
        if due <= self.elapsed {
            self.push(id, Place::Ready);
            return;
        }
        let level = level_for(self.elapsed, due);
        let slot = ((due >> (level as u32 * SLOT_BITS)) as usize) & (SLOTS - 1);
        self.levels[level].occupied |= 1 << slot;
        self.push(
            id,
            Place::Wheel {
                level: level as u8,
                slot: slot as u8,
            },
        );
    }

    fn list_mut(&mut self, place: Place) -> &mut List {
        match place {
            Place::Pending => &mut self.pending,
            Place::Ready => &mut self.ready,
            Place::Wheel { level, slot } => &mut self.levels[level as usize].slots[slot as usize],
            Place::Unlinked => unreachable!("an unlinked entry is in no list"),
        }
    }

    fn push(&mut self, id: u32, place: Place) {
        let head = self.list_mut(place).head;
        if head != NIL {
            self.links[head as usize].prev = id;
        }
        self.links[id as usize] = Link {
            due: self.links[id as usize].due,
            prev: NIL,
            next: head,
            place,
        };
        self.list_mut(place).head = id;
        self.len += 1;
    }

    fn unlink(&mut self, id: u32) {
        let Link {
            prev, next, place, ..
        } = self.links[id as usize];
        if prev != NIL {
            self.links[prev as usize].next = next;
        } else {
            self.list_mut(place).head = next;
        }
        if next != NIL {
            self.links[next as usize].prev = prev;
        }
        if let Place::Wheel { level, slot } = place
            && self.levels[level as usize].slots[slot as usize].head == NIL
        {
            self.levels[level as usize].occupied &= !(1 << slot);
        }
        let link = &mut self.links[id as usize];
        link.prev = NIL;
        link.next = NIL;
        link.place = Place::Unlinked;
        self.len -= 1;
    }

    /// The lowest level's next occupied slot and the tick it starts at.
    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        for (index, level) in self.levels.iter().enumerate() {
            if level.occupied == 0 {
                continue;
            }
            let shift = index as u32 * SLOT_BITS;
            let slot_range = 1u64 << shift;
            let level_range = slot_range << SLOT_BITS;
            let now_slot = ((self.elapsed >> shift) as usize) & (SLOTS - 1);
            let zeros = level
                .occupied
                .rotate_right(now_slot as u32)
                .trailing_zeros() as usize;
            let slot = (now_slot + zeros) % SLOTS;
            let level_start = self.elapsed & !(level_range - 1);
            let mut start = level_start + slot as u64 * slot_range;
            if start <= self.elapsed && slot != now_slot {
                // Only the top level wraps: its slots before the current one are a lap ahead.
                start += level_range;
            }
            return Some((index, slot, start.max(self.elapsed)));
        }
        None
    }
}

/// The level at which a deadline `due` sits when the wheel is at `elapsed`: the lowest whose
/// current span of 64 slots contains it.
fn level_for(elapsed: u64, due: u64) -> usize {
    let slot_mask = (1u64 << SLOT_BITS) - 1;
    let masked = ((elapsed ^ due) | slot_mask).min(MAX_TICKS - 1);
    let significant = 63 - masked.leading_zeros() as usize;
    significant / SLOT_BITS as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wheel(ids: usize) -> (Wheel, Instant) {
        let origin = Instant::now();
        let mut wheel = Wheel::new(origin);
        wheel.reserve(ids);
        (wheel, origin)
    }

    fn fired(wheel: &mut Wheel, at: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        wheel.expire(at, |id| out.push(id));
        out.sort();
        out
    }

    #[test]
    fn a_deadline_fires_at_its_tick_never_before() {
        let (mut wheel, origin) = wheel(8);
        wheel.add(0, origin + Duration::from_micros(2500));
        wheel.settle(Duration::ZERO);
        assert!(fired(&mut wheel, origin + Duration::from_micros(2999)).is_empty());
        assert_eq!(fired(&mut wheel, origin + Duration::from_millis(3)), [0]);
        assert_eq!(wheel.len(), 0);
    }

    #[test]
    fn the_pass_lag_pushes_a_deadline_back() {
        let (mut wheel, origin) = wheel(8);
        wheel.add(0, origin + Duration::from_millis(10));
        wheel.settle(Duration::from_millis(7));
        assert!(fired(&mut wheel, origin + Duration::from_millis(16)).is_empty());
        assert_eq!(fired(&mut wheel, origin + Duration::from_millis(17)), [0]);
    }

    #[test]
    fn far_deadlines_move_down_the_levels_and_fire_on_time() {
        let (mut wheel, origin) = wheel(64);
        let dues = [
            1u64, 63, 64, 65, 4095, 4096, 4097, 70_000, 300_000, 5_000_000,
        ];
        for (id, due) in dues.iter().enumerate() {
            wheel.add(id as u32, origin + Duration::from_millis(*due));
        }
        wheel.settle(Duration::ZERO);
        let mut step = 0u64;
        let mut seen = Vec::new();
        // Advance in uneven steps; each deadline must fire exactly when its tick is reached.
        while seen.len() < dues.len() {
            step += 1 + step / 3;
            let now = step.min(6_000_000);
            let at = origin + Duration::from_millis(now);
            for id in fired(&mut wheel, at) {
                let due = dues[id as usize];
                assert!(due <= now, "{due} fired at {now}");
                seen.push((id, now));
            }
        }
        for (id, at) in seen {
            let due = dues[id as usize];
            // Each fires at the first step at or after it.
            assert!(at >= due);
        }
        assert_eq!(wheel.len(), 0);
        assert!(wheel.next_due().is_none());
    }

    #[test]
    fn removed_deadlines_never_fire() {
        let (mut wheel, origin) = wheel(8);
        for id in 0..4 {
            wheel.add(id, origin + Duration::from_millis(100 * (id as u64 + 1)));
        }
        wheel.remove(2);
        wheel.settle(Duration::ZERO);
        wheel.remove(1);
        wheel.remove(7);
        assert_eq!(wheel.len(), 2);
        assert_eq!(fired(&mut wheel, origin + Duration::from_secs(1)), [0, 3]);
    }

    #[test]
    fn a_deadline_already_passed_fires_on_the_next_expiry() {
        let (mut wheel, origin) = wheel(8);
        let _ = fired(&mut wheel, origin + Duration::from_millis(50));
        wheel.add(0, origin + Duration::from_millis(10));
        wheel.settle(Duration::ZERO);
        assert_eq!(wheel.next_due(), Some(origin + Duration::from_millis(50)));
        assert_eq!(fired(&mut wheel, origin + Duration::from_millis(50)), [0]);
    }

    #[test]
    fn next_due_is_never_after_the_earliest_deadline() {
        let (mut wheel, origin) = wheel(8);
        wheel.add(0, origin + Duration::from_millis(5000));
        wheel.add(1, origin + Duration::from_millis(70));
        wheel.settle(Duration::ZERO);
        let next = wheel.next_due().unwrap();
        assert!(next <= origin + Duration::from_millis(70), "{next:?}");
    }
}
