//! Request heads: [`parse_request`] turns the bytes of a request head into a [`RequestHead`] of
//! spans, or into the [`RequestError`] coregate answers with.
//!
//! It owns the request-side rules of RFC 9110 and RFC 9112: the request line, `Host`, the body
//! framing decision (sec. 6.3 of RFC 9112), persistence (sec. 9.3) and `Expect` (RFC 9110
//! sec. 10.1.1). coregate sits at the edge, so where the RFC lets a server choose between
//! tolerating and refusing, it refuses; every such choice is written down at the rule.
//!
//! The steps, in order:
//!
//! 1. [`HeadScanner`] finds the end of the head (or a limit is hit: 414 / 431, or a bare LF:
//!    400); until then the answer is `Partial`.
//! 2. httparse, in its strict default configuration, parses the head into spans. It refuses bare
//!    CR, NUL and other controls, obs-fold, whitespace before a field's colon, an invalid method
//!    token and anything but HTTP/1.0 and HTTP/1.1 (400). `HTTP/1.2` to `HTTP/1.9` are then
//!    read here and processed as HTTP/1.1 (RFC 9110 sec. 2.5, see `parse_later_minor`).
//! 3. `field.rs` classifies every field and summarises `Host`, framing and `Connection`.
//! 4. This file decides: target form, `Host`, body framing, keep-alive, `Expect`, `Upgrade`.

use std::mem::MaybeUninit;

use super::field::{self, ContentLength, Field, FieldError, RepeatedFields, TransferEncoding};
use super::scan::{HeadBounds, HeadScanner, Scan, ScanError};
use super::target::{self, TargetForm};
use super::{Limits, MAX_FIELDS, Method, Parsed, Span, Version, is_tchar};
use crate::error::{Error, ErrorKind, Side};

/// How the request body is framed (RFC 9112 sec. 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestBody {
    /// No body: neither `Content-Length` nor `Transfer-Encoding`.
    None,
    /// Exactly this many bytes follow the head (possibly zero: `Content-Length: 0` is kept so it
    /// can be forwarded as sent).
    Length(u64),
    /// A chunked body follows; decode it with a `ChunkedDecoder`.
    Chunked,
}

/// A parsed request head. Every span points into the buffer given to [`parse_request`]; the
/// fields are in `fields[..field_count]` of the array given with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Method,
    /// The method token as sent: the only spelling of extension methods.
    pub method_span: Span,
    /// The request-target as sent.
    pub target: Span,
    pub form: TargetForm,
    /// The path of the target without its query (see [`TargetForm`] for the other forms).
    pub path: Span,
    /// The query without its `?`.
    pub query: Option<Span>,
    pub version: Version,
    /// Bytes of the head, final CRLF included: the body starts here.
    pub head_len: usize,
    pub field_count: usize,
    /// The value of the one `Host` field (None only for HTTP/1.0 requests without one).
    pub host: Option<Span>,
    pub body: RequestBody,
    /// Whether the client connection may carry another request after this one, as far as the
    /// head says (RFC 9112 sec. 9.3): HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
    /// `Connection: keep-alive`.
    pub keep_alive: bool,
    /// The client waits for `100 Continue` before sending the body (HTTP/1.1 requests with a
    /// body only: RFC 9110 sec. 10.1.1 has servers ignore it in HTTP/1.0).
    pub expect_continue: bool,
    /// The `Upgrade` value when the client asks for a protocol switch (`Connection: upgrade`
    /// and an HTTP/1.1 request; RFC 9110 sec. 7.8).
    pub upgrade: Option<Span>,
    /// The first `X-Request-Id` value that is forwarded: a client naming the field in
    /// `Connection` has it dropped, and coregate then generates an id.
    pub request_id: Option<Span>,
    /// The first forwarded `X-Forwarded-For` value.
    pub forwarded_for: Option<Span>,
    /// Whether `Authorization` or `X-Request-Id` came more than once. The parser accepts such
    /// requests; whoever reads one copy (authentication, the request id) decides whether the
    /// others may be forwarded, which is why they are flagged here rather than found again.
    pub repeated: RepeatedFields,
}

impl RequestHead {
    /// The host to route on: the authority of an absolute-form target, which RFC 9112
    /// sec. 3.2.2 says overrides `Host`, otherwise the `Host` value.
    pub fn route_host(&self) -> Option<Span> {
        match self.form {
            TargetForm::Absolute { authority, .. } => Some(authority),
            _ => self.host,
        }
    }
}

/// Why a request was refused: the status coregate answers with and a short text for the
/// plain-text body. The client connection is closed after the answer: once framing is in
/// doubt, nothing after it on the connection can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// 400, 414, 417, 431 or 501.
    pub status: u16,
    pub reason: &'static str,
}

impl RequestError {
    const fn bad(reason: &'static str) -> RequestError {
        RequestError {
            status: 400,
            reason,
        }
    }

    /// Writes the canned answer (`connection: close`) into `out`; see [`super::write_response`].
    pub fn write_response(&self, out: &mut [u8]) -> Result<usize, super::HeadTooLarge> {
        super::write_response(self.status, self.reason, true, &[], out)
    }
}

