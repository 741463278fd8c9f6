//! Request-path normalisation: owns the decision of which path a request *means* before it is
//! routed and forwarded.
//!
//! Routing on raw bytes would let `/public/../admin` match a `/public/` prefix while the upstream
//! resolves it to `/admin`. So the router only ever sees the normal form produced here, and the
//! proxy forwards that same normal form upstream (followed by the untouched `?query`): what
//! coregate routed is exactly what the upstream receives. This module does no routing and
//! no I/O; it turns bytes into bytes.
//!
//! # Steps (RFC 3986 sec. 6.2.2, applied per `/`-separated segment)
//!
//! The input is the origin-form path: the request target up to, not including, `?`. The HTTP/1
//! parser has already refused bytes that may not appear in a request target.
//!
//! 1. The path must start with `/`; anything else is [`NormalizeError::NotOriginForm`], except
//!    the empty path of an absolute-form target without one (`GET http://example.com HTTP/1.1`),
//!    which is `/` (RFC 9110 sec. 4.2.3: for http(s) URIs an empty path is equivalent to `/`).
//!    A raw `\` anywhere in the path is [`NormalizeError::Backslash`]. RFC 3986 does not allow
//!    it in a URI at all, and servers disagree on what it is: IIS, the WHATWG URL parser (Node,
//!    browsers) and GURL-based normalisers read it as `/`, so `/public\..\admin` is `/admin`
//!    to them and a segment named `public\..\admin` to everyone else. Reading it as `/` here
//!    would only be safe if the forwarded path were rewritten the same way and every upstream
//!    agreed; an edge that cannot know which server is behind a route refuses it instead, as
//!    it refuses the encoded `%5C` in step 2.
//! 2. Percent-encoding normalisation (sec. 6.2.2.2): `%XX` of an unreserved character
//!    (`ALPHA / DIGIT / "-" / "." / "_" / "~"`) is decoded (`%41` -> `A`, `%2e` -> `.`); every
//!    other escape is kept, with its hex digits uppercased (`%3a` -> `%3A`) so that one
//!    resource has one spelling. Refused with an error (the proxy answers 400):
//!    - a `%` not followed by two hex digits (`%G1`, a trailing `%4`);
//!    - `%2F` and `%5C`, an encoded `/` or `\`: the upstream may or may not decode them into
//!      separators, so no single answer to "which path is this" exists (Envoy's
//!      `REJECT_REQUEST` for escaped slashes);
//!    - `%00`, which truncates paths in C-based upstreams.
//! 3. Empty segments are removed (`//a///b` -> `/a/b`), except a trailing one: `/a/` and `/a`
//!    stay different paths, as they are for every origin server.
//! 4. Dot segments are removed (sec. 6.2.2.3, the algorithm of sec. 5.2.4), including those that
//!    only appear after step 2 (`/%2e%2e/admin` -> `/admin`). `..` at the root stays at the
//!    root (`/a/../../b` -> `/b`). A final `.` or `..` leaves a trailing slash (`/a/b/..` ->
//!    `/a/`), as sec. 5.2.4 does.
//! 5. A segment that would be a dot segment once a `;params` suffix is cut off (`..;`,
//!    `..;jsessionid=1`, `.;x`) is refused with [`NormalizeError::DotSegmentWithParams`].
//!    Servlet containers (Tomcat, Jetty) cut path parameters before resolving dot segments, so
//!    `/public/..;/admin` is `/admin` to them but `/public/..;/admin` to everyone else. Rather
//!    than guess which kind of upstream is behind a route, coregate refuses the request: no
//!    legitimate client sends such a segment. A segment that is nothing but parameters (`/;x/a`)
//!    is refused for the same reason ([`NormalizeError::EmptySegmentWithParams`]): cut, it
//!    leaves an empty segment that servlet containers drop and the router would not. Other `;`
//!    uses (`/a;v=1/b`) stay in the normal form and are forwarded as sent; the router matches
//!    each segment without its parameters (see [`super`]).
//!
//! # Cost
//!
//! Most paths are already normal. [`normalize_path`] first checks for the only bytes that can
//! make a difference: a `%`, or a `/` followed by `/` or `.`, in one pass. Without them it returns
//! [`Normalized::Unchanged`] and the caller routes and forwards the original bytes, no copy. The
//! slow path writes into `out`, a per-shard scratch buffer: the output is never longer than the
//! input, so once `out` has the capacity of the longest accepted request target (reserve it at
//! shard start) normalisation allocates nothing.

