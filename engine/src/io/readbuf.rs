//! Bytes received and not yet consumed. Holds no buffer while empty, so an idle connection
//! costs nothing here.

use std::io;
use std::rc::Rc;

use super::buffer::{Buf, BufferPool};
use super::uring::Part;

/// Bytes received and not yet consumed: `buf[start..end]`.
#[derive(Default)]
pub struct ReadBuf {
    buf: Option<Buf>,
    start: u32,
    end: u32,
}

impl ReadBuf {
    pub const fn new() -> ReadBuf {
        ReadBuf {
            buf: None,
            start: 0,
            end: 0,
        }
    }

    /// The unconsumed bytes.
    pub fn data(&self) -> &[u8] {
        match &self.buf {
            Some(buf) => &buf.as_slice()[self.start as usize..self.end as usize],
            None => &[],
        }
    }

    /// The unconsumed bytes, for changing in place (TLS records decrypted where they lie).
    pub(super) fn data_mut(&mut self) -> &mut [u8] {
        match &mut self.buf {
            Some(buf) => &mut buf.as_mut_slice()[self.start as usize..self.end as usize],
            None => &mut [],
        }
    }

    /// The size of the buffer held, if any.
    pub(super) fn capacity(&self) -> Option<usize> {
        self.buf.as_ref().map(Buf::capacity)
    }

    /// Moves the unconsumed bytes to the front of `bigger` and holds that buffer instead (a
    /// TLS record longer than the buffer it started in).
    pub(super) fn move_to(&mut self, mut bigger: Buf) {
        let len = self.len();
        assert!(
            len <= bigger.capacity(),
            "{len} bytes moved to a smaller buffer"
        );
        bigger.as_mut_slice()[..len].copy_from_slice(self.data());
        self.buf = Some(bigger);
        self.start = 0;
        self.end = len as u32;
    }

    /// Appends as much of `bytes` as fits, taking a buffer from `pool` when none is held;
    /// returns how many bytes were taken (0 when the buffer is full or none is free).
    pub(super) fn append(&mut self, bytes: &[u8], pool: &Rc<BufferPool>) -> usize {
        if bytes.is_empty() {
            return 0;
        }
        if self.buf.is_none() {
            match pool.take() {
                Some(buf) => self.start_with(buf),
                None => return 0,
            }
        }
        let buf = self.buf.as_mut().expect("a buffer is held");
        if buf.capacity() - (self.end as usize) < bytes.len() {
            self.compact();
        }
        let buf = self.buf.as_mut().expect("a buffer is held");
        let offset = self.end as usize;
        let n = bytes.len().min(buf.capacity() - offset);
        buf.as_mut_slice()[offset..offset + n].copy_from_slice(&bytes[..n]);
        self.end += n as u32;
        n
    }

    /// How many bytes [`ReadBuf::append`] takes at most: the buffer held less the unconsumed
    /// bytes, or a whole buffer of `buf_size` when none is held.
    pub(super) fn room(&self, buf_size: usize) -> usize {
        self.capacity()
            .map_or(buf_size, |capacity| capacity - self.len())
    }

    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Whether a buffer is held (for tests of idle memory).
    pub fn holds_buffer(&self) -> bool {
        self.buf.is_some()
    }