impl From<RequestError> for Error {
    fn from(err: RequestError) -> Error {
        let kind = match err.status {
            414 | 431 => ErrorKind::Limit,
            _ => ErrorKind::Protocol,
        };
        Error::new(kind, Side::Downstream, err.reason)
    }
}

impl From<ScanError> for RequestError {
    fn from(err: ScanError) -> RequestError {
        match err {
            ScanError::BareLf => RequestError::bad("line not ended by CRLF"),
            ScanError::StartLineTooLong => RequestError {
                status: 414,
                reason: "request line too long",
            },
            ScanError::HeadTooLarge => RequestError {
                status: 431,
                reason: "request header too large",
            },
            ScanError::TooManyFields => TOO_MANY_FIELDS,
        }
    }
}

const TOO_MANY_FIELDS: RequestError = RequestError {
    status: 431,
    reason: "too many header fields",
};

/// Parses the request head at the start of `buf`.
///
/// `buf` holds the request from its first byte; call again with the same `scanner` when more
/// bytes arrived (only bytes not seen before are searched). On `Complete` the scanner is reset
/// for the next request, which starts at `head_len` plus the body.
///
/// At most `min(limits.max_headers, fields.len(), MAX_FIELDS)` field lines are accepted; more
/// is a 431, never a silent truncation. Size `fields` from the limits.
pub fn parse_request(
    buf: &[u8],
    scanner: &mut HeadScanner,
    limits: &Limits,
    fields: &mut [Field],
) -> Result<Parsed<RequestHead>, RequestError> {
    let limits = limits.for_fields(fields.len());
    let max_fields = limits.max_headers;
    let bounds = match scanner.scan(buf, &limits)? {
        Scan::Partial => return Ok(Parsed::Partial),
        Scan::Complete(bounds) => bounds,
    };
    let head = &buf[..bounds.head_len];

    // httparse writes into uninitialised slots: nothing is initialised or allocated per call,
    // and nothing outlives the call, so no scratch needs to be threaded through the shard.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
    let mut request = httparse::Request::new(&mut []);
    match request.parse_with_uninit_headers(head, &mut slots[..max_fields]) {
        Ok(httparse::Status::Complete(len)) if len == bounds.head_len => {}
        // The scanner and httparse disagree on where the head ends: refuse rather than pick one.
        Ok(_) => return Err(RequestError::bad("malformed request head")),
        // httparse knows HTTP/1.0 and HTTP/1.1 only; see `parse_later_minor`.
        Err(httparse::Error::Version) => {
            return parse_later_minor(buf, &bounds, max_fields, fields).map(Parsed::Complete);
        }
        Err(err) => return Err(from_httparse(err)),
    }
    let (Some(method), Some(target), Some(minor)) = (request.method, request.path, request.version)
    else {
        return Err(RequestError::bad("malformed request line"));
    };
    let line = RequestLine {
        method: method.as_bytes(),
        target: target.as_bytes(),
        version: if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        },
    };
    decide(buf, &bounds, line, request.headers, fields).map(Parsed::Complete)
}

/// The parts of a request line.
struct RequestLine<'b> {
    method: &'b [u8],
    target: &'b [u8],
    /// The version the request is processed as.
    version: Version,
}

/// RFC 9110 sec. 2.5: a recipient SHOULD process a message whose minor version is higher than
/// any it implements as the highest minor version of that major version it conforms to. So
/// `HTTP/1.2` to `HTTP/1.9` are processed, and forwarded, as HTTP/1.1. coregate follows the
/// SHOULD rather than answer 505, which the RFC reserves for refusing a *major* version.
///
/// httparse refuses any version but 1.0 and 1.1, so this reads such a request line itself, as
/// strictly as httparse reads the others (a token, one space, visible ASCII, one space, the
/// version), and hands the field lines to httparse alone. Any other version stays a 400. Only
/// requests that httparse refused for their version come here: nothing on the usual path.
#[cold]
fn parse_later_minor(
    buf: &[u8],
    bounds: &HeadBounds,
    max_fields: usize,
    fields: &mut [Field],
) -> Result<RequestHead, RequestError> {
    let Some(line) = later_minor_line(bounds.start_line.of(buf)) else {
        return Err(from_httparse(httparse::Error::Version));
    };
    // Field lines start after the request line's CRLF; the scanner found both.
    let start = bounds.start_line.end as usize + 2;
    let lines = buf.get(start..bounds.head_len).unwrap_or_default();
    // `parse_headers` takes initialised slots; this path is rare enough to pay for that.
    let mut slots = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let headers = match httparse::parse_headers(lines, &mut slots[..max_fields]) {
        Ok(httparse::Status::Complete((len, headers))) if start + len == bounds.head_len => headers,
        Ok(_) => return Err(RequestError::bad("malformed request head")),
        Err(err) => return Err(from_httparse(err)),
    };
    decide(buf, bounds, line, headers, fields)
}

