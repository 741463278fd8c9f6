//! The chunked transfer coding (RFC 9112 sec. 7.1): a streaming decoder that finds the data in
//! a chunked body without copying it, and the framing coregate writes when it re-encodes.
//!
//! It owns the chunk grammar only. Where the decoded data goes, and how much of it a route
//! allows, belong to the relay.
//!
//! coregate never forwards a peer's chunk framing: the decoder hands out the data ranges, and
//! the relay writes its own `size CRLF data CRLF` around them with [`write_chunk_header`],
//! [`CHUNK_END`] and [`LAST_CHUNK`]. That way chunk extensions, odd sizes or trailers from one
//! side can never reach the other side's parser.
//!
//! Decisions:
//! - chunk-size is `1*HEXDIG`: no sign, no `0x`, no leading whitespace; a size over `u64` is an
//!   error.
//! - whitespace after the size is accepted only before a `;` (BWS of a chunk extension);
//!   extensions are skipped, bounded by [`MAX_CHUNK_LINE`] per size line, and may contain no
//!   control character other than HTAB.
//! - the extensions and the trailer section of one body are bounded together by
//!   [`MAX_CHUNK_METADATA`], as RFC 9112 sec. 7.1.1 asks.
//! - every chunk's data must be followed by CRLF; line ends are always CRLF (no bare LF).
//! - trailer fields are checked for field-line syntax, bounded by [`MAX_TRAILER_BYTES`], and
//!   discarded, as RFC 9110 sec. 6.5.1 permits a recipient that removes the chunked coding.

use std::ops::Range;

use super::{is_field_vchar, is_tchar};

/// The longest chunk-size line accepted (size, extensions and CRLF), in bytes.
pub const MAX_CHUNK_LINE: usize = 4 * 1024;

/// The most bytes of trailer section accepted (all trailer lines and the final CRLF).
pub const MAX_TRAILER_BYTES: usize = 8 * 1024;

/// The most bytes of chunk extensions and trailer section one body may carry, counted together:
/// every byte of a size line after the chunk size but its CRLF, and every byte of the trailer
/// section.
///
/// RFC 9112 sec. 7.1.1 asks a server to limit the total length of the extensions it receives.
/// [`MAX_CHUNK_LINE`] bounds one size line, but without a total a client can send endless 4 KiB
/// extensions around one-byte chunks: bytes coregate must read and discard, which no body or
/// head limit counts (the class of CVE-2023-39326 in Go's net/http and CVE-2024-22019 in
/// Node.js). 16 KiB is what hyper allows for the extensions of one body; honest senders use
/// a few bytes, if any.
pub const MAX_CHUNK_METADATA: usize = 16 * 1024;

/// The longest chunk header [`write_chunk_header`] writes: 16 hex digits and CRLF.
pub const MAX_CHUNK_HEADER: usize = 18;

/// What follows the data of every chunk coregate writes.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk and the empty trailer section: ends a chunked body coregate writes.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// What one call to [`ChunkedDecoder::decode`] found. `consumed` always counts from the start
/// of the input given to that call; the caller drops that many bytes before the next call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkStep {
    /// Body data at `input[data]`, the last bytes of the `consumed` ones.
    Data { consumed: usize, data: Range<usize> },
    /// All of `input` was framing (`consumed == input.len()`): read more.
    NeedMore { consumed: usize },
    /// The body ended (last chunk and trailers) after `consumed` bytes; whatever follows belongs
    /// to the next message.
    Done { consumed: usize },
}

/// Why a chunked body was refused. A request answers 400, a response 502; either way the
/// connection is closed, since its framing is lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// No hex digit where a chunk size must start, or a stray byte after it.
    InvalidSize,
    /// The chunk size does not fit in 64 bits.
    SizeOverflow,
    /// A control character or malformed whitespace in the size line.
    InvalidExtension,
    /// The size line is longer than [`MAX_CHUNK_LINE`].
    LineTooLong,
    /// Chunk data not followed by CRLF, or a CR not followed by LF.
    MissingCrlf,
    /// A trailer line that is not a field line.
    InvalidTrailer,
    /// More than [`MAX_TRAILER_BYTES`] of trailers.
    TrailersTooLarge,
    /// More than [`MAX_CHUNK_METADATA`] of extensions and trailers in one body.
    MetadataTooLarge,
}

