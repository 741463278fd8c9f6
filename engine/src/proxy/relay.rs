//! `relay`: the response to the client, and the body relays both directions use. Bodies move
//! from one connection to the other as they arrive, never buffered whole: by length (zero-copy:
//! the received buffer itself is sent), chunked (decoded and re-framed: a peer's chunk framing
//! is never forwarded) and until close.
//!
//! Every loop starts by sending what is already queued in `out` (typically the head just
//! written) together with the body bytes already at hand, so a small response leaves in one
//! write.

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::http1::ResponseBody;
use crate::http1::{
    CHUNK_END, ChunkError, ChunkStep, ChunkedDecoder, LAST_CHUNK, MAX_CHUNK_HEADER,
    write_chunk_header,
};
use crate::io::{Buf, BufferPool, Conn, IoShard, Outbound, ReadBuf};
use crate::snapshot::Snapshot;

use super::forward::Exchange;
use super::head::ClientFraming;
use super::record::Outcome;
use super::{Session, Step};

/// Why a relay stopped early.
#[derive(Debug)]
pub enum RelayError {
    /// Reading from the source failed or timed out.
    Source(io::Error),
    /// The source closed before the body ended.
    SourceClosed,
    /// Writing to the sink failed or timed out.
    Sink,
    /// The chunked framing was invalid.
    Framing(ChunkError),
    /// The body exceeded the limit.
    TooLarge,
    /// No I/O buffer was free.
    NoBuffer,
}

/// Deadlines of one relay: each read and each write must make progress within its timeout.
#[derive(Clone, Copy)]
pub struct Pace {
    pub read: Duration,
    pub write: Duration,
}

/// The two ends of a relay.
pub struct Ends<'a> {
    pub from: &'a mut Conn,
    pub from_rb: &'a mut ReadBuf,
    pub to: &'a mut Conn,
    pub out: &'a mut Outbound,
    pub pool: &'a Rc<BufferPool>,
    /// The shard's I/O, for its clock.
    pub io: &'a IoShard,
    pub pace: Pace,
    /// Bytes sent to `to` so far.
    pub sent: u64,
    /// Look, before the body's last piece goes out, whether `to` already sent something (a
    /// request body relayed to an upstream: see [`Ends::sink_spoke`]).
    pub watch_sink: bool,
    /// `to` had sent bytes (or closed) before the body was complete: an upstream that answered
    /// early, whose connection must not be reused (RFC 9112 sec. 9.3, 9.5).
    pub sink_spoke: bool,
}

impl Ends<'_> {
    /// Called before the piece that completes the body is sent.
    fn before_last_piece(&mut self) {
        if self.watch_sink && self.to.has_unread_input() {
            self.sink_spoke = true;
        }
    }

    async fn flush(&mut self) -> Result<(), RelayError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let result = self
            .to
            .send(self.out, Some(self.io.now() + self.pace.write))
            .await;
        if result.is_ok() {
            self.sent += self.out.len_bytes() as u64;
        }
        self.out.clear();
        result.map_err(|_| RelayError::Sink)
    }

    /// Sends what is queued and receives more, concurrently. Both must succeed.
    async fn flush_and_fill(&mut self) -> Result<(), RelayError> {
        let now = self.io.now();
        let send = self.to.send(self.out, Some(now + self.pace.write));
        let receive = self.from.recv(self.from_rb, Some(now + self.pace.read));
        let (sent, received) = futures_lite::future::zip(send, receive).await;
        if sent.is_ok() {
            self.sent += self.out.len_bytes() as u64;
        }
        self.out.clear();
        sent.map_err(|_| RelayError::Sink)?;
        received_more(received)
    }

    async fn fill(&mut self) -> Result<(), RelayError> {
        receive_more(self.from, self.from_rb, self.io.now() + self.pace.read).await
    }
}

/// Receives more of a body from `from` into `rb` by `deadline`; its end is an error here.
pub async fn receive_more(
    from: &mut Conn,
    rb: &mut ReadBuf,
    deadline: Instant,
) -> Result<(), RelayError> {
    received_more(from.recv(rb, Some(deadline)).await)
}

/// A receive's outcome for a body still expected: no byte means the source closed.
fn received_more(received: io::Result<usize>) -> Result<(), RelayError> {
    match received {
        Ok(0) => Err(RelayError::SourceClosed),
        Ok(_) => Ok(()),
        Err(err) => Err(RelayError::Source(err)),
    }
}

