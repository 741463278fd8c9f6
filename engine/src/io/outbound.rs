//! The buffer pieces of one gathered send: a head and the body bytes at hand leave together.

use std::rc::Rc;

use super::buffer::{Buf, BufferPool};
use super::readbuf::ReadBuf;
use super::uring::{Completion, MAX_PARTS, Part};

/// Bytes of a body at most copied behind its head rather than sent as a second piece: below
/// this, one contiguous `send` costs less than gathering two buffers.
pub const COALESCE_LIMIT: usize = 2048;

/// Each part's `(start, end)`, kept across a send that may deliver only some of the bytes.
pub(super) type Ranges = [(u32, u32); MAX_PARTS];

/// Buffers queued for one send: up to [`MAX_PARTS`] pieces, sent in order.
#[derive(Default)]
pub struct Outbound {
    parts: [Option<Part>; MAX_PARTS],
}

impl Outbound {
    pub fn new() -> Outbound {
        Outbound::default()
    }

    /// Queues `buf[start..end]`. Returns false (dropping nothing) when all slots are taken.
    ///
    /// # Panics
    /// Unless `start <= end <= buf.capacity()` (see [`Part::new`]).
    pub fn push(&mut self, buf: Buf, start: u32, end: u32) -> bool {
        self.push_part(Part::new(buf, start, end))
    }

    /// Queues the first `n` bytes of `rb`. A few bytes (at most [`COALESCE_LIMIT`]) that fit
    /// after the last queued part are copied there, so a small body leaves in one contiguous
    /// buffer with its head; otherwise the buffer itself is queued (no copy). Returns false when
    /// no I/O buffer is free or no part slot is left.
    pub fn take_from(&mut self, rb: &mut ReadBuf, n: usize, pool: &Rc<BufferPool>) -> bool {
        self.take_copying_up_to(rb, n, pool, COALESCE_LIMIT)
    }

    /// Queues the first `n` bytes of `rb` as [`Outbound::take_from`] does, but copies them
    /// after the last part whenever they fit there, however many: a body gathered from uneven
    /// receives then fills whole buffers instead of taking a part per receive.
    pub fn pack_from(&mut self, rb: &mut ReadBuf, n: usize, pool: &Rc<BufferPool>) -> bool {
        self.take_copying_up_to(rb, n, pool, usize::MAX)
    }

    fn take_copying_up_to(
        &mut self,
        rb: &mut ReadBuf,
        n: usize,
        pool: &Rc<BufferPool>,
        copy_limit: usize,
    ) -> bool {
        let n = n.min(rb.len());
        if n == 0 {
            return true;
        }
        if n <= copy_limit
            && let Some(last) = self.parts.iter_mut().flatten().last()
            && (last.end() as usize) + n <= last.buf().capacity()
        {
            let end = last.end() as usize;
            last.buf_mut().as_mut_slice()[end..end + n].copy_from_slice(&rb.data()[..n]);
            last.set_range(last.start(), (end + n) as u32);
            rb.consume(n);
            return true;
        }
        match rb.take_prefix(n, pool) {
            Some(part) => self.push_part(part),
            None => false,
        }
    }

    pub fn push_part(&mut self, part: Part) -> bool {
        match self.parts.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => {
                *slot = Some(part);
                true
            }
            None => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(Option::is_none)
    }

    pub fn is_full(&self) -> bool {
        self.parts.iter().all(Option::is_some)
    }

    pub fn len_bytes(&self) -> usize {
        self.parts.iter().flatten().map(Part::len).sum()
    }

    pub fn clear(&mut self) {
        self.parts = Default::default();
    }

    pub(super) fn ranges(&self) -> Ranges {
        let mut ranges = [(0u32, 0u32); MAX_PARTS];
        for (range, part) in ranges.iter_mut().zip(&self.parts) {
            if let Some(part) = part {
                *range = (part.start(), part.end());
            }
        }
        ranges
    }

