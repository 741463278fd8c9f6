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
//! New deadlines wait in a young list for a short window ([`YOUNG_WINDOW`]) before they enter
//! the wheel. Most operations complete well within it (a keep-alive request's receives and
//! sends take microseconds to a few milliseconds), and taking a deadline off the young list
//! is one unlink, while placing it in the wheel and taking it out again costs several times
//! that per operation. Only the survivors, the idle receives and slow upstreams, are placed.
//! The young list is promoted as a whole once the window has passed or once its earliest
//! deadline is reached, whichever comes first, so it never delays a deadline.
//!
//! Callers compute deadlines from the pass's clock, which is behind real time by however long
//! the pass has run; each young deadline is pushed back by the largest such lag seen while it
//! was young, so it never fires early.
//!
//! Layout (as in Tokio's and the Linux kernel's wheels): [`LEVELS`] levels of 64 slots; level
//! `n` slots are `64^n` ticks wide. A deadline sits at the lowest level whose current span
//! (the 64 slots around the wheel's position) contains it; when the wheel reaches a higher
//! level's slot, the deadlines in it move down.

use std::time::{Duration, Instant};

/// The wheel's resolution.
pub const TICK: Duration = Duration::from_millis(1);
const TICK_NANOS: u64 = TICK.as_nanos() as u64;

/// How long new deadlines stay in the young list before they are placed in the wheel: longer
/// than a keep-alive exchange's operations take on a loaded shard, short next to any timeout.
pub const YOUNG_WINDOW: Duration = Duration::from_millis(16);
const YOUNG_WINDOW_NANOS: u64 = YOUNG_WINDOW.as_nanos() as u64;

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
    /// Added in the current young window, not in the wheel yet; `due` holds nanoseconds since
    /// the origin, on the clock of the pass that added it.
    Young,
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

