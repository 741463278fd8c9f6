//! HTTP/1.x as bytes in, offsets out: no I/O, no allocation.
//!
//! This module owns the wire format of HTTP/1.1 (RFC 9110, RFC 9112) for coregate: recognising
//! request and response heads, deciding how a message body is framed, decoding chunked bodies,
//! and writing heads back out. It never touches a socket, a clock or another shard's state, and
//! it never allocates: every parse result is a set of [`Span`]s into the caller's connection
//! buffer, and every encoder writes into a caller-provided `&mut [u8]`.
//!
//! | file          | owns |
//! |---------------|------|
//! | `method.rs`   | the [`Method`] vocabulary shared with the router |
//! | `scan.rs`     | [`HeadScanner`]: resumable search for the end of a head, enforcing [`Limits`] |
//! | `field.rs`    | [`Field`] and [`FieldKind`]: name classification, `Connection` options, hop-by-hop marking, `Content-Length` / `Transfer-Encoding` syntax |
//! | `target.rs`   | request-target forms (RFC 9112 sec. 3.2) and `Host` / authority syntax |
//! | `request.rs`  | [`parse_request`]: the request head and its framing decision |
//! | `response.rs` | [`parse_response`]: the response head and its framing decision |
//! | `chunked.rs`  | [`ChunkedDecoder`] and the chunk framing coregate writes itself |
//! | `encode.rs`   | [`HeadWriter`]: a cursor that writes a head into a byte slice |
//! | `canned.rs`   | coregate's own short responses (errors, `100 Continue`), and which statuses may carry `Content-Length` when coregate writes them |
//! | `proptests.rs`| (tests) whole, split and byte-by-byte input give the same result |
//!
//! How a connection task uses it, synchronously between two awaits:
//!
//! 1. read into the connection buffer, call [`parse_request`] with the connection's
//!    [`HeadScanner`] and the shard's scratch `[Field]`; `Partial` means read more;
//! 2. route on [`RequestHead::path`] and [`RequestHead::route_host`], then write the forwarded
//!    head with a [`HeadWriter`]: the request line, every field whose `hop_by_hop` is false, the
//!    regenerated framing (`content-length` or `transfer-encoding: chunked`) and the
//!    `x-forwarded-*` fields;
//! 3. relay the body as [`RequestBody`] says, re-framing chunked data with
//!    [`write_chunk_header`] / [`LAST_CHUNK`] (coregate never forwards a peer's chunk framing);
//! 4. the same for the response with [`parse_response`] and [`ResponseBody`];
//! 5. any [`RequestError`] becomes a canned response with `connection: close`.
//!
//! Spans only need to live until the forwarded head is written; the scratch field array is
//! reused by the next request on the shard.

mod canned;
mod chunked;
mod encode;
mod field;
pub mod method;
#[cfg(test)]
mod proptests;
mod request;
mod response;
mod scan;
mod target;

pub use canned::{CONTINUE_100, reason_phrase, status_allows_content_length, write_response};
pub use chunked::{
    CHUNK_END, ChunkError, ChunkStep, ChunkedDecoder, LAST_CHUNK, MAX_CHUNK_HEADER, MAX_CHUNK_LINE,
    MAX_CHUNK_METADATA, MAX_TRAILER_BYTES, write_chunk_header,
};
pub use encode::{HeadTooLarge, HeadWriter, InvalidField};
pub use field::{Field, FieldKind, MAX_CONNECTION_OPTIONS, RepeatedFields};
pub use method::{Method, MethodSet};
pub use request::{RequestBody, RequestError, RequestHead, parse_request};
pub use response::{ResponseBody, ResponseError, ResponseHead, parse_response};
pub use scan::{HeadBounds, HeadScanner, Scan, ScanError};
pub use target::TargetForm;

/// A byte range `start..end` in the caller's buffer.
///
/// Offsets are `u32` because a head is bounded by [`Limits::max_head_bytes`] (far below 4 GiB),
/// which keeps a [`Field`] at 20 bytes and the scratch array small.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: u32,
    pub end: u32,
}

impl Span {
    /// The empty span at offset 0.
    pub const EMPTY: Span = Span { start: 0, end: 0 };

    /// The span `start..end`. Callers inside this module only build spans of heads that passed
    /// the scanner, so both offsets fit in `u32`.
    pub(crate) fn new(start: usize, end: usize) -> Span {
        debug_assert!(start <= end && end <= u32::MAX as usize);
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The span of `part`, which must be a sub-slice of `buf` (as httparse hands out).
    pub(crate) fn within(buf: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
        debug_assert!(start + part.len() <= buf.len(), "slice outside the buffer");
        Span::new(start, start + part.len())
    }

    /// The bytes this span covers in `buf`. Returns an empty slice instead of panicking when the
    /// span does not fit `buf` (a span applied to the wrong buffer is a bug, not a crash).
    #[inline]
    pub fn of<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }

    pub const fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub const fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The part of this span from `offset` bytes in to the end.
    pub(crate) fn skip(self, offset: usize) -> Span {
        debug_assert!(offset <= self.len());
        Span {
            start: self.start + offset as u32,
            end: self.end,
        }
    }

    /// The first `len` bytes of this span.
    pub(crate) fn take(self, len: usize) -> Span {
        debug_assert!(len <= self.len());
        Span {
            start: self.start,
            end: self.start + len as u32,
        }
    }
}

/// The protocol version of a message. HTTP/1.x only; anything else is rejected by the parser.
/// A request of `HTTP/1.2` to `HTTP/1.9` is processed as [`Version::Http11`] (RFC 9110
/// sec. 2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    /// The version as it appears on the wire.
    pub const fn as_bytes(self) -> &'static [u8; 8] {
        match self {
            Version::Http10 => b"HTTP/1.0",
            Version::Http11 => b"HTTP/1.1",
        }
    }
}