    /// Marks `n` bytes as used; gives the buffer back once everything is used.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n.min(self.len()) as u32;
        self.release_if_empty();
    }

    /// Moves all unconsumed bytes out as a send part, without copying.
    pub fn take_all(&mut self) -> Option<Part> {
        let buf = self.buf.take()?;
        let part = Part::new(buf, self.start, self.end);
        self.start = 0;
        self.end = 0;
        Some(part)
    }

    /// Moves the first `n` unconsumed bytes out as a send part. When more bytes follow (a
    /// pipelined request, say), the `n` bytes are copied to a fresh buffer and the rest stays.
    pub fn take_prefix(&mut self, n: usize, pool: &Rc<BufferPool>) -> Option<Part> {
        let n = n.min(self.len());
        if n == self.len() {
            return self.take_all();
        }
        let mut copy = pool.take()?;
        copy.as_mut_slice()[..n].copy_from_slice(&self.data()[..n]);
        self.consume(n);
        Some(Part::new(copy, 0, n as u32))
    }

    // ---- for the receive operation (see `conn.rs`) ----

    /// Lends the buffer, with its bytes, to a receive into its free tail. Until
    /// [`ReadBuf::restore`] the `ReadBuf` is empty: if the receive is dropped in flight, the
    /// bytes are gone with the buffer, and the `ReadBuf` still says what it holds.
    pub(super) fn lend(&mut self) -> Option<Lent> {
        let buf = self.buf.take()?;
        let lent = Lent {
            buf,
            start: self.start,
            end: self.end,
        };
        self.start = 0;
        self.end = 0;
        Some(lent)
    }

    /// Takes a lent buffer back after its receive.
    pub(super) fn restore(&mut self, buf: Buf, start: u32, end: u32) {
        debug_assert!(self.buf.is_none() && start <= end && end as usize <= buf.capacity());
        self.buf = Some(buf);
        self.start = start;
        self.end = end;
    }

    /// Starts over with a fresh, empty buffer (one the kernel picked, or one of our own).
    pub(super) fn start_with(&mut self, buf: Buf) {
        self.buf = Some(buf);
        self.start = 0;
        self.end = 0;
    }

    /// Counts `n` bytes a receive appended; gives the buffer back if it still holds nothing.
    pub(super) fn received(&mut self, n: usize) {
        self.end += n as u32;
        self.release_if_empty();
    }

    fn release_if_empty(&mut self) {
        if self.start == self.end {
            self.buf = None;
            self.start = 0;
            self.end = 0;
        }
    }

    /// Ensures free space after `end` in the buffer held, moving unconsumed bytes to the front
    /// when needed; returns the offset a receive appends at, or `None` when no buffer is held.
    pub(super) fn make_room(&mut self) -> io::Result<Option<usize>> {
        let Some(buf) = self.buf.as_mut() else {
            return Ok(None);
        };
        if (self.end as usize) < buf.capacity() {
            return Ok(Some(self.end as usize));
        }
        if self.start == 0 {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "read buffer full",
            ));
        }
        self.compact();
        Ok(Some(self.end as usize))
    }

    /// Moves the unconsumed bytes to the front of the buffer held, so its whole free space
    /// follows them.
    fn compact(&mut self) {
        let Some(buf) = self.buf.as_mut() else {
            return;
        };
        if self.start == 0 {
            return;
        }
        let (start, end) = (self.start as usize, self.end as usize);
        buf.as_mut_slice().copy_within(start..end, 0);
        self.end -= self.start;
        self.start = 0;
    }
}

/// A buffer lent to a receive, with the range of unconsumed bytes it holds.
pub(super) struct Lent {
    pub buf: Buf,
    pub start: u32,
    pub end: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_reclaims_the_consumed_head_before_it_splits_bytes() {
        let pool = BufferPool::new(4096, 2).unwrap();
        let mut rb = ReadBuf::new();
        assert_eq!(rb.room(pool.buf_size()), 4096);
        assert_eq!(rb.append(&[1; 4000], &pool), 4000);
        rb.consume(3000);
        assert_eq!(rb.room(pool.buf_size()), 3096);
        // 96 bytes are free after the end; the 3,000 before the start are reclaimed first.
        assert_eq!(rb.append(&[2; 3000], &pool), 3000);
        assert_eq!(rb.len(), 4000);
        assert_eq!(&rb.data()[..1000], &[1; 1000][..]);
        assert_eq!(&rb.data()[1000..], &[2; 3000][..]);
        assert_eq!(rb.room(pool.buf_size()), 96);
        assert_eq!(
            rb.append(&[3; 200], &pool),
            96,
            "a full buffer takes what fits"
        );
    }
}