impl Session {
    /// Sends the client the response head with the body bytes at hand in one write, streams
    /// the rest of the body, and gives the upstream connection back to its pool when the
    /// exchange left it clean. A body cut short closes the client connection, so a truncated
    /// body is never mistaken for a complete one.
    pub(super) async fn relay(
        &mut self,
        snapshot: &Snapshot,
        exchange: Exchange,
        outcome: &mut Outcome,
    ) -> Step {
        let Exchange {
            mut checkout,
            mut urb,
            plan,
            answered_early,
            body_timeout,
            // Counted until the response is relayed.
            in_flight: _in_flight,
            busy: _busy,
        } = exchange;
        let shard = self.shard.clone();
        let pool = shard.io.pool().clone();
        let mut out = Outbound::new();
        out.push(plan.head, 0, plan.head_len as u32);
        let mut ends = Ends {
            from: checkout.conn(),
            from_rb: &mut urb,
            to: &mut self.client,
            out: &mut out,
            pool: &pool,
            io: &shard.io,
            pace: Pace {
                read: body_timeout,
                write: snapshot.timeouts.send,
            },
            sent: 0,
            watch_sink: false,
            sink_spoke: false,
        };
        outcome.status = plan.status;
        let relayed = match (plan.body, plan.framing) {
            (_, ClientFraming::None) | (ResponseBody::None, _) => by_length(&mut ends, 0).await,
            (ResponseBody::Length(length), _) => by_length(&mut ends, length).await,
            (ResponseBody::Chunked, framing) => {
                let reframe = framing == ClientFraming::Chunked;
                chunked(&mut ends, &mut ChunkedDecoder::new(), None, reframe)
                    .await
                    .map(|_| ())
            }
            (ResponseBody::CloseDelimited, framing) => {
                until_close(&mut ends, framing == ClientFraming::Chunked).await
            }
        };
        outcome.bytes = plan.interim_bytes + ends.sent;
        if relayed.is_err() {
            return Step::Close;
        }
        let reusable = plan.upstream_keep_alive
            && urb.is_empty()
            && plan.body != ResponseBody::CloseDelimited
            && !answered_early;
        if reusable {
            let pool = checkout.pool().clone();
            pool.give_back(checkout, shard.io.now());
        }
        if plan.close {
            Step::Close
        } else {
            Step::Continue
        }
    }
}

/// Relays exactly `remaining` bytes.
pub async fn by_length(ends: &mut Ends<'_>, mut remaining: u64) -> Result<(), RelayError> {
    loop {
        if remaining > 0 && !ends.from_rb.is_empty() {
            let take = remaining.min(ends.from_rb.len() as u64) as usize;
            if !ends.out.take_from(ends.from_rb, take, ends.pool) {
                return Err(RelayError::NoBuffer);
            }
            remaining -= take as u64;
        }
        if remaining == 0 {
            ends.before_last_piece();
            return ends.flush().await;
        }
        if ends.out.is_empty() {
            ends.fill().await?;
            continue;
        }
        // Send what is here while the next piece is received: both operations go to the
        // kernel in the same pass, halving the round trips of a large body.
        ends.flush_and_fill().await?;
    }
}

/// Relays a chunked body, re-framed as chunks (`reframe`) or as plain data for a peer that reads
/// until close; returns the number of data bytes. Fails with `TooLarge` once more than `limit`
/// data bytes arrived.
pub async fn chunked(
    ends: &mut Ends<'_>,
    decoder: &mut ChunkedDecoder,
    limit: Option<u64>,
    reframe: bool,
) -> Result<u64, RelayError> {
    let mut total = 0u64;
    loop {
        let mut frame = ends.pool.take().ok_or(RelayError::NoBuffer)?;
        let step = rechunk(decoder, ends.from_rb, frame.as_mut_slice(), reframe)
            .map_err(RelayError::Framing)?;
        total += step.data;
        if limit.is_some_and(|limit| total > limit) {
            return Err(RelayError::TooLarge);
        }
        if step.written > 0 {
            queue(ends.out, frame, step.written);
        }
        match step.stop {
            Stop::Done => {
                ends.before_last_piece();
                ends.flush().await?;
                return Ok(total);
            }
            Stop::OutputFull => ends.flush().await?,
            Stop::NeedInput => {
                ends.flush().await?;
                ends.fill().await?;
            }
        }
    }
}