/// The outcome of feeding bytes to a head parser. Not having the whole head yet is an expected
/// state, not an error: the caller reads more and calls again with the grown buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<T> {
    /// The end of the head has not arrived yet.
    Partial,
    /// The head is complete.
    Complete(T),
}

impl<T> Parsed<T> {
    pub fn is_partial(&self) -> bool {
        matches!(self, Parsed::Partial)
    }

    /// The parsed head, if complete.
    pub fn complete(self) -> Option<T> {
        match self {
            Parsed::Complete(head) => Some(head),
            Parsed::Partial => None,
        }
    }
}

/// Size limits on a message head. Exceeding one is the peer's fault and answered at once
/// (414 or 431 for requests), never by silently dropping bytes or fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest request line (or status line), without its CRLF.
    pub max_request_line: usize,
    /// Longest head: start line, field lines and the empty line, CRLFs included. This also
    /// bounds a single field line; there is no separate per-line limit.
    pub max_head_bytes: usize,
    /// Most field lines in one head. Also capped by the caller's field array and [`MAX_FIELDS`].
    pub max_headers: usize,
}

impl Limits {
    /// These limits for a parse into `capacity` field slots: at most as many field lines as
    /// the slots (and [`MAX_FIELDS`]) hold. More is refused, never silently truncated, so the
    /// caller sizes its slots from the configured limit.
    pub(crate) fn for_fields(&self, capacity: usize) -> Limits {
        debug_assert!(
            capacity >= self.max_headers.min(MAX_FIELDS),
            "field array smaller than the configured limit"
        );
        Limits {
            max_headers: self.max_headers.min(capacity).min(MAX_FIELDS),
            ..*self
        }
    }

    /// RFC 9112 sec. 3 recommends supporting request lines of at least 8000 octets.
    pub const DEFAULT_MAX_REQUEST_LINE: usize = 8 * 1024;
    /// Twice the request line: room for a long URL plus ordinary cookies, as NGINX's default
    /// `large_client_header_buffers` allows.
    pub const DEFAULT_MAX_HEAD_BYTES: usize = 16 * 1024;
    /// Browsers send about 15 fields; 100 is what NGINX and hyper tolerate by default.
    pub const DEFAULT_MAX_HEADERS: usize = 100;

    pub const DEFAULT: Limits = Limits {
        max_request_line: Limits::DEFAULT_MAX_REQUEST_LINE,
        max_head_bytes: Limits::DEFAULT_MAX_HEAD_BYTES,
        max_headers: Limits::DEFAULT_MAX_HEADERS,
    };
}

impl Default for Limits {
    fn default() -> Limits {
        Limits::DEFAULT
    }
}

/// The hard ceiling on field lines per head, whatever [`Limits::max_headers`] says: the parser
/// hands httparse an uninitialised array of this many slots on the stack (8 KiB, never
/// initialised, so it costs nothing per call).
pub const MAX_FIELDS: usize = 256;

/// The hard ceiling on [`Limits::max_head_bytes`]: spans are `u32`.
pub(crate) const MAX_HEAD_CAP: usize = u32::MAX as usize;

/// Bytes that may appear in a field value, a reason phrase or a chunk extension: HTAB, SP,
/// VCHAR and obs-text (RFC 9110 sec. 5.5). Everything else is a control character.
#[inline]
pub(crate) fn is_field_vchar(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

/// `tchar` (RFC 9110 sec. 5.6.2): the bytes of a token such as a method or a field name.
#[inline]
pub(crate) fn is_tchar(b: u8) -> bool {
    TCHAR[b as usize]
}

/// [`is_tchar`] as a table: one load per byte instead of a chain of comparisons.
static TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'.'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        b += 1;
    }
    table
};

/// `OWS` trimmed from both ends (RFC 9110 sec. 5.6.3).
#[inline]
pub(crate) fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn span_of_never_panics_on_a_foreign_buffer() {
        let span = Span { start: 4, end: 9 };
        assert_eq!(span.of(b"GET /index HTTP/1.1"), b"/inde");
        assert_eq!(span.of(b"short"), b"");
        assert_eq!(Span::EMPTY.of(b""), b"");
    }

    #[test]
    fn tchar_is_the_rfc_set() {
        let tchars: Vec<u8> = (0..=255u8).filter(|&b| is_tchar(b)).collect();
        assert_eq!(
            tchars,
            b"!#$%&'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`abcdefghijklmnopqrstuvwxyz|~"
        );
    }

    #[test]
    fn ows_is_trimmed_on_both_sides() {
        assert_eq!(trim_ows(b" \t chunked\t "), b"chunked");
        assert_eq!(trim_ows(b"   "), b"");
        assert_eq!(trim_ows(b"a b"), b"a b");
    }

    /// The per-connection and per-field state is as small as the docs say.
    #[test]
    fn state_stays_small() {
        assert_eq!(std::mem::size_of::<Span>(), 8);
        assert_eq!(std::mem::size_of::<Field>(), 20);
        assert_eq!(std::mem::size_of::<HeadScanner>(), 24);
        assert!(std::mem::size_of::<ChunkedDecoder>() <= 48);
    }

    #[test]
    fn default_limits_are_the_documented_ones() {
        let limits = Limits::default();
        assert_eq!(limits.max_request_line, 8192);
        assert_eq!(limits.max_head_bytes, 16384);
        assert_eq!(limits.max_headers, 100);
    }
}