use std::fmt;

use memchr::{memchr, memrchr};

use crate::error::{Error, ErrorKind, Side};

/// Where the normal form of a path is, after [`normalize_path`] succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalized {
    /// The input was already normal. Route and forward the original bytes; `out` is untouched.
    Unchanged,
    /// `out` holds the normal form. Route on it and forward it in place of the original path.
    Rewritten,
}

/// Why a path was refused. Every variant is the client's fault and maps to 400 Bad Request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NormalizeError {
    /// The path does not start with `/`.
    NotOriginForm,
    /// A `%` not followed by two hex digits.
    InvalidEscape,
    /// `%2F` or `%5C`: an encoded path separator.
    EncodedSeparator,
    /// `%00`.
    EncodedNul,
    /// `..;x` or `.;x`: a dot segment hidden behind path parameters.
    DotSegmentWithParams,
    /// `/;x`: a segment with parameters and no name.
    EmptySegmentWithParams,
    /// A raw `\`, which some servers read as `/`.
    Backslash,
}

impl NormalizeError {
    pub const fn as_str(self) -> &'static str {
        match self {
            NormalizeError::NotOriginForm => "request path does not start with '/'",
            NormalizeError::InvalidEscape => {
                "request path has a '%' not followed by two hex digits"
            }
            NormalizeError::EncodedSeparator => "request path has an encoded '/' or '\\'",
            NormalizeError::EncodedNul => "request path has an encoded NUL byte",
            NormalizeError::DotSegmentWithParams => {
                "request path has a dot segment with parameters ('..;')"
            }
            NormalizeError::EmptySegmentWithParams => {
                "request path has a segment of parameters only ('/;')"
            }
            NormalizeError::Backslash => "request path has a '\\'",
        }
    }
}

impl fmt::Display for NormalizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for NormalizeError {}

impl From<NormalizeError> for Error {
    /// A path that cannot be normalised is a malformed request: the client's fault, answered 400.
    fn from(err: NormalizeError) -> Error {
        Error::new(ErrorKind::Protocol, Side::Downstream, err.as_str())
    }
}

/// Normalises an origin-form path (without its query) as the module doc describes.
///
/// On [`Normalized::Rewritten`] the normal form is in `out` (cleared first); on
/// [`Normalized::Unchanged`] `raw` already is the normal form and `out` is left as it was.
pub fn normalize_path(raw: &[u8], out: &mut Vec<u8>) -> Result<Normalized, NormalizeError> {
    // Step 1.
    if raw.is_empty() {
        out.clear();
        out.push(b'/');
        return Ok(Normalized::Rewritten);
    }
    if raw.first() != Some(&b'/') {
        return Err(NormalizeError::NotOriginForm);
    }
    if is_normal(raw) {
        return Ok(Normalized::Unchanged);
    }
    // Also step 1: the fast path sent every path holding a `\` here.
    if memchr(b'\\', raw).is_some() {
        return Err(NormalizeError::Backslash);
    }
    out.clear();
    // Decoding only shrinks and step 4 only removes, so this is the most the output needs; a
    // no-op once the scratch buffer has grown to the longest accepted target.
    out.reserve(raw.len());

    let mut rest = &raw[1..];
    loop {
        let (segment, last) = match memchr(b'/', rest) {
            Some(slash) => {
                let segment = &rest[..slash];
                rest = &rest[slash + 1..];
                (segment, false)
            }
            None => (rest, true),
        };
        // Decode the segment in place at the end of `out`, then decide whether it stays.
        let mark = out.len();
        out.push(b'/');
        decode_segment(segment, out)?;
        match classify(&out[mark + 1..]) {
            Segment::Name => {}
            // Step 3: `/` was pushed for the empty segment; a trailing one is kept.
            Segment::Empty => {
                if !last {
                    out.truncate(mark);
                }
            }
            // Step 4.
            Segment::Dot => {
                out.truncate(mark);
                if last {
                    out.push(b'/');
                }
            }
            Segment::DotDot => {
                out.truncate(mark);
                // Drop the previous segment; at the root `out` is empty and stays so.
                let parent = memrchr(b'/', out).unwrap_or(0);
                out.truncate(parent);
                if last {
                    out.push(b'/');
                }
            }
            // Step 5.
            Segment::DotWithParams => return Err(NormalizeError::DotSegmentWithParams),
            Segment::EmptyWithParams => return Err(NormalizeError::EmptySegmentWithParams),
        }
        if last {
            break;
        }
    }
    debug_assert!(out.first() == Some(&b'/'), "a normal path starts with '/'");
    Ok(Normalized::Rewritten)
}