    /// Moves each part's start past what the first `sent` bytes of `ranges` delivered.
    pub(super) fn skip(&mut self, ranges: &Ranges, sent: usize) {
        let mut skip = sent;
        for (part, &(start, end)) in self.parts.iter_mut().zip(ranges) {
            let Some(part) = part else { continue };
            let skipped = skip.min((end - start) as usize);
            part.set_range(start + skipped as u32, end);
            skip -= skipped;
        }
    }

    /// Puts back the buffers a send operation returned and the ranges it started from.
    pub(super) fn restore(&mut self, ranges: &Ranges, done: &mut Completion) {
        for (part, &(start, end)) in self.parts.iter_mut().zip(ranges) {
            if let Some(part) = part {
                part.set_range(start, end);
            }
        }
        done.return_bufs(|index, buf| {
            let (start, end) = ranges[index];
            self.parts[index] = Some(Part::new(buf, start, end));
        });
    }

    /// The queued parts, in order.
    pub(super) fn parts(&self) -> impl Iterator<Item = &Part> {
        self.parts.iter().flatten()
    }

    /// Room to write at least `min` bytes after the last part (whose range then grows with
    /// [`Outbound::wrote`]): the last part's free tail, or a fresh buffer from `pool` queued as
    /// an empty part. `None` when neither is possible: no part slot left (send first), or no
    /// buffer free.
    pub(super) fn tail_room(&mut self, min: usize, pool: &Rc<BufferPool>) -> Option<&mut [u8]> {
        let fits = self
            .parts
            .iter()
            .flatten()
            .last()
            .is_some_and(|last| last.buf().capacity() - last.end() as usize >= min);
        if !fits {
            if self.is_full() {
                return None;
            }
            let buf = pool.take()?;
            self.push(buf, 0, 0);
        }
        let last = self.parts.iter_mut().flatten().last()?;
        let end = last.end() as usize;
        Some(&mut last.buf_mut().as_mut_slice()[end..])
    }

    /// Takes `n` bytes written into [`Outbound::tail_room`] into the last part.
    pub(super) fn wrote(&mut self, n: usize) {
        if let Some(last) = self.parts.iter_mut().flatten().last() {
            last.set_range(last.start(), last.end() + n as u32);
        }
    }

    pub(super) fn parts_mut(&mut self) -> &mut [Option<Part>; MAX_PARTS] {
        &mut self.parts
    }

    /// Lets `rewrite` change the first part in place (a head whose framing changed once its
    /// body was received): it gets the part's whole buffer and the part's length, and returns
    /// the new length.
    ///
    /// # Panics
    /// Unless the first part starts at its buffer's start, or if the new length is past the
    /// buffer.
    pub fn rewrite_first(&mut self, rewrite: impl FnOnce(&mut [u8], usize) -> usize) {
        let part = self.parts[0].as_mut().expect("a first part");
        assert_eq!(
            part.start(),
            0,
            "a first part that starts at its buffer's start"
        );
        let end = part.end() as usize;
        let len = rewrite(part.buf_mut().as_mut_slice(), end);
        part.set_range(0, u32::try_from(len).expect("a part fits in u32"));
    }

    /// Every queued byte, in order (tests).
    #[cfg(test)]
    pub fn bytes(&self) -> Vec<u8> {
        self.parts
            .iter()
            .flatten()
            .flat_map(|part| {
                part.buf().as_slice()[part.start() as usize..part.end() as usize].to_vec()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::BufferPool;
    use super::Outbound;

    /// The kernel sends whatever range a part names: a part past its buffer would send the
    /// bytes of the buffers next to it (another connection's). Before: accepted silently.
    #[test]
    #[should_panic(expected = "a part 0..4097 outside its 4096-byte buffer")]
    fn a_part_past_its_buffer_is_refused() {
        let pool = BufferPool::new(4096, 2).unwrap();
        let buf = pool.take().unwrap();
        let mut out = Outbound::new();
        out.push(buf, 0, 4097);
    }

    #[test]
    #[should_panic(expected = "a part 10..5 outside its 4096-byte buffer")]
    fn a_part_that_ends_before_it_starts_is_refused() {
        let pool = BufferPool::new(4096, 2).unwrap();
        let buf = pool.take().unwrap();
        let mut out = Outbound::new();
        out.push(buf, 10, 5);
    }
}
