//! Response heads: [`parse_response`] turns the bytes of an upstream's response head into a
//! [`ResponseHead`] of spans, or into a [`ResponseError`] (which the proxy answers with 502 and
//! by closing the upstream connection).
//!
//! It owns the response-side rules of RFC 9112: the status line, the body framing decision in
//! the order of sec. 6.3, and whether the upstream connection can go back to the pool. Upstreams
//! are coregate's own backends, but a confused one must not desynchronise a pooled connection,
//! so framing is read as strictly as on the request side; leniency is kept to what cannot
//! affect framing (a missing reason phrase, for instance).

use std::mem::MaybeUninit;

use super::field::{self, ContentLength, Field, FieldError, TransferEncoding};
use super::scan::{HeadScanner, Scan, ScanError};
use super::{Limits, MAX_FIELDS, Method, Parsed, Span, Version};
use crate::error::{Error, ErrorKind, Side};

/// How the response body is framed (RFC 9112 sec. 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseBody {
    /// No body, whatever the fields say: a response to HEAD, a 1xx, 204 or 304, or a 2xx to
    /// CONNECT (after which the connection is a tunnel).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked; decode with a `ChunkedDecoder`.
    Chunked,
    /// The body runs until the upstream closes the connection.
    CloseDelimited,
}

/// A parsed response head. Spans point into the buffer given to [`parse_response`]; the fields
/// are in `fields[..field_count]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub version: Version,
    /// The reason phrase as sent (possibly empty).
    pub reason: Span,
    /// Bytes of the head, final CRLF included.
    pub head_len: usize,
    pub field_count: usize,
    pub body: ResponseBody,
    /// The valid `Content-Length` value, if any. With `body: None` this is metadata the caller
    /// forwards for HEAD and 304 (RFC 9110 sec. 8.6); with a body it equals `Length`.
    pub content_length: Option<u64>,
    /// Whether the upstream connection may carry another request after this response's body,
    /// as far as the head says: false for `Connection: close`, HTTP/1.0 without keep-alive,
    /// close-delimited bodies, protocol switches and tunnels, and responses that sent both
    /// `Content-Length` and `Transfer-Encoding`.
    pub keep_alive: bool,
    /// For a 101: the protocol switched to, when `Connection` lists `upgrade`.
    pub upgrade: Option<Span>,
}

impl ResponseHead {
    /// Whether this is an interim (1xx) response other than 101: a final response follows on
    /// the same connection.
    pub fn is_interim(&self) -> bool {
        (100..200).contains(&self.status) && self.status != 101
    }
}

/// Why an upstream response was refused. The caller answers the client 502 and closes the
/// upstream connection (RFC 9112 sec. 6.3 step 5 asks exactly that for bad framing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseError {
    pub reason: &'static str,
}

impl ResponseError {
    /// The status coregate answers the client with.
    pub const STATUS: u16 = 502;
}

impl From<ResponseError> for Error {
    fn from(err: ResponseError) -> Error {
        Error::new(ErrorKind::Protocol, Side::Upstream, err.reason)
    }
}

impl From<ScanError> for ResponseError {
    fn from(err: ScanError) -> ResponseError {
        ResponseError {
            reason: match err {
                ScanError::BareLf => "upstream line not ended by CRLF",
                ScanError::StartLineTooLong => "upstream status line too long",
                ScanError::HeadTooLarge => "upstream response head too large",
                ScanError::TooManyFields => "too many upstream header fields",
            },
        }
    }
}

const fn err(reason: &'static str) -> ResponseError {
    ResponseError { reason }
}