/// True when no step can change or refuse `path`: no escape, no `\`, no empty segment, no
/// segment starting with `.` (which covers `.`, `..` and `..;`) or `;`. Some normal paths
/// (`/.well-known/x`) take the slow path, which then reproduces them byte for byte.
///
/// One plain pass: for request paths of typical length (tens of bytes) it measured faster than
/// a memchr for `%` followed by a memchr walk over the slashes, whose per-call set-up dominates.
fn is_normal(path: &[u8]) -> bool {
    let mut after_slash = false;
    for &byte in path {
        if byte == b'%' || byte == b'\\' || (after_slash && matches!(byte, b'/' | b'.' | b';')) {
            return false;
        }
        after_slash = byte == b'/';
    }
    true
}

/// Step 2 for one segment, appending the result to `out`.
fn decode_segment(segment: &[u8], out: &mut Vec<u8>) -> Result<(), NormalizeError> {
    let mut rest = segment;
    while let Some(percent) = memchr(b'%', rest) {
        out.extend_from_slice(&rest[..percent]);
        let (high, low) = match (
            rest.get(percent + 1).copied().and_then(hex_value),
            rest.get(percent + 2).copied().and_then(hex_value),
        ) {
            (Some(high), Some(low)) => (high, low),
            _ => return Err(NormalizeError::InvalidEscape),
        };
        match high << 4 | low {
            0 => return Err(NormalizeError::EncodedNul),
            b'/' | b'\\' => return Err(NormalizeError::EncodedSeparator),
            byte if is_unreserved(byte) => out.push(byte),
            _ => out.extend_from_slice(&[b'%', HEX_UPPER[high as usize], HEX_UPPER[low as usize]]),
        }
        rest = &rest[percent + 3..];
    }
    out.extend_from_slice(rest);
    Ok(())
}

/// What a decoded segment is, for steps 3 to 5.
enum Segment {
    Name,
    Empty,
    Dot,
    DotDot,
    DotWithParams,
    EmptyWithParams,
}

fn classify(segment: &[u8]) -> Segment {
    match segment {
        b"" => Segment::Empty,
        b"." => Segment::Dot,
        b".." => Segment::DotDot,
        _ => {
            // Path parameters start at the first `;` (RFC 2396 sec. 3.3, as servlet containers
            // read it).
            let base = memchr(b';', segment).map_or(segment, |semi| &segment[..semi]);
            match base {
                b"." | b".." => Segment::DotWithParams,
                b"" => Segment::EmptyWithParams,
                _ => Segment::Name,
            }
        }
    }
}

