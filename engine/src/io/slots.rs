//! The arena a ring's operation slots live in: chunks of slots that never move while allocated,
//! so the kernel may be given pointers into them, found by id (the operation's `user_data`).
//!
//! Why chunks of two kinds: an idle connection's receive waits for up to a second in its slot
//! before the connection parks (parked receives take no slot). A burst of new connections grows
//! the arena by one slot each, and those slots all fall free together a second later. Were they
//! mixed with other operations, a few long-lived ones started during the burst (an idle upstream
//! connection's watch, the next accept) would keep most chunks in memory for good. So a chunk
//! holds slots of one kind only ([`Kind`]), and a chunk whose slots are all free may be given
//! back ([`Arena::release_spare`]) wherever it is; its ids wait, unused, until a chunk is
//! needed again.

/// Slots per chunk, one bit each in a `u128`.
pub(super) const CHUNK: usize = 128;

/// A chunk's free bits when all its slots are free.
const ALL_FREE: u128 = u128::MAX;

/// What a slot is for, which decides the chunks it may be taken from.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Kind {
    /// Most operations: an exchange's receives and sends, accepts, watches, timers.
    Busy,
    /// An idle connection's receive while it waits in its task.
    Idle,
}

pub(super) struct Arena<T> {
    /// Empty: given back (no memory); its ids are unused until a chunk is needed again.
    chunks: Vec<Box<[T]>>,
    kinds: Vec<Kind>,
    /// Per chunk, bit `i` set: its slot `i` is free (none for a chunk given back).
    free: Vec<u128>,
    /// Per kind, bit `c % 64` of word `c / 64` set: chunk `c` is of that kind and has a free
    /// slot.
    with_free: [Vec<u64>; 2],
}

impl<T: Default> Arena<T> {
    pub(super) fn new() -> Arena<T> {
        Arena {
            chunks: Vec::new(),
            kinds: Vec::new(),
            free: Vec::new(),
            with_free: [Vec::new(), Vec::new()],
        }
    }

    /// The slot of an allocated id.
    ///
    /// # Panics
    /// If its chunk was given back (its id is not allocated).
    pub(super) fn get(&mut self, id: u32) -> &mut T {
        let id = id as usize;
        // A chunk given back is empty: the index check refuses its ids.
        &mut self.chunks[id / CHUNK][id % CHUNK]
    }

    /// Ids below this may be in use.
    pub(super) fn span(&self) -> usize {
        self.chunks.len() * CHUNK
    }

    /// Chunks held in memory.
    #[cfg(test)]
    pub(super) fn chunks_held(&self) -> usize {
        self.chunks.iter().filter(|chunk| !chunk.is_empty()).count()
    }

    /// Takes the lowest free slot of `kind`, adding a chunk when none is free.
    pub(super) fn alloc(&mut self, kind: Kind) -> u32 {
        let with_free = &self.with_free[kind as usize];
        let chunk = match with_free.iter().position(|&word| word != 0) {
            Some(word) => word * 64 + with_free[word].trailing_zeros() as usize,
            None => self.grow(kind),
        };
        let index = self.free[chunk].trailing_zeros() as usize;
        self.free[chunk] &= !(1 << index);
        if self.free[chunk] == 0 {
            self.mark_with_free(chunk, false);
        }
        (chunk * CHUNK + index) as u32
    }

    /// Gives a slot back; the caller has reset it.
    pub(super) fn free(&mut self, id: u32) {
        let (chunk, index) = (id as usize / CHUNK, id as usize % CHUNK);
        debug_assert!(!self.chunks[chunk].is_empty() && self.free[chunk] & (1 << index) == 0);
        self.free[chunk] |= 1 << index;
        self.mark_with_free(chunk, true);
    }

    /// Gives back every chunk whose slots are all free, but the first of each kind, after a
    /// burst of operations is over. Returns the ids the arena still spans.
    pub(super) fn release_spare(&mut self) -> usize {
        // Whether a chunk of each kind is kept already.
        let mut kept = [false; 2];
        for chunk in 0..self.chunks.len() {
            if self.chunks[chunk].is_empty() {
                continue;
            }
            let kind = self.kinds[chunk] as usize;
            if kept[kind] && self.free[chunk] == ALL_FREE {
                self.mark_with_free(chunk, false);
                self.chunks[chunk] = Box::default();
                self.free[chunk] = 0;
            }
            kept[kind] = true;
        }
        while self.chunks.last().is_some_and(|chunk| chunk.is_empty()) {
            self.chunks.pop();
            self.kinds.pop();
            self.free.pop();
        }
        for with_free in &mut self.with_free {
            with_free.truncate(self.chunks.len().div_ceil(64));
            with_free.shrink_to_fit();
        }
        self.chunks.shrink_to_fit();
        self.kinds.shrink_to_fit();
        self.free.shrink_to_fit();
        self.span()
    }