impl ChunkError {
    /// A short text for logs and plain-text error bodies.
    pub const fn reason(self) -> &'static str {
        match self {
            ChunkError::InvalidSize => "invalid chunk size",
            ChunkError::SizeOverflow => "chunk size too large",
            ChunkError::InvalidExtension => "invalid chunk extension",
            ChunkError::LineTooLong => "chunk size line too long",
            ChunkError::MissingCrlf => "chunk not ended by CRLF",
            ChunkError::InvalidTrailer => "invalid trailer field",
            ChunkError::TrailersTooLarge => "trailer section too large",
            ChunkError::MetadataTooLarge => "chunk extensions and trailers too large",
        }
    }
}

/// Where the decoder is in the grammar. Every state can be left and resumed at any byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Reading chunk-size digits; `digits` is false until the first one.
    Size {
        size: u64,
        digits: bool,
    },
    /// Whitespace after the size: only a `;` may follow.
    SizeSpace {
        size: u64,
    },
    /// Inside chunk extensions, until CR.
    Extension {
        size: u64,
    },
    /// After the CR of the size line.
    SizeLf {
        size: u64,
    },
    /// In the data of a chunk.
    Data {
        remaining: u64,
    },
    /// After the data: CR expected.
    DataCr,
    /// After the data's CR: LF expected.
    DataLf,
    /// At the start of a trailer line, or of the final empty line.
    TrailerStart,
    /// In a trailer field name.
    TrailerName,
    /// In a trailer field value, until CR.
    TrailerValue,
    /// After the CR of a trailer line.
    TrailerLf,
    /// After the CR of the final empty line.
    EndLf,
    Done,
    Failed(ChunkError),
}

/// A streaming decoder for one chunked body: a few bytes of state, no buffer. Feed it whatever
/// arrived; it never needs bytes it has already consumed again.
///
/// The relay's loop:
///
/// ```
/// # use coregate_engine::http1::{ChunkedDecoder, ChunkStep};
/// let mut input: &[u8] = b"5\r\nhello\r\n0\r\n\r\n";
/// let mut decoder = ChunkedDecoder::new();
/// let mut body = Vec::new();
/// loop {
///     match decoder.decode(input).unwrap() {
///         ChunkStep::Data { consumed, data } => {
///             body.extend_from_slice(&input[data]); // the relay writes it out instead
///             input = &input[consumed..];
///         }
///         ChunkStep::NeedMore { .. } => unreachable!("read more here"),
///         ChunkStep::Done { consumed } => {
///             input = &input[consumed..];
///             break;
///         }
///     }
/// }
/// assert_eq!(body, b"hello");
/// assert!(input.is_empty());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: State,
    /// Bytes of the current size line so far, for [`MAX_CHUNK_LINE`].
    line_len: usize,
    /// Bytes of the trailer section so far, for [`MAX_TRAILER_BYTES`] and
    /// [`MAX_CHUNK_METADATA`].
    trailer_len: usize,
    /// Bytes of chunk extensions so far, every size line of the body together, for
    /// [`MAX_CHUNK_METADATA`].
    extension_len: usize,
}

impl Default for ChunkedDecoder {
    fn default() -> ChunkedDecoder {
        ChunkedDecoder::new()
    }
}