const HEX_UPPER: [u8; 16] = *b"0123456789ABCDEF";

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// RFC 3986 sec. 2.3.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The normal form as a string, whichever way it was produced.
    fn normal(raw: &str) -> Result<String, NormalizeError> {
        let mut out = Vec::new();
        let bytes = match normalize_path(raw.as_bytes(), &mut out)? {
            Normalized::Unchanged => raw.as_bytes().to_vec(),
            Normalized::Rewritten => out,
        };
        Ok(String::from_utf8(bytes).expect("normal form of ASCII is ASCII"))
    }

    #[test]
    fn normal_paths_take_the_fast_path() {
        let mut out = b"untouched".to_vec();
        for path in ["/", "/a", "/api/v1/users/42", "/a/", "/a;v=1/b", "/a.b/c."] {
            assert_eq!(
                normalize_path(path.as_bytes(), &mut out),
                Ok(Normalized::Unchanged),
                "{path}"
            );
        }
        assert_eq!(out, b"untouched");
    }

    #[test]
    fn slow_path_reproduces_paths_that_were_normal() {
        let mut out = Vec::new();
        assert_eq!(
            normalize_path(b"/.well-known/acme", &mut out),
            Ok(Normalized::Rewritten)
        );
        assert_eq!(out, b"/.well-known/acme");
    }

    #[test]
    fn dot_segments_cannot_escape_their_parent() {
        assert_eq!(normal("/api/../admin").as_deref(), Ok("/admin"));
        assert_eq!(normal("/%2e%2e/admin").as_deref(), Ok("/admin"));
        assert_eq!(normal("/api/%2E%2e/admin").as_deref(), Ok("/admin"));
        assert_eq!(normal("/api/.%2e/admin").as_deref(), Ok("/admin"));
        assert_eq!(normal("/a/%2E/b").as_deref(), Ok("/a/b"));
        assert_eq!(normal("/a/./b").as_deref(), Ok("/a/b"));
        assert_eq!(normal("/a/b/../../../c").as_deref(), Ok("/c"));
        assert_eq!(normal("/../../etc/passwd").as_deref(), Ok("/etc/passwd"));
        assert_eq!(normal("/..").as_deref(), Ok("/"));
        assert_eq!(normal("/.").as_deref(), Ok("/"));
    }

    #[test]
    fn final_dot_segments_leave_a_trailing_slash() {
        assert_eq!(normal("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(normal("/a/b/.").as_deref(), Ok("/a/b/"));
        assert_eq!(normal("/a/b/./").as_deref(), Ok("/a/b/"));
    }

    #[test]
    fn duplicate_slashes_collapse_and_a_trailing_slash_stays() {
        assert_eq!(normal("//a///b").as_deref(), Ok("/a/b"));
        assert_eq!(normal("//").as_deref(), Ok("/"));
        assert_eq!(normal("/a//").as_deref(), Ok("/a/"));
        assert_eq!(normal("/a/..//b").as_deref(), Ok("/b"));
    }

    #[test]
    fn unreserved_escapes_decode_and_others_are_uppercased() {
        assert_eq!(normal("/%41%7e%2D%5f").as_deref(), Ok("/A~-_"));
        assert_eq!(normal("/caf%c3%a9").as_deref(), Ok("/caf%C3%A9"));
        assert_eq!(normal("/a%3ab%20c").as_deref(), Ok("/a%3Ab%20c"));
        // `%25` is `%` itself: it stays an escape, so decoding happens exactly once.
        assert_eq!(normal("/%252e%252e/x").as_deref(), Ok("/%252e%252e/x"));
        // An encoded `;` is data, not a parameter delimiter.
        assert_eq!(normal("/a/..%3B/b").as_deref(), Ok("/a/..%3B/b"));
    }

    #[test]
    fn ambiguous_escapes_are_refused() {
        assert_eq!(normal("/a%2fb"), Err(NormalizeError::EncodedSeparator));
        assert_eq!(normal("/a%2Fb"), Err(NormalizeError::EncodedSeparator));
        assert_eq!(normal("/a%5cb"), Err(NormalizeError::EncodedSeparator));
        assert_eq!(normal("/a%00"), Err(NormalizeError::EncodedNul));
    }

    #[test]
    fn broken_escapes_are_refused() {
        assert_eq!(normal("/%G1"), Err(NormalizeError::InvalidEscape));
        assert_eq!(normal("/%4"), Err(NormalizeError::InvalidEscape));
        assert_eq!(normal("/%4/x"), Err(NormalizeError::InvalidEscape));
        assert_eq!(normal("/%"), Err(NormalizeError::InvalidEscape));
        assert_eq!(normal("/a%1"), Err(NormalizeError::InvalidEscape));
    }

    #[test]
    fn dot_segments_with_parameters_are_refused() {
        assert_eq!(
            normal("/api/..;/admin"),
            Err(NormalizeError::DotSegmentWithParams)
        );
        assert_eq!(
            normal("/api/..;jsessionid=1/admin"),
            Err(NormalizeError::DotSegmentWithParams)
        );
        assert_eq!(
            normal("/api/.;x/admin"),
            Err(NormalizeError::DotSegmentWithParams)
        );
        assert_eq!(
            normal("/api/%2e%2e;/admin"),
            Err(NormalizeError::DotSegmentWithParams)
        );
        assert_eq!(normal("/api/..a;/b").as_deref(), Ok("/api/..a;/b"));
    }

    /// A raw `\` is `/` to IIS and WHATWG parsers and data to everyone else: refused wherever
    /// it is, like the encoded `%5C`.
    #[test]
    fn raw_backslashes_are_refused() {
        for raw in ["/public\\..\\admin", "/a\\b", "/a/\\", "/%41\\"] {
            assert_eq!(normal(raw), Err(NormalizeError::Backslash), "{raw}");
        }
    }

    /// A segment of parameters only is empty to a servlet container, which then drops it.
    #[test]
    fn segments_of_parameters_only_are_refused() {
        for raw in ["/;x/admin", "/a/;/b", "/a/;jsessionid=1", "//;x"] {
            assert_eq!(
                normal(raw),
                Err(NormalizeError::EmptySegmentWithParams),
                "{raw}"
            );
        }
        assert_eq!(normal("/a;x/b;y").as_deref(), Ok("/a;x/b;y"));
    }

    #[test]
    fn only_origin_form_is_accepted() {
        assert_eq!(normal("*"), Err(NormalizeError::NotOriginForm));
        assert_eq!(normal("a/b"), Err(NormalizeError::NotOriginForm));
    }

    /// RFC 9110 sec. 4.2.3: `http://example.com` and `http://example.com/` name the same
    /// resource; the parser hands an absolute-form target without a path over as an empty path.
    #[test]
    fn an_empty_path_is_the_root() {
        let mut out = b"stale".to_vec();
        assert_eq!(normalize_path(b"", &mut out), Ok(Normalized::Rewritten));
        assert_eq!(out, b"/");
    }

    #[test]
    fn the_scratch_buffer_stops_growing() {
        let mut out = Vec::with_capacity(64);
        let capacity = out.capacity();
        for raw in ["/a/../b", "//x//y//", "/%41%42/%2e/c"] {
            normalize_path(raw.as_bytes(), &mut out).expect("valid path");
            assert_eq!(out.capacity(), capacity);
        }
    }

    use proptest::strategy::Strategy;

    proptest::proptest! {
        /// Normalising is idempotent, and its output takes the fast path.
        #[test]
        fn normal_form_is_a_fixed_point(raw in proptest::collection::vec(
            proptest::sample::select(vec![
                "a", "B", "/", "/", ".", "..", "%2e", "%2E", "%41", "%7e", "%3a", "%25", "%20",
                ";", "~", "%", "%4",
            ]),
            0..12,
        ).prop_map(|tokens| format!("/{}", tokens.concat()))) {
            let mut out = Vec::new();
            if let Ok(outcome) = normalize_path(raw.as_bytes(), &mut out) {
                let once = match outcome {
                    Normalized::Unchanged => raw.as_bytes().to_vec(),
                    Normalized::Rewritten => out.clone(),
                };
                let mut again = Vec::new();
                let second = normalize_path(&once, &mut again);
                let is_fast = second == Ok(Normalized::Unchanged);
                let reproduced = second == Ok(Normalized::Rewritten) && again == once;
                proptest::prop_assert!(is_fast || reproduced, "{:?} -> {:?}", raw, once);
                // No empty, `.` or `..` segment is left, except the empty one after a final `/`.
                let segments: Vec<&[u8]> = once[1..].split(|&b| b == b'/').collect();
                for (i, segment) in segments.iter().enumerate() {
                    let last = i + 1 == segments.len();
                    proptest::prop_assert!(
                        !matches!(*segment, b"." | b"..") && (last || !segment.is_empty()),
                        "{:?} -> {:?}", raw, once
                    );
                }
            }
        }

        /// Any bytes at all give a result or an error, never a panic, and a result that starts
        /// with `/`.
        #[test]
        fn arbitrary_bytes_do_not_panic(raw in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut out = Vec::new();
            if let Ok(Normalized::Rewritten) = normalize_path(&raw, &mut out) {
                proptest::prop_assert_eq!(out.first(), Some(&b'/'));
            }
        }
    }
}