    /// Adds a chunk of free slots of `kind`, where one was given back if any; returns its
    /// index.
    fn grow(&mut self, kind: Kind) -> usize {
        let slots = (0..CHUNK).map(|_| T::default()).collect();
        let chunk = match self.chunks.iter().position(|chunk| chunk.is_empty()) {
            Some(chunk) => {
                self.chunks[chunk] = slots;
                self.kinds[chunk] = kind;
                chunk
            }
            None => {
                self.chunks.push(slots);
                self.kinds.push(kind);
                self.free.push(0);
                let words = self.chunks.len().div_ceil(64);
                for with_free in &mut self.with_free {
                    with_free.resize(words, 0);
                }
                self.chunks.len() - 1
            }
        };
        self.free[chunk] = ALL_FREE;
        self.mark_with_free(chunk, true);
        chunk
    }

    fn mark_with_free(&mut self, chunk: usize, has_free: bool) {
        let with_free = &mut self.with_free[self.kinds[chunk] as usize];
        if has_free {
            with_free[chunk / 64] |= 1 << (chunk % 64);
        } else {
            with_free[chunk / 64] &= !(1 << (chunk % 64));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kinds never share a chunk; the lowest free slot of a kind is taken first; a chunk all
    /// free is given back wherever it is (the first of each kind stays), never one with a slot
    /// in use; its ids are reused when a chunk is needed again.
    #[test]
    fn chunks_hold_one_kind_and_are_given_back_once_all_free() {
        let mut arena: Arena<u8> = Arena::new();
        let busy: Vec<u32> = (0..CHUNK).map(|_| arena.alloc(Kind::Busy)).collect();
        assert_eq!(busy, (0..CHUNK as u32).collect::<Vec<_>>());
        let idle: Vec<u32> = (0..2 * CHUNK).map(|_| arena.alloc(Kind::Idle)).collect();
        assert_eq!(idle[0] as usize, CHUNK, "a chunk of its own");
        let late_busy = arena.alloc(Kind::Busy);
        assert_eq!(late_busy as usize, 3 * CHUNK, "not in an idle chunk");
        assert_eq!(arena.span(), 4 * CHUNK);

        // The idle burst ends; a busy slot lives on after it.
        for &id in &idle {
            arena.free(id);
        }
        assert_eq!(
            arena.release_spare(),
            4 * CHUNK,
            "the busy chunk at the end stays"
        );
        assert_eq!(
            arena.chunks_held(),
            3,
            "the second idle chunk went, the first stays"
        );
        assert_eq!(
            arena.alloc(Kind::Idle) as usize,
            CHUNK,
            "the lowest idle slot"
        );

        // The late busy slot is freed: its chunk goes, and the arena's end with it.
        for &id in &busy[1..] {
            arena.free(id);
        }
        arena.free(late_busy);
        assert_eq!(arena.release_spare(), 2 * CHUNK);
        assert_eq!(arena.chunks_held(), 2, "the first of each kind");
        assert_eq!(arena.alloc(Kind::Busy), 1, "the lowest free busy slot");

        // Ids of a chunk given back in the middle are taken again by the next chunk needed.
        let second: Vec<u32> = (0..2 * CHUNK).map(|_| arena.alloc(Kind::Busy)).collect();
        assert_eq!(arena.span(), 4 * CHUNK);
        for &id in second.iter().filter(|&&id| (id as usize) < 3 * CHUNK) {
            arena.free(id);
        }
        arena.release_spare();
        assert_eq!(arena.chunks_held(), 3);
        let filler: Vec<u32> = (0..CHUNK - 1).map(|_| arena.alloc(Kind::Idle)).collect();
        let next = arena.alloc(Kind::Idle);
        assert!(filler.iter().all(|&id| (id as usize) < 2 * CHUNK));
        assert_eq!(next as usize, 2 * CHUNK, "the chunk given back, again");
        *arena.get(next) = 7;
        assert_eq!(*arena.get(next), 7);
    }

    #[test]
    #[should_panic(expected = "index out of bounds")]
    fn a_slot_of_a_chunk_given_back_is_not_there() {
        let mut arena: Arena<u8> = Arena::new();
        let ids: Vec<u32> = (0..2 * CHUNK + 1)
            .map(|_| arena.alloc(Kind::Busy))
            .collect();
        for &id in &ids[CHUNK..2 * CHUNK] {
            arena.free(id);
        }
        arena.release_spare();
        arena.get(CHUNK as u32);
    }
}
