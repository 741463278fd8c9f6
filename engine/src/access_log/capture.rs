//! The request's text a line shows, copied out of the connection buffer while the head is
//! parsed: that buffer is reused (or given back) long before the line is written at the end of
//! the exchange. Each field is cut at [`MAX_FIELD_BYTES`].
//!
//! The copies live in one I/O buffer of the shard's pool, taken only while the log is on, so an
//! exchange in progress carries a pointer here instead of kilobytes of inline text, and nothing
//! is allocated. Should the pool be empty, the fields read as empty and the line is still
//! written.

use std::rc::Rc;

use super::MAX_FIELD_BYTES;
use crate::io::{Buf, BufferPool};

/// The fields a line takes from the request's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapturedField {
    Method,
    Target,
    RequestId,
    Referer,
    UserAgent,
}

impl CapturedField {
    const COUNT: usize = 5;

    /// Where the field's bytes start in the capture buffer.
    fn offset(self) -> usize {
        self as usize * MAX_FIELD_BYTES
    }
}

/// Copies of one request's text fields.
pub struct Capture {
    buf: Option<Buf>,
    lens: [u16; CapturedField::COUNT],
}

impl Capture {
    /// Captures nothing (the log is off): every field reads as empty.
    pub const fn none() -> Capture {
        Capture {
            buf: None,
            lens: [0; CapturedField::COUNT],
        }
    }

    /// Room for every field, from `pool`.
    pub fn from_pool(pool: &Rc<BufferPool>) -> Capture {
        let buf = pool
            .take()
            .filter(|buf| buf.capacity() >= CapturedField::COUNT * MAX_FIELD_BYTES);
        Capture {
            buf,
            lens: [0; CapturedField::COUNT],
        }
    }

    /// Copies `value` as `field`, cut at [`MAX_FIELD_BYTES`] with a `...` marking the cut.
    pub fn set(&mut self, field: CapturedField, value: &[u8]) {
        let Some(buf) = &mut self.buf else { return };
        let len = value.len().min(MAX_FIELD_BYTES);
        let start = field.offset();
        let slot = &mut buf.as_mut_slice()[start..start + len];
        slot.copy_from_slice(&value[..len]);
        if len < value.len() && len >= 3 {
            slot[len - 3..].copy_from_slice(b"...");
        }
        self.lens[field as usize] = len as u16;
    }

    pub fn get(&self, field: CapturedField) -> &[u8] {
        let Some(buf) = &self.buf else { return b"" };
        let start = field.offset();
        &buf.as_slice()[start..start + self.lens[field as usize] as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_and_marked() {
        let pool = BufferPool::new(4096, 2).unwrap();
        let mut capture = Capture::from_pool(&pool);
        capture.set(CapturedField::UserAgent, &[b'a'; 600]);
        capture.set(CapturedField::Method, b"GET");
        let agent = capture.get(CapturedField::UserAgent);
        assert_eq!(agent.len(), MAX_FIELD_BYTES);
        assert!(agent.ends_with(b"aa..."));
        assert_eq!(capture.get(CapturedField::Method), b"GET");
        assert_eq!(capture.get(CapturedField::Referer), b"");
    }

    #[test]
    fn without_a_buffer_every_field_is_empty() {
        let mut capture = Capture::none();
        capture.set(CapturedField::Target, b"/a");
        assert_eq!(capture.get(CapturedField::Target), b"");
    }
}
