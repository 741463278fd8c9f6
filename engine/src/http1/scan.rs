//! The end-of-head scanner: finds where a request or response head ends in a buffer that grows
//! one read at a time, without searching the same bytes twice, and enforces [`Limits`] while it
//! searches so an oversized head is refused before it is complete.
//!
//! It owns line boundaries only. What the lines say is httparse's and `field.rs`'s business;
//! the scanner runs first so that httparse parses a head exactly once, when all of it is there.
//!
//! Line endings: RFC 9112 sec. 2.2 lets a recipient accept a bare LF as a line terminator.
//! coregate does not: a bare LF is refused (400), because a proxy that splits lines differently
//! from the server behind it is the classic request-smuggling setup, and no conforming client
//! sends one. A bare CR is refused by httparse (RFC 9112 sec. 2.2 allows that too).

use memchr::memchr_iter;

use super::{Limits, MAX_HEAD_CAP, Span};

/// Per-connection scanner state: how far the buffer has been searched and what was seen there.
/// 24 bytes, `Default` for a fresh message.
///
/// Contract: between two calls the caller may only append to the buffer; the message must start
/// at offset 0 of the slice each time. After `Complete` (and after an error) the scanner resets
/// itself, ready for the next message, which the caller passes starting at its own offset 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeadScanner {
    /// Offset up to which the buffer has been searched for LF; the next call starts here.
    searched: u32,
    /// Offset where the line being read starts (just after the last LF found).
    line_start: u32,
    /// Offset of the start line (request or status line): empty lines before it are skipped,
    /// as RFC 9112 sec. 2.2 asks of a server.
    start_line: u32,
    /// Offset of the CR ending the start line, once that line is complete.
    start_line_end: u32,
    /// Whether the start line is complete.
    start_line_done: bool,
    /// Field lines seen so far.
    fields: u32,
}

/// What a scan found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// No empty line yet: read more and scan again.
    Partial,
    /// The head ends here.
    Complete(HeadBounds),
}

/// Where a complete head lies in the buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadBounds {
    /// The request or status line, without CRLF.
    pub start_line: Span,
    /// Bytes of the head, including leading empty lines and the final empty line's CRLF.
    pub head_len: usize,
    /// Number of field lines.
    pub fields: usize,
}

/// Why a head was refused while scanning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanError {
    /// A LF not preceded by CR.
    BareLf,
    /// The start line is longer than [`Limits::max_request_line`] (414 for a request).
    StartLineTooLong,
    /// The head is longer than [`Limits::max_head_bytes`] (431 for a request).
    HeadTooLarge,
    /// More field lines than [`Limits::max_headers`] (431 for a request).
    TooManyFields,
}

impl HeadScanner {
    pub fn new() -> HeadScanner {
        HeadScanner::default()
    }

    /// Forget everything: the next call starts a new message.
    pub fn reset(&mut self) {
        *self = HeadScanner::default();
    }

    /// Whether any bytes of a head have been seen (leading empty lines do not count). A
    /// connection closed in this state closed mid-request, not between requests.
    pub fn in_progress(&self) -> bool {
        self.searched > self.start_line
    }

    /// Searches `buf` (the whole message so far, starting at offset 0) for the end of the head.
    /// Only bytes not searched by an earlier call are looked at, and never more than
    /// `max_head_bytes` of them.
    pub fn scan(&mut self, buf: &[u8], limits: &Limits) -> Result<Scan, ScanError> {
        let result = self.scan_inner(buf, limits);
        if !matches!(result, Ok(Scan::Partial)) {
            self.reset();
        }
        result
    }