/// Bytes the wheel keeps per slot id, whether or not it has a deadline.
pub(super) fn link_bytes() -> usize {
    std::mem::size_of::<Link>()
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
    young: List,
    /// Nanoseconds since the origin when the young window began.
    young_since: u64,
    /// No young deadline is earlier (one that was removed may have been): nanoseconds.
    young_earliest: u64,
    /// The largest pass lag seen since the young window began: nanoseconds.
    young_lag: u64,
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
            young: List::EMPTY,
            young_since: 0,
            young_earliest: u64::MAX,
            young_lag: 0,
            ready: List::EMPTY,
            len: 0,
        }
    }

    /// Ids the wheel has room for.
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.links.len()
    }

    /// Entries in the wheel (young ones included).
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

    /// Gives back the room of ids from `ids` on, none of which may be in the wheel.
    pub(super) fn release_beyond(&mut self, ids: usize) {
        if self.links.len() > ids {
            debug_assert!(
                self.links[ids..]
                    .iter()
                    .all(|link| link.place == Place::Unlinked)
            );
            self.links.truncate(ids);
            self.links.shrink_to_fit();
        }
    }

    /// Adds `id` with `deadline`, measured on the pass's clock: it joins the young list and
    /// enters the wheel only if it is still there when the young window closes.
    pub(super) fn add(&mut self, id: u32, deadline: Instant) {
        debug_assert_eq!(self.links[id as usize].place, Place::Unlinked);
        let due = self.nanos_of(deadline);
        self.links[id as usize].due = due;
        self.young_earliest = self.young_earliest.min(due);
        self.push(id, Place::Young);
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

    /// One step of the wheel at the start of a pass: notes `lag`, how far the previous pass's
    /// clock was behind real time when it ended (the deadlines added in it were computed from
    /// that clock); promotes the young deadlines when their window has passed or the earliest
    /// of them is due; then fires (removes and hands to `fire`) every entry due at `now`.
    pub(super) fn advance(&mut self, now: Instant, lag: Duration, fire: impl FnMut(u32)) {
        let now_nanos = self.nanos_of(now);
        if self.young.head == NIL {
            self.young_since = now_nanos;
            self.young_earliest = u64::MAX;
            self.young_lag = 0;
        } else {
            self.young_lag = self.young_lag.max(saturating_nanos(lag));
            let window_end = self.young_since.saturating_add(YOUNG_WINDOW_NANOS);
            if now_nanos >= window_end || now_nanos >= self.young_earliest {
                self.promote_young();
                self.young_since = now_nanos;
            }
        }
        if self.len == 0 {
            // Nothing to fire or move down (a ring with no parked connection, every pass):
            // the wheel only keeps up with the clock, as `expire` would.
            self.elapsed = self.elapsed.max((now_nanos / TICK_NANOS).min(MAX_TICKS));
            return;
        }
        self.expire(now_nanos / TICK_NANOS, fire);
    }

    /// Moves every young deadline into the wheel, pushed back by the window's largest lag.
    fn promote_young(&mut self) {
        while self.young.head != NIL {
            let id = self.young.head;
            self.unlink(id);
            let nanos = self.links[id as usize].due.saturating_add(self.young_lag);
            // Rounded up: a deadline never fires before it.
            self.insert(id, nanos.div_ceil(TICK_NANOS).min(MAX_TICKS));
        }
        self.young_earliest = u64::MAX;
        self.young_lag = 0;
    }

    /// Fires every entry of the wheel (not the young list) due at tick `now`.
    fn expire(&mut self, now: u64, mut fire: impl FnMut(u32)) {
        let now = now.min(MAX_TICKS);
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

    /// When the next entry may be due (a level's slot may only need moving down, and the
    /// earliest young deadline may have been removed or be pushed back: waking then is early,
    /// never late). `None` when the wheel is empty.
    pub(super) fn next_due(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let young = (self.young.head != NIL)
            .then(|| self.origin + Duration::from_nanos(self.young_earliest));
        let wheel = if self.ready.head != NIL {
            Some(self.instant_of(self.elapsed))
        } else {
            self.next_expiration()
                .map(|(_, _, start)| self.instant_of(start))
        };
        match (young, wheel) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Nanoseconds from the origin to `at` (zero before it), without 128-bit arithmetic.
    fn nanos_of(&self, at: Instant) -> u64 {
        saturating_nanos(at.saturating_duration_since(self.origin))
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
            Place::Young => &mut self.young,
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

/// `duration` in nanoseconds, `u64::MAX` past about 584 years.
fn saturating_nanos(duration: Duration) -> u64 {
    duration
        .as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(duration.subsec_nanos()))
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
        wheel.advance(at, Duration::ZERO, |id| out.push(id));
        out.sort();
        out
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn is_young(wheel: &Wheel, id: u32) -> bool {
        wheel.links[id as usize].place == Place::Young
    }

    #[test]
    fn a_deadline_fires_at_its_tick_never_before() {
        let (mut wheel, origin) = wheel(8);
        wheel.add(0, origin + Duration::from_micros(2500));
        assert!(fired(&mut wheel, origin + Duration::from_micros(2999)).is_empty());
        assert_eq!(fired(&mut wheel, origin + ms(3)), [0]);
        assert_eq!(wheel.len(), 0);
    }

    #[test]
    fn the_pass_lag_pushes_a_deadline_back() {
        let (mut wheel, origin) = wheel(8);
        wheel.add(0, origin + ms(10));
        wheel.advance(origin, ms(7), |_| panic!("nothing is due"));
        assert!(fired(&mut wheel, origin + ms(16)).is_empty());
        assert_eq!(fired(&mut wheel, origin + ms(17)), [0]);
    }

    #[test]
    fn the_largest_lag_of_the_young_window_pushes_every_young_deadline_back() {
        let (mut wheel, origin) = wheel(8);
        wheel.add(0, origin + ms(100));
        wheel.advance(origin, ms(5), |_| panic!("nothing is due"));
        wheel.add(1, origin + ms(100));
        wheel.advance(origin + ms(1), ms(2), |_| panic!("nothing is due"));
        assert!(fired(&mut wheel, origin + ms(104)).is_empty());
        assert_eq!(fired(&mut wheel, origin + ms(105)), [0, 1]);
    }

    #[test]
    fn young_deadlines_enter_the_wheel_when_their_window_closes() {
        let (mut wheel, origin) = wheel(8);
        let _ = fired(&mut wheel, origin);
        wheel.add(0, origin + Duration::from_secs(10));
        assert!(fired(&mut wheel, origin + YOUNG_WINDOW - ms(1)).is_empty());
        assert!(is_young(&wheel, 0));
        assert!(fired(&mut wheel, origin + YOUNG_WINDOW).is_empty());
        assert!(matches!(wheel.links[0].place, Place::Wheel { .. }));
        assert_eq!(fired(&mut wheel, origin + Duration::from_secs(10)), [0]);
    }

    #[test]
    fn a_deadline_removed_while_young_never_reaches_the_wheel() {
        let (mut wheel, origin) = wheel(64);
        for id in 0..64 {
            wheel.add(id, origin + ms(100 + u64::from(id)));
        }
        for id in 0..64 {
            assert!(is_young(&wheel, id));
            wheel.remove(id);
        }
        assert_eq!(wheel.len(), 0);
        assert!(wheel.next_due().is_none());
        assert!(fired(&mut wheel, origin + Duration::from_secs(1)).is_empty());
        assert!(wheel.levels.iter().all(|level| level.occupied == 0));
    }

    #[test]
    fn far_deadlines_move_down_the_levels_and_fire_on_time() {
        let (mut wheel, origin) = wheel(64);
        let dues = [
            1u64, 63, 64, 65, 4095, 4096, 4097, 70_000, 300_000, 5_000_000,
        ];
        for (id, due) in dues.iter().enumerate() {
            wheel.add(id as u32, origin + ms(*due));
        }
        let mut step = 0u64;
        let mut seen = Vec::new();
        // Advance in uneven steps; each deadline must fire exactly when its tick is reached.
        while seen.len() < dues.len() {
            step += 1 + step / 3;
            let now = step.min(6_000_000);
            for id in fired(&mut wheel, origin + ms(now)) {
                let due = dues[id as usize];
                assert!(due <= now, "{due} fired at {now}");
                seen.push((id, now));
            }
        }
        for (id, at) in seen {
            // Each fires at the first step at or after it.
            assert!(at >= dues[id as usize]);
        }
        assert_eq!(wheel.len(), 0);
        assert!(wheel.next_due().is_none());
    }

    #[test]
    fn removed_deadlines_never_fire() {
        let (mut wheel, origin) = wheel(8);
        for id in 0..4 {
            wheel.add(id, origin + ms(100 * (u64::from(id) + 1)));
        }
        wheel.remove(2);
        // The window closes: the rest are in the wheel, and are removed from there.
        let _ = fired(&mut wheel, origin + ms(20));
        assert!(!is_young(&wheel, 1));
        wheel.remove(1);
        wheel.remove(7);
        assert_eq!(wheel.len(), 2);
        assert_eq!(fired(&mut wheel, origin + Duration::from_secs(1)), [0, 3]);
    }

    #[test]
    fn a_deadline_already_passed_fires_on_the_next_advance() {
        let (mut wheel, origin) = wheel(8);
        let _ = fired(&mut wheel, origin + ms(50));
        wheel.add(0, origin + ms(10));
        assert!(wheel.next_due().unwrap() <= origin + ms(50));
        assert_eq!(fired(&mut wheel, origin + ms(50)), [0]);
    }

    #[test]
    fn next_due_is_never_after_the_earliest_deadline() {
        let (mut wheel, origin) = wheel(8);
        wheel.add(0, origin + ms(5000));
        wheel.add(1, origin + ms(70));
        let young = wheel.next_due().unwrap();
        assert!(young <= origin + ms(70), "{young:?}");
        let _ = fired(&mut wheel, origin + ms(20));
        assert!(!is_young(&wheel, 1));
        let placed = wheel.next_due().unwrap();
        assert!(placed <= origin + ms(70), "{placed:?}");
        // A young deadline earlier than everything in the wheel.
        wheel.add(2, origin + ms(40));
        let both = wheel.next_due().unwrap();
        assert!(both <= origin + ms(40), "{both:?}");
    }
}