impl ChunkedDecoder {
    pub const fn new() -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size {
                size: 0,
                digits: false,
            },
            line_len: 0,
            trailer_len: 0,
            extension_len: 0,
        }
    }

    /// Whether the whole body, trailers included, has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input` until it finds data, the end of the body, or the end of `input`.
    /// After an error every further call returns the same error.
    pub fn decode(&mut self, input: &[u8]) -> Result<ChunkStep, ChunkError> {
        let mut pos = 0;
        loop {
            match self.state {
                State::Data { remaining } => {
                    let available = input.len() - pos;
                    if available == 0 {
                        return Ok(ChunkStep::NeedMore { consumed: pos });
                    }
                    // `take` fits in usize: it is at most `available`.
                    let take = remaining.min(available as u64) as usize;
                    let remaining = remaining - take as u64;
                    self.state = if remaining == 0 {
                        State::DataCr
                    } else {
                        State::Data { remaining }
                    };
                    return Ok(ChunkStep::Data {
                        consumed: pos + take,
                        data: pos..pos + take,
                    });
                }
                State::Done => return Ok(ChunkStep::Done { consumed: pos }),
                State::Failed(err) => return Err(err),
                _ => {}
            }
            let Some(&byte) = input.get(pos) else {
                return Ok(ChunkStep::NeedMore { consumed: pos });
            };
            pos += 1;
            if let Err(err) = self.framing_byte(byte) {
                self.state = State::Failed(err);
                return Err(err);
            }
        }
    }

    /// One byte of framing: the size line, the CRLF after data, or the trailer section.
    fn framing_byte(&mut self, byte: u8) -> Result<(), ChunkError> {
        match self.state {
            State::Size { .. }
            | State::SizeSpace { .. }
            | State::Extension { .. }
            | State::SizeLf { .. } => {
                self.line_len += 1;
                if self.line_len > MAX_CHUNK_LINE {
                    return Err(ChunkError::LineTooLong);
                }
            }
            State::TrailerStart
            | State::TrailerName
            | State::TrailerValue
            | State::TrailerLf
            | State::EndLf => {
                self.trailer_len += 1;
                if self.trailer_len > MAX_TRAILER_BYTES {
                    return Err(ChunkError::TrailersTooLarge);
                }
                self.check_metadata()?;
            }
            _ => {}
        }

        let next = match (self.state, byte) {
            (State::Size { size, .. }, b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F') => {
                let digit = (byte as char).to_digit(16).unwrap_or(0) as u64;
                if size > u64::MAX >> 4 {
                    return Err(ChunkError::SizeOverflow);
                }
                State::Size {
                    size: size << 4 | digit,
                    digits: true,
                }
            }
            (State::Size { digits: false, .. }, _) => return Err(ChunkError::InvalidSize),
            (State::Size { size, .. }, b'\r') => State::SizeLf { size },
            (State::Size { size, .. }, b';') => State::Extension { size },
            (State::Size { size, .. }, b' ' | b'\t') => State::SizeSpace { size },
            (State::Size { .. }, _) => return Err(ChunkError::InvalidSize),

            (State::SizeSpace { size }, b' ' | b'\t') => State::SizeSpace { size },
            (State::SizeSpace { size }, b';') => State::Extension { size },
            (State::SizeSpace { .. }, _) => return Err(ChunkError::InvalidExtension),

            (State::Extension { size }, b'\r') => State::SizeLf { size },
            (State::Extension { size }, b) if is_field_vchar(b) => State::Extension { size },
            (State::Extension { .. }, _) => return Err(ChunkError::InvalidExtension),

            (State::SizeLf { size }, b'\n') => {
                self.line_len = 0;
                if size == 0 {
                    State::TrailerStart
                } else {
                    State::Data { remaining: size }
                }
            }
            (State::SizeLf { .. }, _) => return Err(ChunkError::MissingCrlf),

            (State::DataCr, b'\r') => State::DataLf,
            (State::DataLf, b'\n') => State::Size {
                size: 0,
                digits: false,
            },
            (State::DataCr | State::DataLf, _) => return Err(ChunkError::MissingCrlf),

            // RFC 9112 sec. 7.1.2: trailer-section = *( field-line CRLF ). A line starting with
            // whitespace would be obs-fold, which is refused as in heads.
            (State::TrailerStart, b'\r') => State::EndLf,
            (State::TrailerStart, b) if is_tchar(b) => State::TrailerName,
            (State::TrailerStart, _) => return Err(ChunkError::InvalidTrailer),
            (State::TrailerName, b':') => State::TrailerValue,
            (State::TrailerName, b) if is_tchar(b) => State::TrailerName,
            (State::TrailerName, _) => return Err(ChunkError::InvalidTrailer),
            (State::TrailerValue, b'\r') => State::TrailerLf,
            (State::TrailerValue, b) if is_field_vchar(b) => State::TrailerValue,
            (State::TrailerValue, _) => return Err(ChunkError::InvalidTrailer),
            (State::TrailerLf, b'\n') => State::TrailerStart,
            (State::TrailerLf, _) => return Err(ChunkError::MissingCrlf),
            (State::EndLf, b'\n') => State::Done,
            (State::EndLf, _) => return Err(ChunkError::MissingCrlf),

            // `decode` never hands these states a byte.
            (State::Data { .. } | State::Done | State::Failed(_), _) => self.state,
        };
        // The byte that leads into an extension (`;` or BWS) counts, as does every byte of it.
        if matches!(next, State::SizeSpace { .. } | State::Extension { .. }) {
            self.extension_len += 1;
            self.check_metadata()?;
        }
        self.state = next;
        Ok(())
    }

    /// [`MAX_CHUNK_METADATA`] over the extensions and trailers seen so far.
    fn check_metadata(&self) -> Result<(), ChunkError> {
        if self.extension_len + self.trailer_len > MAX_CHUNK_METADATA {
            return Err(ChunkError::MetadataTooLarge);
        }
        Ok(())
    }
}

