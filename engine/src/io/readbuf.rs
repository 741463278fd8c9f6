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
        let part = Part {
            buf,
            start: self.start,
            end: self.end,
        };
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
        Some(Part {
            buf: copy,
            start: 0,
            end: n as u32,
        })
    }

    // ---- for the receive operation (see `conn.rs`) ----

    /// Lends the buffer to a receive into its free tail.
    pub(super) fn take_buf(&mut self) -> Option<Buf> {
        self.buf.take()
    }

    /// Takes the buffer back after a receive.
    pub(super) fn put_buf(&mut self, buf: Option<Buf>) {
        self.buf = buf;
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

    /// Ensures free space after `end`, moving unconsumed bytes to the front when needed; returns
    /// the buffer and the offset a receive appends at.
    pub(super) fn make_room(&mut self, mut buf: Buf) -> io::Result<(Buf, usize)> {
        if (self.end as usize) < buf.capacity() {
            return Ok((buf, self.end as usize));
        }
        if self.start == 0 {
            self.buf = Some(buf);
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "read buffer full",
            ));
        }
        let (start, end) = (self.start as usize, self.end as usize);
        buf.as_mut_slice().copy_within(start..end, 0);
        self.end -= self.start;
        self.start = 0;
        Ok((buf, self.end as usize))
    }
}
