//! A chunked request body being buffered: its decoded data, held in pool buffers until it is
//! known whether the body ends within the route's `request_buffering`. If it does, the pieces
//! leave as they are, behind a head that declares the body's length; if it does not, each
//! piece is framed as one chunk in its own buffer and the rest of the body streams as chunks.
//!
//! Every piece keeps room for a chunk header and the CRLF after its data, so framing it after
//! the fact costs a move of its bytes within its buffer, never another buffer.

use std::rc::Rc;

use crate::http1::{CHUNK_END, MAX_CHUNK_HEADER, write_chunk_header};
use crate::io::uring::MAX_PARTS;
use crate::io::{Buf, BufferPool, Outbound};

/// Pieces a body can take: the send's parts less the head's.
const MAX_PIECES: usize = MAX_PARTS - 1;

/// Decoded body data in up to [`MAX_PIECES`] buffers, each filled from its start.
#[derive(Default)]
pub struct Decoded {
    pieces: [Option<(Buf, usize)>; MAX_PIECES],
    /// Pieces in use; the last one is being filled.
    count: usize,
}

impl Decoded {
    /// Where the next decoded bytes go: the free room of the piece being filled, or of a new
    /// one taken from `pool`. `None` when every piece is full and none is left, or no buffer is
    /// free: the body cannot be held whole.
    pub fn room(&mut self, pool: &Rc<BufferPool>) -> Option<&mut [u8]> {
        let full = self.count == 0
            || self.pieces[self.count - 1]
                .as_ref()
                .is_some_and(|(buf, filled)| *filled == data_room(buf));
        if full {
            if self.count == MAX_PIECES {
                return None;
            }
            self.pieces[self.count] = Some((pool.take()?, 0));
            self.count += 1;
        }
        let (buf, filled) = self.pieces[self.count - 1].as_mut()?;
        let end = data_room(buf);
        Some(&mut buf.as_mut_slice()[*filled..end])
    }

    /// Counts `n` bytes written into the last [`Decoded::room`].
    pub fn filled(&mut self, n: usize) {
        if let Some((_, filled)) = self
            .count
            .checked_sub(1)
            .and_then(|i| self.pieces[i].as_mut())
        {
            *filled += n;
        }
    }

    /// Queues the pieces behind the head as they are: a body declared by its length. Returns
    /// false when `out` had no part left for one (never, with the head alone queued).
    pub fn queue_plain(&mut self, out: &mut Outbound) -> bool {
        self.drain()
            .all(|(buf, filled)| filled == 0 || out.push(buf, 0, filled as u32))
    }

    /// Frames each piece as one chunk in its own buffer and queues it: the body goes on as
    /// chunks, as the head already says.
    pub fn queue_as_chunks(&mut self, out: &mut Outbound) -> bool {
        self.drain().all(|(mut buf, filled)| {
            if filled == 0 {
                return true;
            }
            let mut header = [0u8; MAX_CHUNK_HEADER];
            let header_len =
                write_chunk_header(filled as u64, &mut header).expect("a chunk header fits");
            let bytes = buf.as_mut_slice();
            bytes.copy_within(..filled, header_len);
            bytes[..header_len].copy_from_slice(&header[..header_len]);
            let end = header_len + filled;
            bytes[end..end + CHUNK_END.len()].copy_from_slice(CHUNK_END);
            out.push(buf, 0, (end + CHUNK_END.len()) as u32)
        })
    }

    fn drain(&mut self) -> impl Iterator<Item = (Buf, usize)> + '_ {
        let count = std::mem::take(&mut self.count);
        self.pieces[..count].iter_mut().filter_map(Option::take)
    }
}

/// The data a piece of `buf` holds at most: its size less a chunk header and the CRLF after
/// the data.
fn data_room(buf: &Buf) -> usize {
    buf.capacity() - MAX_CHUNK_HEADER - CHUNK_END.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(decoded: &mut Decoded, pool: &Rc<BufferPool>, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let room = decoded.room(pool).expect("room");
            let n = room.len().min(bytes.len());
            room[..n].copy_from_slice(&bytes[..n]);
            decoded.filled(n);
            bytes = &bytes[n..];
        }
    }

    fn sent(out: &Outbound) -> Vec<u8> {
        out.bytes()
    }

    #[test]
    fn pieces_leave_as_data_or_framed_as_chunks() {
        let pool = BufferPool::new(64, 16).unwrap();
        let body: Vec<u8> = (0..100u8).collect();
        let mut decoded = Decoded::default();
        fill(&mut decoded, &pool, &body);
        let mut out = Outbound::new();
        assert!(decoded.queue_plain(&mut out));
        assert_eq!(sent(&out), body);

        let mut decoded = Decoded::default();
        fill(&mut decoded, &pool, &body);
        let mut out = Outbound::new();
        assert!(decoded.queue_as_chunks(&mut out));
        // 64-byte buffers keep 44 bytes of data each: 44 + 44 + 12.
        let mut expected = Vec::new();
        for chunk in body.chunks(44) {
            expected.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            expected.extend_from_slice(chunk);
            expected.extend_from_slice(b"\r\n");
        }
        assert_eq!(sent(&out), expected);
    }

    #[test]
    fn no_more_pieces_than_the_send_has_parts() {
        let pool = BufferPool::new(64, 16).unwrap();
        let mut decoded = Decoded::default();
        fill(&mut decoded, &pool, &vec![7; 44 * MAX_PIECES]);
        assert!(decoded.room(&pool).is_none(), "every piece is full");
        assert_eq!(pool.free_count(), 16 - MAX_PIECES);
        drop(decoded);
        assert_eq!(pool.free_count(), 16, "the buffers went back");
    }
}