/// `method SP request-target SP HTTP/1.D` with D from 2 to 9 (RFC 9112 sec. 3), or `None`.
fn later_minor_line(line: &[u8]) -> Option<RequestLine<'_>> {
    let (rest, version) = line.split_at(line.len().checked_sub(b" HTTP/1.2".len())?);
    if !matches!(
        version,
        [b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9']
    ) {
        return None;
    }
    let space = rest.iter().position(|&b| b == b' ')?;
    let (method, target) = (&rest[..space], &rest[space + 1..]);
    let is_target_byte = |b: &u8| (b'!'..=b'~').contains(b);
    if method.is_empty()
        || !method.iter().all(|&b| is_tchar(b))
        || target.is_empty()
        || !target.iter().all(is_target_byte)
    {
        return None;
    }
    Some(RequestLine {
        method,
        target,
        version: Version::Http11,
    })
}

/// Step 4 of the module doc: what the request line and the field lines say, decided.
fn decide(
    buf: &[u8],
    bounds: &HeadBounds,
    line: RequestLine<'_>,
    headers: &[httparse::Header<'_>],
    fields: &mut [Field],
) -> Result<RequestHead, RequestError> {
    let RequestLine {
        method: method_token,
        target: target_bytes,
        version,
    } = line;
    let method = Method::from_token(method_token);
    let method_span = Span::within(buf, method_token);
    let target_span = Span::within(buf, target_bytes);
    let target = target::parse_target(buf, target_span, method).map_err(RequestError::bad)?;

    let summary = field::collect(buf, headers, fields).map_err(|err| match err {
        FieldError::InvalidConnection => RequestError::bad("invalid connection header"),
        FieldError::TooManyConnectionOptions => RequestError::bad("too many connection options"),
    })?;
    debug_assert_eq!(summary.count, bounds.fields);

    // Host: RFC 9112 sec. 3.2 — exactly one in HTTP/1.1, never more than one, always valid.
    if summary.host_repeated {
        return Err(RequestError::bad("more than one host header"));
    }
    match summary.host {
        None if version == Version::Http11 => {
            return Err(RequestError::bad("missing host header"));
        }
        // An empty Host is allowed by RFC 9112 sec. 3.2 for targets without an authority,
        // which an http(s) reverse proxy never serves: coregate refuses it like any invalid one.
        Some(host) if !target::is_valid_authority(host.of(buf), false) => {
            return Err(RequestError::bad("invalid host header"));
        }
        _ => {}
    }
    // A client listing Host as a connection option asks coregate to forward the request without
    // it; RFC 9110 sec. 7.6.1 forbids sending such options, and the result could not be routed.
    if summary.connection.names_host {
        return Err(RequestError::bad("connection option names host"));
    }

    // Not an RFC rule: see `is_framing_lookalike`. NGINX drops such fields by default; coregate
    // refuses the request, since silently dropping a framing-looking field hides the attempt.
    if summary.framing_lookalike {
        return Err(RequestError::bad("underscore in a framing field name"));
    }

    let body = request_body(version, summary.content_length, summary.transfer_encoding)?;

    let keep_alive = match version {
        Version::Http11 => !summary.connection.close,
        Version::Http10 => summary.connection.keep_alive && !summary.connection.close,
    };

    // RFC 9110 sec. 10.1.1: only 100-continue is defined; a server MAY answer anything else with
    // 417, and coregate does rather than pass an expectation it cannot vouch for upstream.
    let expect_continue = match summary.expect {
        None => false,
        Some(_) if summary.expect_repeated => {
            return Err(EXPECTATION_FAILED);
        }
        Some(value) if value.of(buf).eq_ignore_ascii_case(b"100-continue") => {
            version == Version::Http11
                && matches!(body, RequestBody::Chunked | RequestBody::Length(1..))
        }
        Some(_) => return Err(EXPECTATION_FAILED),
    };

    // RFC 9110 sec. 7.8: Upgrade counts only together with the `upgrade` connection option,
    // and a server ignores it in HTTP/1.0. Several Upgrade fields would have to be merged into
    // one list to forward; coregate refuses them instead.
    if summary.upgrade_repeated {
        return Err(RequestError::bad("more than one upgrade header"));
    }
    let upgrade = summary
        .upgrade
        .filter(|_| summary.connection.upgrade && version == Version::Http11);

    Ok(RequestHead {
        method,
        method_span,
        target: target_span,
        form: target.form,
        path: target.path,
        query: target.query,
        version,
        head_len: bounds.head_len,
        field_count: summary.count,
        host: summary.host,
        body,
        keep_alive,
        expect_continue,
        upgrade,
        request_id: summary.request_id,
        forwarded_for: summary.forwarded_for,
        repeated: summary.repeated,
    })
}

const EXPECTATION_FAILED: RequestError = RequestError {
    status: 417,
    reason: "unsupported expectation",
};

/// RFC 9112 sec. 6.3, for requests, with coregate's choices where the RFC offers one.
fn request_body(
    version: Version,
    content_length: ContentLength,
    transfer_encoding: TransferEncoding,
) -> Result<RequestBody, RequestError> {
    if transfer_encoding != TransferEncoding::Absent {
        // Sec. 6.1: Transfer-Encoding in HTTP/1.0 means the framing is faulty.
        if version == Version::Http10 {
            return Err(RequestError::bad(
                "transfer-encoding in an HTTP/1.0 request",
            ));
        }
        // Sec. 6.1 and 6.3 step 3: a server MAY reject both together, and coregate does: the
        // pair is the raw material of request smuggling, and no honest client sends it.
        if content_length != ContentLength::Absent {
            return Err(RequestError::bad(
                "both content-length and transfer-encoding",
            ));
        }
        return match transfer_encoding {
            TransferEncoding::Chunked => Ok(RequestBody::Chunked),
            // Sec. 6.1: a server SHOULD answer 501 to a transfer coding it does not understand.
            // coregate relays bodies re-framed, so it would have to decode gzip & co. to forward
            // them; it does not.
            TransferEncoding::ChunkedAfterOther => Err(RequestError {
                status: 501,
                reason: "unsupported transfer coding",
            }),
            // Sec. 6.3 step 4: final coding not chunked in a request means 400.
            TransferEncoding::NotChunked => {
                Err(RequestError::bad("final transfer coding is not chunked"))
            }
            TransferEncoding::Invalid | TransferEncoding::Absent => {
                Err(RequestError::bad("invalid transfer-encoding"))
            }
        };
    }
    // Sec. 6.3 step 5: an invalid Content-Length is an unrecoverable error (400).
    match content_length {
        ContentLength::Absent => Ok(RequestBody::None),
        ContentLength::Valid(n) => Ok(RequestBody::Length(n)),
        ContentLength::Invalid => Err(RequestError::bad("invalid content-length")),
        ContentLength::Conflicting => Err(RequestError::bad("conflicting content-length")),
    }
}

fn from_httparse(err: httparse::Error) -> RequestError {
    match err {
        httparse::Error::TooManyHeaders => TOO_MANY_FIELDS,
        httparse::Error::Token => RequestError::bad("invalid method or request target"),
        httparse::Error::Version => RequestError::bad("unsupported HTTP version"),
        httparse::Error::HeaderName => RequestError::bad("invalid header field name"),
        httparse::Error::HeaderValue => RequestError::bad("invalid header field value"),
        httparse::Error::NewLine | httparse::Error::Status => {
            RequestError::bad("malformed request line")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> [Field; 100] {
        [Field::EMPTY; 100]
    }

    fn parse(buf: &[u8]) -> Result<RequestHead, RequestError> {
        let mut scanner = HeadScanner::default();
        match parse_request(buf, &mut scanner, &Limits::DEFAULT, &mut fields())? {
            Parsed::Complete(head) => Ok(head),
            Parsed::Partial => panic!("partial: {:?}", String::from_utf8_lossy(buf)),
        }
    }

    fn status(buf: &[u8]) -> u16 {
        match parse(buf) {
            Ok(head) => panic!("accepted {:?}: {head:?}", String::from_utf8_lossy(buf)),
            Err(err) => err.status,
        }
    }

    fn with_fields(lines: &str) -> Vec<u8> {
        format!("POST /p HTTP/1.1\r\nHost: example.com\r\n{lines}\r\n").into_bytes()
    }

    #[test]
    fn a_simple_get() {
        let buf = b"GET /index.html?lang=en HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\nX-Request-Id: abc\r\nX-Forwarded-For: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n\r\n";
        let mut scanner = HeadScanner::default();
        let mut fields = fields();
        let head = parse_request(buf, &mut scanner, &Limits::DEFAULT, &mut fields)
            .unwrap()
            .complete()
            .unwrap();
        assert_eq!(head.method, Method::Get);
        assert_eq!(head.method_span.of(buf), b"GET");
        assert_eq!(head.target.of(buf), b"/index.html?lang=en");
        assert_eq!(head.path.of(buf), b"/index.html");
        assert_eq!(head.query.map(|q| q.of(buf)), Some(&b"lang=en"[..]));
        assert_eq!(head.form, TargetForm::Origin);
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.head_len, buf.len());
        assert_eq!(head.field_count, 5);
        assert_eq!(head.host.map(|h| h.of(buf)), Some(&b"example.com"[..]));
        assert_eq!(head.route_host(), head.host);
        assert_eq!(head.body, RequestBody::None);
        assert!(head.keep_alive);
        assert!(!head.expect_continue);
        assert_eq!(head.request_id.map(|s| s.of(buf)), Some(&b"abc"[..]));
        assert_eq!(
            head.forwarded_for.map(|s| s.of(buf)),
            Some(&b"10.0.0.1"[..])
        );
        assert_eq!(fields[1].name.of(buf), b"User-Agent");
        assert_eq!(fields[1].value.of(buf), b"t");
        assert!(fields[..5].iter().all(|f| !f.hop_by_hop));
    }

    #[test]
    fn partial_until_the_empty_line() {
        let buf = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut scanner = HeadScanner::default();
        let mut fields = fields();
        for end in 0..buf.len() {
            assert_eq!(
                parse_request(&buf[..end], &mut scanner, &Limits::DEFAULT, &mut fields),
                Ok(Parsed::Partial)
            );
        }
        assert!(
            parse_request(buf, &mut scanner, &Limits::DEFAULT, &mut fields)
                .unwrap()
                .complete()
                .is_some()
        );
    }

    #[test]
    fn field_values_are_trimmed_and_may_be_empty() {
        let buf = with_fields("X-A: \t spaced out \t\r\nX-B:\r\nX-C:tight\r\n");
        let mut scanner = HeadScanner::default();
        let mut fields = fields();
        let head = parse_request(&buf, &mut scanner, &Limits::DEFAULT, &mut fields)
            .unwrap()
            .complete()
            .unwrap();
        let values: Vec<&[u8]> = fields[1..head.field_count]
            .iter()
            .map(|f| f.value.of(&buf))
            .collect();
        assert_eq!(values, [&b"spaced out"[..], b"", b"tight"]);
    }

    // --- RFC 9112 sec. 2 and 3: message and request line ---------------------------------

    /// RFC 9112 sec. 2.2: bare LF (coregate's choice) and bare CR are refused.
    #[test]
    fn rfc9112_2_2_bare_lf_and_bare_cr() {
        assert_eq!(status(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nX: a\rb\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    /// RFC 9110 sec. 5.5: NUL and other controls are invalid in field values.
    #[test]
    fn rfc9110_5_5_nul_and_controls_in_the_head() {
        assert_eq!(status(&with_fields("X: a\0b\r\n")), 400);
        assert_eq!(status(&with_fields("X: a\x01b\r\n")), 400);
        assert_eq!(status(&with_fields("X: a\x7fb\r\n")), 400);
        assert_eq!(status(&with_fields("X\0: a\r\n")), 400);
        assert_eq!(status(b"GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"G\0T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    }

    /// RFC 9112 sec. 5.2: obs-fold in a request is refused with 400.
    #[test]
    fn rfc9112_5_2_obs_fold() {
        assert_eq!(status(&with_fields("X: a\r\n b\r\n")), 400);
        assert_eq!(status(&with_fields("X: a\r\n\tb\r\n")), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
    }

    /// RFC 9112 sec. 5.1: no whitespace between field name and colon (400).
    #[test]
    fn rfc9112_5_1_whitespace_before_colon() {
        assert_eq!(status(&with_fields("X : a\r\n")), 400);
        assert_eq!(status(&with_fields("X\t: a\r\n")), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
        assert_eq!(status(&with_fields(": a\r\n")), 400);
        assert_eq!(status(&with_fields("X a\r\n")), 400);
    }

    /// RFC 9112 sec. 3 / RFC 9110 sec. 9.1: the method is a token; exactly one SP separates
    /// the parts; only HTTP/1.0 and HTTP/1.1.
    #[test]
    fn rfc9112_3_request_line() {
        assert_eq!(status(b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\tx HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        let head = parse(b"PROPFIND /x HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(head.method, Method::Other);
    }

    /// RFC 9110 sec. 2.5: a higher minor version of HTTP/1 is processed as HTTP/1.1, with every
    /// HTTP/1.1 rule (Host, framing, field syntax) applied as strictly; other versions stay 400.
    #[test]
    fn rfc9110_2_5_a_higher_minor_version_is_processed_as_http11() {
        let buf = b"POST /x?q HTTP/1.2\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX: 1\r\n\r\n";
        let mut scanner = HeadScanner::default();
        let mut fields = fields();
        let head = parse_request(buf, &mut scanner, &Limits::DEFAULT, &mut fields)
            .unwrap()
            .complete()
            .unwrap();
        assert_eq!(head.version, Version::Http11);
        assert_eq!(head.method, Method::Post);
        assert_eq!(head.method_span.of(buf), b"POST");
        assert_eq!(head.path.of(buf), b"/x");
        assert_eq!(head.query.map(|q| q.of(buf)), Some(&b"q"[..]));
        assert_eq!(head.body, RequestBody::Chunked);
        assert_eq!(head.head_len, buf.len());
        assert!(head.keep_alive);
        assert_eq!(fields[2].name.of(buf), b"X");
        assert_eq!(fields[2].value.of(buf), b"1");
        assert_eq!(
            parse(b"GET / HTTP/1.9\r\nHost: a\r\n\r\n").map(|h| h.version),
            Ok(Version::Http11)
        );
        for bad in [
            &b"GET / HTTP/1.2\r\n\r\n"[..],
            b"GET / HTTP/1.2\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.2\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"G@T / HTTP/1.2\r\nHost: a\r\n\r\n",
            b"GET  / HTTP/1.2\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.2 \r\nHost: a\r\n\r\n",
            b"GET /a#b HTTP/1.2\r\nHost: a\r\n\r\n",
            b"GET  HTTP/1.2\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.10\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.x\r\nHost: a\r\n\r\n",
            b"GET / HTTP/3.0\r\nHost: a\r\n\r\n",
            b"GET / HTTP/0.9\r\nHost: a\r\n\r\n",
            b"HTTP/1.2\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(status(bad), 400, "{:?}", String::from_utf8_lossy(bad));
        }
        let many: String = (0..Limits::DEFAULT_MAX_HEADERS)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        let buf = format!("GET / HTTP/1.2\r\nHost: a\r\n{many}\r\n");
        assert_eq!(status(buf.as_bytes()), 431);
    }

    /// RFC 9112 sec. 3.2: the target forms, and which method may use which.
    #[test]
    fn rfc9112_3_2_request_target() {
        assert_eq!(status(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET a.com:80 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET mailto:x@y HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(
            status("GET /\u{e9} HTTP/1.1\r\nHost: a\r\n\r\n".as_bytes()),
            400
        );
        let head = parse(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        assert_eq!(head.form, TargetForm::Asterisk);
        let head = parse(b"CONNECT a.com:443 HTTP/1.1\r\nHost: a.com:443\r\n\r\n").unwrap();
        assert_eq!(head.form, TargetForm::Authority);
    }

    /// RFC 9112 sec. 3.2.2: with an absolute-form target the authority overrides Host, but
    /// Host must still be there and valid.
    #[test]
    fn rfc9112_3_2_2_absolute_form_overrides_host() {
        let buf = b"GET http://b.example/x?y HTTP/1.1\r\nHost: a.example\r\n\r\n";
        let head = parse(buf).unwrap();
        assert_eq!(
            head.route_host().map(|h| h.of(buf)),
            Some(&b"b.example"[..])
        );
        assert_eq!(head.host.map(|h| h.of(buf)), Some(&b"a.example"[..]));
        assert_eq!(head.path.of(buf), b"/x");
        assert_eq!(status(b"GET http://b.example/ HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET http://u@b.example/ HTTP/1.1\r\nHost: b\r\n\r\n"),
            400
        );
    }

    // --- RFC 9112 sec. 3.2: Host ----------------------------------------------------------

    /// RFC 9112 sec. 3.2: 400 for a missing Host in HTTP/1.1, for several Host fields and for
    /// an invalid Host value.
    #[test]
    fn rfc9112_3_2_host_rules() {
        assert_eq!(status(b"GET / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost:\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a:x\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"), 400);
        let head = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        assert_eq!(head.host, None);
        let buf = b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n";
        assert_eq!(
            parse(buf).unwrap().host.map(|h| h.of(buf)),
            Some(&b"[::1]:8080"[..])
        );
    }

    // --- RFC 9112 sec. 6: framing ---------------------------------------------------------

    /// RFC 9112 sec. 6.3 step 6: a request with neither field has no body.
    #[test]
    fn rfc9112_6_3_no_framing_fields_means_no_body() {
        assert_eq!(parse(&with_fields("")).unwrap().body, RequestBody::None);
        assert_eq!(
            parse(&with_fields("Content-Length: 0\r\n")).unwrap().body,
            RequestBody::Length(0)
        );
    }

    /// RFC 9110 sec. 8.6: Content-Length = 1*DIGIT; anything else is 400 (RFC 9112 sec. 6.3
    /// step 5).
    #[test]
    fn rfc9110_8_6_content_length_syntax() {
        assert_eq!(
            parse(&with_fields("Content-Length: 42\r\n")).unwrap().body,
            RequestBody::Length(42)
        );
        for bad in [
            "+1",
            "-1",
            "0x10",
            "1 2",
            "1_000",
            "",
            "18446744073709551616",
            "99999999999999999999999",
        ] {
            assert_eq!(
                status(&with_fields(&format!("Content-Length: {bad}\r\n"))),
                400,
                "{bad:?}"
            );
        }
    }

    /// RFC 9110 sec. 8.6: repeated identical Content-Length values collapse; differing ones
    /// are 400.
    #[test]
    fn rfc9110_8_6_repeated_content_length() {
        assert_eq!(
            parse(&with_fields("Content-Length: 7\r\nContent-Length: 7\r\n"))
                .unwrap()
                .body,
            RequestBody::Length(7)
        );
        assert_eq!(
            parse(&with_fields("Content-Length: 7, 7\r\n"))
                .unwrap()
                .body,
            RequestBody::Length(7)
        );
        assert_eq!(
            status(&with_fields("Content-Length: 7\r\nContent-Length: 8\r\n")),
            400
        );
        assert_eq!(status(&with_fields("Content-Length: 7, 8\r\n")), 400);
        assert_eq!(status(&with_fields("Content-Length: 7,\r\n")), 400);
    }

    /// RFC 9112 sec. 6.1 and 6.3 step 3: coregate refuses Transfer-Encoding together with
    /// Content-Length (the RFC permits that or ignoring Content-Length).
    #[test]
    fn rfc9112_6_1_transfer_encoding_with_content_length() {
        assert_eq!(
            status(&with_fields(
                "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"
            )),
            400
        );
        assert_eq!(
            status(&with_fields(
                "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"
            )),
            400
        );
    }

    /// RFC 9112 sec. 6.3 step 4: a request whose final transfer coding is not chunked is 400;
    /// chunked twice, empty elements and parameters on chunked likewise.
    #[test]
    fn rfc9112_6_3_final_coding_must_be_chunked() {
        for (value, expected) in [
            ("chunked", 0),
            ("CHUNKED", 0),
            ("Chunked ", 0),
            ("gzip", 400),
            ("chunked, gzip", 400),
            ("identity", 400),
            ("chunked, chunked", 400),
            (", chunked", 400),
            ("chunked,", 400),
            ("gzip,,chunked", 400),
            ("", 400),
            ("chunked;ext=1", 400),
            ("\"chunked\"", 400),
            ("xchunked", 400),
        ] {
            let buf = with_fields(&format!("Transfer-Encoding: {value}\r\n"));
            if expected == 0 {
                assert_eq!(parse(&buf).unwrap().body, RequestBody::Chunked, "{value:?}");
            } else {
                assert_eq!(status(&buf), expected, "{value:?}");
            }
        }
        assert_eq!(
            status(&with_fields(
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"
            )),
            400
        );
        assert_eq!(
            parse(&with_fields(
                "Transfer-Encoding: \r\nTransfer-Encoding: chunked\r\n"
            ))
            .map(|h| h.body),
            Err(RequestError::bad("invalid transfer-encoding"))
        );
    }

    /// RFC 9112 sec. 6.1: a transfer coding coregate does not implement before chunked is 501.
    #[test]
    fn rfc9112_6_1_unknown_coding_before_chunked_is_501() {
        assert_eq!(
            status(&with_fields("Transfer-Encoding: gzip, chunked\r\n")),
            501
        );
        assert_eq!(
            status(&with_fields(
                "Transfer-Encoding: br\r\nTransfer-Encoding: chunked\r\n"
            )),
            501
        );
    }

    /// Names that some servers fold into a framing field (`_` read as `-`) are refused.
    #[test]
    fn framing_field_lookalikes_are_refused() {
        assert_eq!(status(&with_fields("Transfer_Encoding: chunked\r\n")), 400);
        assert_eq!(status(&with_fields("Content_Length: 5\r\n")), 400);
        assert!(parse(&with_fields("X_Custom: 5\r\n")).is_ok());
    }

    /// RFC 9112 sec. 6.1: Transfer-Encoding in an HTTP/1.0 request means faulty framing (400).
    #[test]
    fn rfc9112_6_1_transfer_encoding_in_http10() {
        assert_eq!(
            status(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
    }

    // --- limits -----------------------------------------------------------------------------

    /// RFC 9112 sec. 3: a request line over the limit is 414, even before it ends.
    #[test]
    fn rfc9112_3_long_request_line_is_414() {
        let long = format!(
            "GET /{} HTTP/1.1\r\n",
            "a".repeat(Limits::DEFAULT_MAX_REQUEST_LINE)
        );
        let mut scanner = HeadScanner::default();
        let err = parse_request(
            long.as_bytes(),
            &mut scanner,
            &Limits::DEFAULT,
            &mut fields(),
        );
        assert_eq!(err.map_err(|e| e.status), Err(414));
        let unfinished = &long.as_bytes()[..Limits::DEFAULT_MAX_REQUEST_LINE + 1];
        let err = parse_request(unfinished, &mut scanner, &Limits::DEFAULT, &mut fields());
        assert_eq!(err.map_err(|e| e.status), Err(414));
    }

    /// RFC 6585 sec. 5: a head over the size limit, or with too many fields, is 431.
    #[test]
    fn rfc6585_5_large_heads_are_431() {
        let big = with_fields(&format!(
            "X: {}\r\n",
            "v".repeat(Limits::DEFAULT_MAX_HEAD_BYTES)
        ));
        assert_eq!(status(&big), 431);
        let unfinished = &big[..Limits::DEFAULT_MAX_HEAD_BYTES];
        let mut scanner = HeadScanner::default();
        let err = parse_request(unfinished, &mut scanner, &Limits::DEFAULT, &mut fields());
        assert_eq!(err.map_err(|e| e.status), Err(431));

        let many: String = (0..Limits::DEFAULT_MAX_HEADERS)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert_eq!(status(&with_fields(&many)), 431, "Host makes it 101");
        let many: String = (1..Limits::DEFAULT_MAX_HEADERS)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect();
        assert_eq!(parse(&with_fields(&many)).unwrap().field_count, 100);
    }

    #[test]
    fn the_field_array_caps_the_field_count_too() {
        let buf = with_fields("A: 1\r\nB: 2\r\n");
        let mut scanner = HeadScanner::default();
        let limits = Limits {
            max_headers: 2,
            ..Limits::DEFAULT
        };
        let mut small = [Field::EMPTY; 2];
        let err = parse_request(&buf, &mut scanner, &limits, &mut small);
        assert_eq!(err.map_err(|e| e.status), Err(431));
        let mut enough = [Field::EMPTY; 3];
        let limits = Limits {
            max_headers: 3,
            ..Limits::DEFAULT
        };
        assert!(parse_request(&buf, &mut scanner, &limits, &mut enough).is_ok());
    }

    // --- persistence, Connection, Upgrade, Expect -----------------------------------------

    /// RFC 9112 sec. 9.3: HTTP/1.1 persists unless `close`; HTTP/1.0 only with `keep-alive`.
    #[test]
    fn rfc9112_9_3_persistence() {
        let keep = |buf: &[u8]| parse(buf).unwrap().keep_alive;
        assert!(keep(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!keep(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        assert!(!keep(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, CLOSE\r\n\r\n"
        ));
        assert!(!keep(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(keep(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!keep(
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"
        ));
    }

    /// RFC 9110 sec. 7.6.1: Connection options name further hop-by-hop fields; coregate
    /// bounds their number and refuses one naming Host.
    #[test]
    fn rfc9110_7_6_1_connection_options() {
        let buf = with_fields("Connection: x-hop\r\nX-Hop: 1\r\nX-Kept: 2\r\nTE: trailers\r\n");
        let mut scanner = HeadScanner::default();
        let mut fields = fields();
        let head = parse_request(&buf, &mut scanner, &Limits::DEFAULT, &mut fields)
            .unwrap()
            .complete()
            .unwrap();
        let hop: Vec<bool> = fields[..head.field_count]
            .iter()
            .map(|f| f.hop_by_hop)
            .collect();
        assert_eq!(hop, [false, true, true, false, true]);
        let many = (0..17)
            .map(|i| format!("o{i}"))
            .collect::<Vec<_>>()
            .join(",");
        assert_eq!(
            status(&with_fields(&format!("Connection: {many}\r\n"))),
            400
        );
        assert_eq!(status(&with_fields("Connection: host\r\n")), 400);
        assert_eq!(status(&with_fields("Connection: a b\r\n")), 400);
    }

    /// RFC 9110 sec. 7.8: Upgrade counts with the `upgrade` option, and only in HTTP/1.1.
    #[test]
    fn rfc9110_7_8_upgrade() {
        let buf =
            b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(
            parse(buf).unwrap().upgrade.map(|u| u.of(buf)),
            Some(&b"websocket"[..])
        );
        let buf = b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(parse(buf).unwrap().upgrade, None);
        let buf = b"GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n";
        assert_eq!(parse(buf).unwrap().upgrade, None);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: a\r\nUpgrade: b\r\n\r\n"),
            400
        );
    }

    /// RFC 9110 sec. 10.1.1: 100-continue is honoured for HTTP/1.1 requests with a body;
    /// ignored in HTTP/1.0; any other expectation is 417.
    #[test]
    fn rfc9110_10_1_1_expect() {
        let expects = |buf: &[u8]| parse(buf).unwrap().expect_continue;
        assert!(expects(&with_fields(
            "Expect: 100-Continue\r\nContent-Length: 3\r\n"
        )));
        assert!(expects(&with_fields(
            "Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n"
        )));
        assert!(!expects(&with_fields("Expect: 100-continue\r\n")));
        assert!(!expects(&with_fields(
            "Expect: 100-continue\r\nContent-Length: 0\r\n"
        )));
        assert!(!expects(
            b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"
        ));
        assert_eq!(
            status(&with_fields("Expect: 200-ok\r\nContent-Length: 3\r\n")),
            417
        );
        assert_eq!(
            status(&with_fields(
                "Expect: 100-continue\r\nExpect: 100-continue\r\n"
            )),
            417
        );
    }

    #[test]
    fn errors_map_to_the_engine_error() {
        let err: Error = RequestError::bad("x").into();
        assert_eq!(
            (err.kind, err.side),
            (ErrorKind::Protocol, Side::Downstream)
        );
        let err: Error = TOO_MANY_FIELDS.into();
        assert_eq!(err.kind, ErrorKind::Limit);
    }

    /// Repeated credentials or request ids are accepted by the parser and flagged for the
    /// proxy, which reads one copy and decides about the others.
    #[test]
    fn repeated_singletons_are_flagged_on_the_head() {
        let head = parse(&with_fields(
            "Authorization: Bearer a\r\nAuthorization: Bearer b\r\n",
        ))
        .unwrap();
        assert!(head.repeated.authorization && !head.repeated.request_id);
        let head = parse(&with_fields("X-Request-Id: a\r\nX-Request-Id: b\r\n")).unwrap();
        assert!(head.repeated.request_id && !head.repeated.authorization);
        assert_eq!(
            parse(&with_fields("Authorization: x\r\n"))
                .unwrap()
                .repeated,
            RepeatedFields::default()
        );
    }

    #[test]
    fn pipelined_requests_parse_one_after_the_other() {
        let buf = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut scanner = HeadScanner::default();
        let mut fields = fields();
        let first = parse_request(buf, &mut scanner, &Limits::DEFAULT, &mut fields)
            .unwrap()
            .complete()
            .unwrap();
        assert_eq!(first.path.of(buf), b"/1");
        let rest = &buf[first.head_len..];
        let second = parse_request(rest, &mut scanner, &Limits::DEFAULT, &mut fields)
            .unwrap()
            .complete()
            .unwrap();
        assert_eq!(second.path.of(rest), b"/2");
    }
}