/// Parses the response head at the start of `buf`, for a request made with `request_method`
/// (HEAD and CONNECT change the framing). Same contract as `parse_request`: call again with the
/// grown buffer on `Partial`; the scanner resets itself on completion.
pub fn parse_response(
    buf: &[u8],
    scanner: &mut HeadScanner,
    limits: &Limits,
    fields: &mut [Field],
    request_method: Method,
) -> Result<Parsed<ResponseHead>, ResponseError> {
    let limits = limits.for_fields(fields.len());
    let max_fields = limits.max_headers;
    let bounds = match scanner.scan(buf, &limits)? {
        Scan::Partial => return Ok(Parsed::Partial),
        Scan::Complete(bounds) => bounds,
    };
    let head = &buf[..bounds.head_len];

    // See parse_request: uninitialised slots on the stack cost nothing per call.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut []);
    // The default configuration is the strict one: no obs-fold, no space before the colon,
    // no skipping of invalid lines, single spaces in the status line.
    match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        head,
        &mut slots[..max_fields],
    ) {
        Ok(httparse::Status::Complete(len)) if len == bounds.head_len => {}
        Ok(_) => return Err(err("malformed upstream response head")),
        Err(httparse::Error::TooManyHeaders) => return Err(err("too many upstream header fields")),
        Err(httparse::Error::HeaderName | httparse::Error::HeaderValue) => {
            return Err(err("invalid upstream header field"));
        }
        Err(_) => return Err(err("invalid upstream status line")),
    }
    let (Some(status), Some(minor)) = (response.code, response.version) else {
        return Err(err("invalid upstream status line"));
    };
    // RFC 9110 sec. 15: status codes are 100 to 599.
    if !(100..=599).contains(&status) {
        return Err(err("invalid upstream status code"));
    }
    let version = if minor == 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    // The reason phrase is whatever follows "HTTP/1.1 200 " on the status line. Taken from the
    // line rather than from httparse, which hands back "" for a phrase with obs-text.
    const REASON_OFFSET: usize = "HTTP/1.1 200 ".len();
    let line = bounds.start_line;
    let reason = line.skip(line.len().min(REASON_OFFSET));

    let summary = field::collect(buf, response.headers, fields).map_err(|e| match e {
        FieldError::InvalidConnection => err("invalid upstream connection header"),
        FieldError::TooManyConnectionOptions => err("too many upstream connection options"),
    })?;

    let connection = summary.connection;
    let content_length = match summary.content_length {
        ContentLength::Valid(n) => Some(n),
        _ => None,
    };
    let (body, framing_allows_reuse) = body_framing(request_method, status, version, &summary)?;
    let mut keep_alive = framing_allows_reuse
        && match version {
            Version::Http11 => !connection.close,
            Version::Http10 => connection.keep_alive && !connection.close,
        };

    // RFC 9110 sec. 7.8: a 101 names the new protocol in Upgrade; after it, the connection is
    // no longer HTTP/1.1 and cannot be pooled.
    let upgrade = if status == 101 {
        keep_alive = false;
        summary.upgrade.filter(|_| connection.upgrade)
    } else {
        None
    };

    Ok(Parsed::Complete(ResponseHead {
        status,
        version,
        reason,
        head_len: bounds.head_len,
        field_count: summary.count,
        body,
        content_length,
        keep_alive,
        upgrade,
    }))
}