    fn scan_inner(&mut self, buf: &[u8], limits: &Limits) -> Result<Scan, ScanError> {
        if self.searched as usize > buf.len() {
            // The caller broke the contract (the buffer shrank). Start over rather than index
            // out of bounds: the worst outcome is a rescan.
            debug_assert!(false, "head buffer shrank between scans");
            self.reset();
        }
        let max_head = limits.max_head_bytes.min(MAX_HEAD_CAP);
        // A LF beyond `max_head` cannot end an acceptable head, so never search past it: a peer
        // streaming megabytes without an empty line costs at most `max_head` bytes of search.
        let window = &buf[..buf.len().min(max_head)];
        let from = self.searched as usize;

        // One iterator for all the line ends: memchr's set-up is paid once per call, not once
        // per line, which matters for the short lines of typical heads.
        for found in memchr_iter(b'\n', &window[from..]) {
            let lf = from + found;
            let line_start = self.line_start as usize;
            // An overlong start line is refused before its line end is looked at: a peer whose
            // bytes arrive in smaller reads gets the 414 as soon as the line passes the limit
            // (see the end of this function), so the whole-buffer answer must be the same.
            if !self.start_line_done {
                let has_cr = lf > line_start && window[lf - 1] == b'\r';
                if lf - line_start - usize::from(has_cr) > limits.max_request_line {
                    return Err(ScanError::StartLineTooLong);
                }
            }
            // Every line must end in CRLF. When the line is empty, `lf - 1` is the previous
            // line's LF (or there is no byte at all), so `\n\n` is caught here too.
            if lf == 0 || window[lf - 1] != b'\r' {
                return Err(ScanError::BareLf);
            }
            let cr = lf - 1;
            let line_len = cr - line_start;
            let pos = lf + 1;
            self.line_start = pos as u32;

            if !self.start_line_done {
                if line_len == 0 {
                    // An empty line before the start line (a stray CRLF after the previous
                    // message's body): skip it. They still count towards `max_head_bytes`.
                    self.start_line = pos as u32;
                    continue;
                }
                self.start_line_done = true;
                self.start_line_end = cr as u32;
            } else if line_len == 0 {
                return Ok(Scan::Complete(HeadBounds {
                    start_line: Span {
                        start: self.start_line,
                        end: self.start_line_end,
                    },
                    head_len: pos,
                    fields: self.fields as usize,
                }));
            } else {
                self.fields += 1;
                if self.fields as usize > limits.max_headers {
                    return Err(ScanError::TooManyFields);
                }
            }
        }

        // No end yet. Refuse as early as the limits allow rather than waiting for the peer.
        self.searched = window.len() as u32;
        if !self.start_line_done {
            // The unfinished start line may end in the CR of its CRLF; that byte is not part of
            // the line.
            let pending = &window[self.start_line as usize..];
            let pending_len = pending.len() - usize::from(pending.last() == Some(&b'\r'));
            if pending_len > limits.max_request_line {
                return Err(ScanError::StartLineTooLong);
            }
        }
        if buf.len() >= max_head {
            return Err(ScanError::HeadTooLarge);
        }
        Ok(Scan::Partial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits::DEFAULT;

    fn scan_whole(buf: &[u8], limits: &Limits) -> Result<Scan, ScanError> {
        HeadScanner::default().scan(buf, limits)
    }

    fn complete(buf: &[u8]) -> HeadBounds {
        match scan_whole(buf, &LIMITS) {
            Ok(Scan::Complete(bounds)) => bounds,
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    #[test]
    fn finds_the_end_of_a_head_and_counts_fields() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\nbody";
        let bounds = complete(buf);
        assert_eq!(bounds.head_len, buf.len() - 4);
        assert_eq!(bounds.fields, 2);
        assert_eq!(bounds.start_line.of(buf), b"GET / HTTP/1.1");
    }

    #[test]
    fn resumes_where_it_stopped() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut scanner = HeadScanner::default();
        for end in 0..buf.len() {
            assert_eq!(scanner.scan(&buf[..end], &LIMITS), Ok(Scan::Partial));
            assert_eq!(
                scanner.searched as usize, end,
                "searched everything offered"
            );
        }
        assert_eq!(
            scanner.scan(buf, &LIMITS),
            Ok(Scan::Complete(complete(buf)))
        );
        assert_eq!(scanner, HeadScanner::default(), "reset after completing");
    }

    /// RFC 9112 sec. 2.2: a server SHOULD ignore at least one empty line before the request line.
    #[test]
    fn rfc9112_2_2_skips_leading_empty_lines() {
        let buf = b"\r\n\r\nGET / HTTP/1.1\r\n\r\n";
        let bounds = complete(buf);
        assert_eq!(bounds.start_line.of(buf), b"GET / HTTP/1.1");
        assert_eq!(bounds.head_len, buf.len());
        assert_eq!(bounds.fields, 0);
    }

    /// RFC 9112 sec. 2.2 allows accepting bare LF; coregate refuses it everywhere in a head.
    #[test]
    fn rfc9112_2_2_bare_lf_is_refused() {
        for buf in [
            &b"GET / HTTP/1.1\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: a\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n\n",
            b"\nGET / HTTP/1.1\r\n\r\n",
            b"\n",
        ] {
            assert_eq!(scan_whole(buf, &LIMITS), Err(ScanError::BareLf), "{buf:?}");
        }
    }

    #[test]
    fn a_long_request_line_is_refused_before_it_ends() {
        let limits = Limits {
            max_request_line: 16,
            ..LIMITS
        };
        // Exactly at the limit, unfinished: fine, even with the CR already there.
        assert_eq!(scan_whole(b"GET /0123456789 ", &limits), Ok(Scan::Partial));
        assert_eq!(
            scan_whole(b"GET /0123456789 \r", &limits),
            Ok(Scan::Partial)
        );
        assert_eq!(
            scan_whole(b"GET /0123456789 H", &limits),
            Err(ScanError::StartLineTooLong)
        );
        assert_eq!(
            scan_whole(b"GET /0123456789 H\r\n\r\n", &limits),
            Err(ScanError::StartLineTooLong)
        );
        assert!(matches!(
            scan_whole(b"GET /0123456789 \r\n\r\n", &limits),
            Ok(Scan::Complete(_))
        ));
    }

    /// The answer must not depend on how the bytes were split into reads: an overlong start
    /// line ended by a bare LF is a 414 whether the LF arrives with it or after a read that
    /// already passed the limit (found by the `request_split` fuzz target).
    #[test]
    fn an_overlong_start_line_is_414_however_it_ends() {
        let limits = Limits {
            max_request_line: 16,
            ..LIMITS
        };
        let line = b"GET /0123456789abcdef HTTP/1.1\nHost: a\r\n\r\n";
        assert_eq!(scan_whole(line, &limits), Err(ScanError::StartLineTooLong));
        let mut scanner = HeadScanner::default();
        assert_eq!(
            scanner.scan(&line[..20], &limits),
            Err(ScanError::StartLineTooLong)
        );
        // At the limit, a bare LF is still a bare LF.
        assert_eq!(
            scan_whole(b"GET /0123456789 \n\r\n", &limits),
            Err(ScanError::BareLf)
        );
    }

    #[test]
    fn a_head_over_the_limit_is_refused_without_an_end() {
        let limits = Limits {
            max_head_bytes: 32,
            ..LIMITS
        };
        let fits = b"GET / HTTP/1.1\r\nX: 012345678\r\n\r\n";
        assert_eq!(fits.len(), 32);
        assert!(matches!(
            scan_whole(fits, &limits),
            Ok(Scan::Complete(b)) if b.head_len == 32
        ));
        let over = b"GET / HTTP/1.1\r\nX: 0123456789\r\n\r\n";
        assert_eq!(scan_whole(over, &limits), Err(ScanError::HeadTooLarge));
        // Unfinished at exactly the limit: it can no longer end in time.
        assert_eq!(
            scan_whole(&over[..32], &limits),
            Err(ScanError::HeadTooLarge)
        );
        assert_eq!(scan_whole(&over[..31], &limits), Ok(Scan::Partial));
        // No LF at all, a megabyte of it: refused, having searched only the window.
        let flood = vec![b'a'; 1 << 20];
        let mut scanner = HeadScanner::default();
        assert_eq!(scanner.scan(&flood, &limits), Err(ScanError::HeadTooLarge));
    }

    #[test]
    fn too_many_fields_are_refused_while_scanning() {
        let limits = Limits {
            max_headers: 2,
            ..LIMITS
        };
        assert!(matches!(
            scan_whole(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\n\r\n", &limits),
            Ok(Scan::Complete(_))
        ));
        assert_eq!(
            scan_whole(b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\n", &limits),
            Err(ScanError::TooManyFields)
        );
    }

    #[test]
    fn in_progress_ignores_leading_empty_lines() {
        let mut scanner = HeadScanner::default();
        assert_eq!(scanner.scan(b"\r\n", &LIMITS), Ok(Scan::Partial));
        assert!(!scanner.in_progress());
        assert_eq!(scanner.scan(b"\r\nG", &LIMITS), Ok(Scan::Partial));
        assert!(scanner.in_progress());
    }
}