/// Writes the header of a chunk of `len` bytes (`len` in hex, then CRLF) to the start of `out`
/// and returns its length, or `None` when `out` is too short (it never needs more than
/// [`MAX_CHUNK_HEADER`]). The chunk's data and [`CHUNK_END`] follow it; `len` must not be 0,
/// which would end the body (use [`LAST_CHUNK`]).
pub fn write_chunk_header(len: u64, out: &mut [u8]) -> Option<usize> {
    debug_assert!(
        len > 0,
        "a zero-length chunk ends the body: write LAST_CHUNK"
    );
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (64 - len.leading_zeros()).div_ceil(4).max(1) as usize;
    let header = out.get_mut(..digits + 2)?;
    for (i, slot) in header[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *slot = HEX[(len >> shift) as usize & 0xf];
    }
    header[digits..].copy_from_slice(b"\r\n");
    Some(digits + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of at most `piece` bytes; returns the data, the bytes
    /// consumed when Done, or the error.
    fn decode_in_pieces(input: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut decoder = ChunkedDecoder::new();
        let mut data = Vec::new();
        let mut start = 0; // first byte not consumed
        let mut end = 0; // bytes made available so far
        loop {
            match decoder.decode(&input[start..end])? {
                ChunkStep::Data {
                    consumed,
                    data: range,
                } => {
                    assert_eq!(range.end, consumed);
                    data.extend_from_slice(&input[start..end][range]);
                    start += consumed;
                }
                ChunkStep::NeedMore { consumed } => {
                    start += consumed;
                    assert_eq!(start, end);
                    if end == input.len() {
                        panic!("ran out of input after {end} bytes");
                    }
                    end = (end + piece).min(input.len());
                }
                ChunkStep::Done { consumed } => {
                    assert!(decoder.is_done());
                    return Ok((data, start + consumed));
                }
            }
        }
    }

    fn decode(input: &[u8]) -> Result<Vec<u8>, ChunkError> {
        let whole = decode_in_pieces(input, input.len().max(1));
        let bytewise = decode_in_pieces(input, 1);
        assert_eq!(whole, bytewise, "splitting changed the outcome");
        whole.map(|(data, consumed)| {
            assert_eq!(consumed, input.len());
            data
        })
    }

    #[test]
    fn decodes_chunks_and_stops_at_the_end() {
        assert_eq!(
            decode(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap(),
            b"hello world"
        );
        assert_eq!(decode(b"0\r\n\r\n").unwrap(), b"");
        assert_eq!(
            decode(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap(),
            b"0123456789"
        );
        assert_eq!(
            decode(b"000a\r\n0123456789\r\n000\r\n\r\n").unwrap(),
            b"0123456789"
        );
        let mut decoder = ChunkedDecoder::new();
        let input = b"1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
        assert!(matches!(
            decoder.decode(input),
            Ok(ChunkStep::Data { consumed: 4, .. })
        ));
        assert_eq!(
            decoder.decode(&input[4..]),
            Ok(ChunkStep::Done { consumed: 7 })
        );
        assert_eq!(
            decoder.decode(&input[11..]),
            Ok(ChunkStep::Done { consumed: 0 })
        );
    }

    /// RFC 9112 sec. 7.1: chunk-size = 1*HEXDIG, nothing else.
    #[test]
    fn rfc9112_7_1_chunk_size_is_hex_digits() {
        for bad in [
            &b"\r\nx\r\n0\r\n\r\n"[..],
            b"-1\r\nx\r\n0\r\n\r\n",
            b"+1\r\nx\r\n0\r\n\r\n",
            b" 1\r\nx\r\n0\r\n\r\n",
            b"0x1\r\nx\r\n0\r\n\r\n",
            b"1g\r\nx\r\n0\r\n\r\n",
            b"1 \r\nx\r\n0\r\n\r\n",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(
            decode(b"10000000000000000\r\n"),
            Err(ChunkError::SizeOverflow)
        );
        let mut decoder = ChunkedDecoder::new();
        assert!(matches!(
            decoder.decode(b"ffffffffffffffff\r\nab"),
            Ok(ChunkStep::Data { data, .. }) if data == (18..20)
        ));
    }

    /// RFC 9112 sec. 7.1.1: extensions are allowed, skipped, bounded, and free of controls.
    #[test]
    fn rfc9112_7_1_1_chunk_extensions() {
        assert_eq!(
            decode(b"3;name=value\r\nabc\r\n0;last\r\n\r\n").unwrap(),
            b"abc"
        );
        assert_eq!(
            decode(b"3 ; a=\"q;\\\"x\"\r\nabc\r\n0\r\n\r\n").unwrap(),
            b"abc"
        );
        assert_eq!(
            decode(b"3;a\x00\r\nabc\r\n0\r\n\r\n"),
            Err(ChunkError::InvalidExtension)
        );
        assert_eq!(
            decode(b"3;a\nabc\r\n0\r\n\r\n"),
            Err(ChunkError::InvalidExtension)
        );
        let long = [
            b"3;".as_slice(),
            &[b'x'; MAX_CHUNK_LINE],
            b"\r\nabc\r\n0\r\n\r\n",
        ]
        .concat();
        assert_eq!(decode(&long), Err(ChunkError::LineTooLong));
        let fits = [
            b"3;".as_slice(),
            &[b'x'; MAX_CHUNK_LINE - 5],
            b"\r\nabc\r\n0\r\n\r\n",
        ]
        .concat();
        assert_eq!(decode(&fits).unwrap(), b"abc");
    }

    /// RFC 9112 sec. 7.1: chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF.
    #[test]
    fn rfc9112_7_1_crlf_after_data_is_required() {
        assert_eq!(
            decode(b"3\r\nabcd\r\n0\r\n\r\n"),
            Err(ChunkError::MissingCrlf)
        );
        assert_eq!(decode(b"3\r\nabc\n0\r\n\r\n"), Err(ChunkError::MissingCrlf));
        assert_eq!(decode(b"3\nabc\r\n0\r\n\r\n"), Err(ChunkError::InvalidSize));
        assert_eq!(
            decode(b"3\r\rabc\r\n0\r\n\r\n"),
            Err(ChunkError::MissingCrlf)
        );
        assert_eq!(decode(b"0\r\n\n"), Err(ChunkError::InvalidTrailer));
        assert_eq!(decode(b"0\r\n\r\r"), Err(ChunkError::MissingCrlf));
    }

    /// RFC 9112 sec. 7.1.2: trailers are parsed as field lines, bounded, and dropped.
    #[test]
    fn rfc9112_7_1_2_trailers() {
        assert_eq!(
            decode(b"3\r\nabc\r\n0\r\nChecksum: 1234\r\nX-Empty:\r\n\r\n").unwrap(),
            b"abc"
        );
        for bad in [
            &b"0\r\n folded\r\n\r\n"[..],
            b"0\r\n: novalue\r\n\r\n",
            b"0\r\nName : v\r\n\r\n",
            b"0\r\nName: a\x00b\r\n\r\n",
            b"0\r\nName: a\nb\r\n\r\n",
            b"0\r\nName: a\r\r\n\r\n",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let big = [
            b"0\r\nX: ".as_slice(),
            &[b'v'; MAX_TRAILER_BYTES],
            b"\r\n\r\n",
        ]
        .concat();
        assert_eq!(decode(&big), Err(ChunkError::TrailersTooLarge));
    }

    /// `chunk` repeated `count` times, then `end`.
    fn repeated(chunk: &[u8], count: usize, end: &[u8]) -> Vec<u8> {
        let mut body = chunk.repeat(count);
        body.extend_from_slice(end);
        body
    }

    /// RFC 9112 sec. 7.1.1: a server ought to limit the total length of chunk extensions; the
    /// extensions of every size line and the trailers count together (the class of
    /// CVE-2023-39326 and CVE-2024-22019: endless extensions at one data byte per chunk).
    #[test]
    fn rfc9112_7_1_1_extensions_and_trailers_are_bounded_per_body() {
        // `;` and 1023 more bytes: 1 KiB of extension per chunk, far below the per-line limit.
        let chunk = [b"1;".as_slice(), &[b'x'; 1023], b"\r\na\r\n"].concat();
        let per_body = MAX_CHUNK_METADATA / 1024;
        let last = b"0\r\n\r\n";
        assert_eq!(
            decode(&repeated(&chunk, per_body - 1, last)).unwrap().len(),
            per_body - 1
        );
        assert_eq!(
            decode(&repeated(&chunk, per_body, last)),
            Err(ChunkError::MetadataTooLarge),
            "the final CRLF belongs to the trailer section"
        );
        let over = repeated(&chunk, per_body + 1, last);
        assert_eq!(decode(&over), Err(ChunkError::MetadataTooLarge));
        // However the body is cut into reads.
        assert_eq!(
            decode_in_pieces(&over, 7),
            Err(ChunkError::MetadataTooLarge)
        );
        // Whitespace before `;` counts as extension.
        let spaced = [b"1".as_slice(), &[b' '; 1023], b";\r\na\r\n"].concat();
        assert_eq!(
            decode(&repeated(&spaced, per_body + 1, last)),
            Err(ChunkError::MetadataTooLarge)
        );
        // Trailers add to the extensions before them, each below its own limit.
        let trailer = [b"0\r\nX: ".as_slice(), &[b'v'; 2000], b"\r\n\r\n"].concat();
        assert_eq!(
            decode(&repeated(&chunk, per_body - 1, &trailer)),
            Err(ChunkError::MetadataTooLarge)
        );
        assert_eq!(
            decode(&repeated(&chunk, per_body - 3, &trailer))
                .unwrap()
                .len(),
            per_body - 3
        );
    }

    #[test]
    fn errors_are_sticky() {
        let mut decoder = ChunkedDecoder::new();
        assert_eq!(decoder.decode(b"z"), Err(ChunkError::InvalidSize));
        assert_eq!(decoder.decode(b"5\r\n"), Err(ChunkError::InvalidSize));
    }

    #[test]
    fn chunk_headers_are_lowercase_hex() {
        let mut out = [0u8; MAX_CHUNK_HEADER];
        let mut header = |len: u64| {
            let n = write_chunk_header(len, &mut out).unwrap();
            String::from_utf8(out[..n].to_vec()).unwrap()
        };
        assert_eq!(header(1), "1\r\n");
        assert_eq!(header(15), "f\r\n");
        assert_eq!(header(16), "10\r\n");
        assert_eq!(header(1024), "400\r\n");
        assert_eq!(header(u64::MAX), "ffffffffffffffff\r\n");
        assert_eq!(write_chunk_header(0x100, &mut [0u8; 4]), None);
        assert_eq!(write_chunk_header(0x100, &mut [0u8; 5]), Some(5));
    }

    #[test]
    fn what_coregate_writes_decodes_back() {
        let mut framed = Vec::new();
        let mut header = [0u8; MAX_CHUNK_HEADER];
        for piece in [&b"a"[..], &[7u8; 300], b"tail"] {
            let n = write_chunk_header(piece.len() as u64, &mut header).unwrap();
            framed.extend_from_slice(&header[..n]);
            framed.extend_from_slice(piece);
            framed.extend_from_slice(CHUNK_END);
        }
        framed.extend_from_slice(LAST_CHUNK);
        let expected = [&b"a"[..], &[7u8; 300], b"tail"].concat();
        assert_eq!(decode(&framed).unwrap(), expected);
    }
}