/// How the body of a response is framed (RFC 9112 sec. 6.3, in its order, except that step 2
/// is checked first: a 204 to CONNECT has no body by step 1, but it is a 2xx, so the
/// connection still becomes a tunnel), and whether the framing lets the connection be reused.
fn body_framing(
    request_method: Method,
    status: u16,
    version: Version,
    summary: &field::FieldSummary,
) -> Result<(ResponseBody, bool), ResponseError> {
    if request_method == Method::Connect && (200..300).contains(&status) {
        // Step 2: the connection becomes a tunnel and never returns to the pool.
        return Ok((ResponseBody::None, false));
    }
    if request_method == Method::Head || matches!(status, 100..=199 | 204 | 304) {
        // Step 1: no body, regardless of the fields; their values are not interpreted.
        return Ok((ResponseBody::None, true));
    }
    if summary.transfer_encoding != TransferEncoding::Absent {
        // Sec. 6.1: Transfer-Encoding in HTTP/1.0 means faulty framing.
        if version == Version::Http10 {
            return Err(err("transfer-encoding in an HTTP/1.0 response"));
        }
        match summary.transfer_encoding {
            TransferEncoding::Chunked => {}
            // Step 4 would read these until close, but the data would still carry a coding
            // coregate cannot re-frame without decoding it (it regenerates Transfer-Encoding).
            TransferEncoding::ChunkedAfterOther | TransferEncoding::NotChunked => {
                return Err(err("unsupported upstream transfer coding"));
            }
            TransferEncoding::Invalid | TransferEncoding::Absent => {
                return Err(err("invalid upstream transfer-encoding"));
            }
        }
        // Step 3: Transfer-Encoding overrides Content-Length, and such a message "ought to be
        // handled as an error": the body is read as chunked, then the connection is closed.
        let reusable = summary.content_length == ContentLength::Absent;
        return Ok((ResponseBody::Chunked, reusable));
    }
    match summary.content_length {
        ContentLength::Valid(n) => Ok((ResponseBody::Length(n), true)),
        // Step 5: the proxy closes the upstream connection and answers 502.
        ContentLength::Invalid => Err(err("invalid upstream content-length")),
        ContentLength::Conflicting => Err(err("conflicting upstream content-length")),
        // Step 7: read until the server closes.
        ContentLength::Absent => Ok((ResponseBody::CloseDelimited, false)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_for(method: Method, buf: &[u8]) -> Result<ResponseHead, ResponseError> {
        let mut scanner = HeadScanner::default();
        let mut fields = [Field::EMPTY; 100];
        match parse_response(buf, &mut scanner, &Limits::DEFAULT, &mut fields, method)? {
            Parsed::Complete(head) => Ok(head),
            Parsed::Partial => panic!("partial: {:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn parse(buf: &[u8]) -> Result<ResponseHead, ResponseError> {
        parse_for(Method::Get, buf)
    }

    fn ok(lines: &str) -> Vec<u8> {
        format!("HTTP/1.1 200 OK\r\n{lines}\r\n").into_bytes()
    }

    #[test]
    fn a_simple_response() {
        let buf = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nX-A: b\r\n\r\nnot found";
        let mut scanner = HeadScanner::default();
        let mut fields = [Field::EMPTY; 100];
        let head = parse_response(
            buf,
            &mut scanner,
            &Limits::DEFAULT,
            &mut fields,
            Method::Get,
        )
        .unwrap()
        .complete()
        .unwrap();
        assert_eq!(head.status, 404);
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.reason.of(buf), b"Not Found");
        assert_eq!(head.head_len, buf.len() - 9);
        assert_eq!(head.field_count, 2);
        assert_eq!(head.body, ResponseBody::Length(9));
        assert_eq!(head.content_length, Some(9));
        assert!(head.keep_alive);
        assert!(fields[0].hop_by_hop && !fields[1].hop_by_hop);
        assert_eq!(fields[1].value.of(buf), b"b");
    }

    /// RFC 9112 sec. 4: status-line = HTTP-version SP status-code SP [ reason-phrase ].
    #[test]
    fn rfc9112_4_status_line() {
        let buf = b"HTTP/1.1 204 \r\n\r\n";
        assert_eq!(parse(buf).unwrap().reason.of(buf), b"");
        // A missing SP before an empty reason is tolerated: it cannot affect framing.
        let buf = b"HTTP/1.1 204\r\n\r\n";
        assert_eq!(parse(buf).unwrap().reason.of(buf), b"");
        let buf = b"HTTP/1.1 200 \xe9t\xe9\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse(buf).unwrap().reason.of(buf), b"\xe9t\xe9");
        for bad in [
            &b"HTTP/1.1 20 OK\r\n\r\n"[..],
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1  200 OK\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 600 High\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"HTTP/1.1 200 O\x01K\r\n\r\n",
            b"ICY 200 OK\r\n\r\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    /// RFC 9112 sec. 2.2 and 5: bare LF, bare CR, obs-fold and space before a colon are
    /// refused in responses too.
    #[test]
    fn rfc9112_5_strict_field_lines() {
        assert!(parse(b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n").is_err());
        assert!(parse(&ok("X: a\rb\r\nContent-Length: 0\r\n")).is_err());
        assert!(parse(&ok("Content-Length: 0\r\nX: a\r\n b\r\n")).is_err());
        assert!(parse(&ok("Content-Length : 0\r\n")).is_err());
        assert!(parse(&ok("X: \0\r\n")).is_err());
    }

    /// RFC 9112 sec. 6.3 step 1: HEAD, 1xx, 204 and 304 have no body whatever the fields say.
    #[test]
    fn rfc9112_6_3_1_bodiless_responses() {
        let head = parse_for(Method::Head, &ok("Content-Length: 1234\r\n")).unwrap();
        assert_eq!(head.body, ResponseBody::None);
        assert_eq!(head.content_length, Some(1234));
        assert!(head.keep_alive);
        let head = parse_for(Method::Head, &ok("Transfer-Encoding: chunked\r\n")).unwrap();
        assert_eq!(head.body, ResponseBody::None);
        for status in [
            "100 Continue",
            "103 Early Hints",
            "204 No Content",
            "304 Not Modified",
        ] {
            let buf = format!("HTTP/1.1 {status}\r\nContent-Length: 10\r\n\r\n");
            let head = parse(buf.as_bytes()).unwrap();
            assert_eq!(head.body, ResponseBody::None, "{status}");
        }
        let head = parse(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
        assert!(head.is_interim() && head.keep_alive);
    }

    /// RFC 9112 sec. 6.3 step 2: a 2xx to CONNECT turns the connection into a tunnel.
    #[test]
    fn rfc9112_6_3_2_connect_tunnel() {
        let head = parse_for(Method::Connect, &ok("Content-Length: 5\r\n")).unwrap();
        assert_eq!(head.body, ResponseBody::None);
        assert!(!head.keep_alive);
        let head = parse_for(
            Method::Connect,
            b"HTTP/1.1 403 No\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap();
        assert_eq!(head.body, ResponseBody::Length(5));
        // A 204 is bodiless by step 1 and still a 2xx: a tunnel, never pooled (found by the
        // response_head fuzz target).
        let head = parse_for(Method::Connect, b"HTTP/1.1 204 th: 4\r\n\r\n").unwrap();
        assert_eq!(head.body, ResponseBody::None);
        assert!(!head.keep_alive);
    }

    /// RFC 9112 sec. 6.3 step 3: with both fields, chunked wins and the connection is not
    /// reused.
    #[test]
    fn rfc9112_6_3_3_transfer_encoding_beats_content_length() {
        let head = parse(&ok("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n")).unwrap();
        assert_eq!(head.body, ResponseBody::Chunked);
        assert!(!head.keep_alive);
        let head = parse(&ok("Content-Length: x\r\nTransfer-Encoding: chunked\r\n")).unwrap();
        assert_eq!(head.body, ResponseBody::Chunked);
        assert!(!head.keep_alive);
        let head = parse(&ok("Transfer-Encoding: chunked\r\n")).unwrap();
        assert_eq!(head.body, ResponseBody::Chunked);
        assert!(head.keep_alive);
    }

    /// RFC 9112 sec. 6.1 / 6.3 step 4: only `chunked` is relayed; other codings are refused
    /// (coregate's choice, see the code), as is Transfer-Encoding in HTTP/1.0.
    #[test]
    fn rfc9112_6_3_4_unsupported_codings() {
        for value in [
            "gzip",
            "gzip, chunked",
            "chunked, chunked",
            "chunked;x=1",
            ",chunked",
        ] {
            assert!(
                parse(&ok(&format!("Transfer-Encoding: {value}\r\n"))).is_err(),
                "{value}"
            );
        }
        assert!(parse(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
    }

    /// RFC 9112 sec. 6.3 step 5: invalid or differing Content-Length is an error (502).
    #[test]
    fn rfc9112_6_3_5_bad_content_length() {
        assert!(parse(&ok("Content-Length: 5\r\nContent-Length: 6\r\n")).is_err());
        assert!(parse(&ok("Content-Length: 5, 6\r\n")).is_err());
        assert!(parse(&ok("Content-Length: -1\r\n")).is_err());
        assert!(parse(&ok("Content-Length: \r\n")).is_err());
        let head = parse(&ok("Content-Length: 5\r\nContent-Length: 5\r\n")).unwrap();
        assert_eq!(head.body, ResponseBody::Length(5));
    }

    /// RFC 9112 sec. 6.3 step 7: no framing fields means read until close.
    #[test]
    fn rfc9112_6_3_7_close_delimited() {
        let head = parse(&ok("X: y\r\n")).unwrap();
        assert_eq!(head.body, ResponseBody::CloseDelimited);
        assert!(!head.keep_alive);
    }

    /// RFC 9112 sec. 9.3: persistence of the upstream connection.
    #[test]
    fn rfc9112_9_3_upstream_persistence() {
        assert!(
            !parse(&ok("Content-Length: 0\r\nConnection: close\r\n"))
                .unwrap()
                .keep_alive
        );
        assert!(
            !parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(
            parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
    }

    /// RFC 9110 sec. 7.8: 101 Switching Protocols.
    #[test]
    fn rfc9110_7_8_switching_protocols() {
        let buf = b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        let head = parse(buf).unwrap();
        assert_eq!(head.upgrade.map(|u| u.of(buf)), Some(&b"websocket"[..]));
        assert_eq!(head.body, ResponseBody::None);
        assert!(!head.keep_alive && !head.is_interim());
    }

    #[test]
    fn response_errors_map_to_the_engine_error() {
        let e: Error = err("x").into();
        assert_eq!((e.kind, e.side), (ErrorKind::Protocol, Side::Upstream));
    }
}