/// Relays until the source closes: as is (`rechunk` false) or framed as chunks for an HTTP/1.1
/// client (`rechunk` true, ended by the last chunk).
pub async fn until_close(ends: &mut Ends<'_>, rechunk: bool) -> Result<(), RelayError> {
    loop {
        if !ends.from_rb.is_empty() {
            if rechunk {
                let mut frame = ends.pool.take().ok_or(RelayError::NoBuffer)?;
                let written = frame_chunk(ends.from_rb, frame.as_mut_slice());
                queue(ends.out, frame, written);
            } else if let Some(part) = ends.from_rb.take_all() {
                ends.out.push_part(part);
            }
        }
        if ends.from_rb.is_empty() || ends.out.is_full() {
            ends.flush().await?;
        }
        if !ends.from_rb.is_empty() {
            continue;
        }
        match ends
            .from
            .recv(ends.from_rb, Some(ends.io.now() + ends.pace.read))
            .await
        {
            Ok(0) => break,
            Ok(_) => {}
            Err(err) => return Err(RelayError::Source(err)),
        }
    }
    if rechunk {
        let mut frame = ends.pool.take().ok_or(RelayError::NoBuffer)?;
        frame.as_mut_slice()[..LAST_CHUNK.len()].copy_from_slice(LAST_CHUNK);
        queue(ends.out, frame, LAST_CHUNK.len());
    }
    ends.flush().await
}

fn queue(out: &mut Outbound, buf: Buf, len: usize) {
    let queued = out.push(buf, 0, len as u32);
    debug_assert!(queued, "relays queue at most one frame besides the head");
}

/// Why [`rechunk`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// The body ended; the last chunk is written.
    Done,
    /// All input is used; read more.
    NeedInput,
    /// `out` has no room for another chunk; send it.
    OutputFull,
}

/// The result of one [`rechunk`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rechunked {
    /// Bytes written to `out`.
    pub written: usize,
    /// Body data bytes among them.
    pub data: u64,
    pub stop: Stop,
}

/// Decodes chunked input and writes the data into `out`, framed as coregate's own chunks when
/// `reframe` (extensions and trailers are dropped), or as plain bytes otherwise. Consumes the
/// input it decoded.
pub fn rechunk(
    decoder: &mut ChunkedDecoder,
    input: &mut ReadBuf,
    out: &mut [u8],
    reframe: bool,
) -> Result<Rechunked, ChunkError> {
    let (header_room, end_room) = if reframe {
        (MAX_CHUNK_HEADER, CHUNK_END.len())
    } else {
        (0, 0)
    };
    let mut written = 0;
    let mut data_bytes = 0u64;
    loop {
        if decoder.is_done() {
            if !reframe {
                return Ok(Rechunked {
                    written,
                    data: data_bytes,
                    stop: Stop::Done,
                });
            }
            if out.len() - written < LAST_CHUNK.len() {
                return Ok(Rechunked {
                    written,
                    data: data_bytes,
                    stop: Stop::OutputFull,
                });
            }
            out[written..written + LAST_CHUNK.len()].copy_from_slice(LAST_CHUNK);
            written += LAST_CHUNK.len();
            return Ok(Rechunked {
                written,
                data: data_bytes,
                stop: Stop::Done,
            });
        }
        let room = out.len() - written;
        // Room for a header, at least one data byte and the CRLF after it.
        if room < header_room + end_room + 1 {
            return Ok(Rechunked {
                written,
                data: data_bytes,
                stop: Stop::OutputFull,
            });
        }
        let available = input.data();
        if available.is_empty() {
            return Ok(Rechunked {
                written,
                data: data_bytes,
                stop: Stop::NeedInput,
            });
        }
        // Decode no more than the room can take, so every data range found can be written.
        let limit = available.len().min(room - header_room - end_room);
        match decoder.decode(&available[..limit])? {
            ChunkStep::Data { consumed, data } => {
                let len = data.len();
                if reframe {
                    written += write_chunk_header(len as u64, &mut out[written..])
                        .expect("room was checked");
                }
                out[written..written + len].copy_from_slice(&available[data]);
                written += len;
                if reframe {
                    out[written..written + CHUNK_END.len()].copy_from_slice(CHUNK_END);
                    written += CHUNK_END.len();
                }
                data_bytes += len as u64;
                input.consume(consumed);
            }
            ChunkStep::NeedMore { consumed } => {
                input.consume(consumed);
                if consumed == 0 {
                    return Ok(Rechunked {
                        written,
                        data: data_bytes,
                        stop: Stop::NeedInput,
                    });
                }
            }
            ChunkStep::Done { consumed } => input.consume(consumed),
        }
    }
}

/// Frames as much of `input` as fits into `out` as one chunk; returns the bytes written.
fn frame_chunk(input: &mut ReadBuf, out: &mut [u8]) -> usize {
    let len = input
        .len()
        .min(out.len() - MAX_CHUNK_HEADER - CHUNK_END.len());
    let header = write_chunk_header(len as u64, out).expect("a buffer holds a chunk header");
    out[header..header + len].copy_from_slice(&input.data()[..len]);
    out[header + len..header + len + CHUNK_END.len()].copy_from_slice(CHUNK_END);
    input.consume(len);
    header + len + CHUNK_END.len()
}
