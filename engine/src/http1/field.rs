//! Header fields as coregate sees them: which names matter to a proxy, which fields end at this
//! hop, and what the framing fields (`Content-Length`, `Transfer-Encoding`) and `Connection`
//! options say.
//!
//! It owns the per-field pass shared by requests and responses: turning httparse's headers into
//! [`Field`]s (spans plus classification) and summarising what the message-level decisions need.
//! The decisions themselves (which status, which body framing) belong to `request.rs` and
//! `response.rs`, because the RFC answers differ for the two directions.

use super::{Span, is_tchar, trim_ows};

/// The most `Connection` options one message may carry (RFC 9110 sec. 7.6.1). Real clients send
/// one or two; a longer list is refused rather than stored in a growable collection.
pub const MAX_CONNECTION_OPTIONS: usize = 16;

/// The field names coregate acts on. Matching is case-insensitive (RFC 9110 sec. 5.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FieldKind {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    Upgrade,
    Expect,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    XRequestId,
    Authorization,
    /// RFC 7239.
    Forwarded,
    XRealIp,
    XForwardedPort,
    XForwardedPrefix,
    /// Read by IIS and Symfony-style applications as the path actually requested.
    XOriginalUrl,
    /// Like [`FieldKind::XOriginalUrl`].
    XRewriteUrl,
    /// Only meaningful with `Upgrade: h2c` (RFC 9113 sec. 3.1), which coregate never relays.
    Http2Settings,
    #[default]
    Other,
}

impl FieldKind {
    /// Classifies a field name, ignoring ASCII case. Dispatches on length first so most names
    /// are rejected after one comparison.
    pub fn classify(name: &[u8]) -> FieldKind {
        let is = |canonical: &[u8]| name.eq_ignore_ascii_case(canonical);
        match name.len() {
            2 if is(b"te") => FieldKind::Te,
            4 if is(b"host") => FieldKind::Host,
            6 if is(b"expect") => FieldKind::Expect,
            7 if is(b"upgrade") => FieldKind::Upgrade,
            7 if is(b"trailer") => FieldKind::Trailer,
            9 if is(b"forwarded") => FieldKind::Forwarded,
            9 if is(b"x-real-ip") => FieldKind::XRealIp,
            10 if is(b"connection") => FieldKind::Connection,
            10 if is(b"keep-alive") => FieldKind::KeepAlive,
            12 if is(b"x-request-id") => FieldKind::XRequestId,
            13 if is(b"authorization") => FieldKind::Authorization,
            13 if is(b"x-rewrite-url") => FieldKind::XRewriteUrl,
            14 if is(b"content-length") => FieldKind::ContentLength,
            14 if is(b"http2-settings") => FieldKind::Http2Settings,
            14 if is(b"x-original-url") => FieldKind::XOriginalUrl,
            15 if is(b"x-forwarded-for") => FieldKind::XForwardedFor,
            16 if is(b"proxy-connection") => FieldKind::ProxyConnection,
            16 if is(b"x-forwarded-host") => FieldKind::XForwardedHost,
            16 if is(b"x-forwarded-port") => FieldKind::XForwardedPort,
            17 if is(b"transfer-encoding") => FieldKind::TransferEncoding,
            17 if is(b"x-forwarded-proto") => FieldKind::XForwardedProto,
            18 if is(b"x-forwarded-prefix") => FieldKind::XForwardedPrefix,
            _ => FieldKind::Other,
        }
    }

    /// Fields in which a client, or a proxy before coregate, says where the request came from or
    /// what it originally was: the client's address, scheme, host, port or path prefix
    /// (`X-Forwarded-*`, `X-Real-IP`, `Forwarded`), or the path to serve instead of the one
    /// routed (`X-Original-URL`, `X-Rewrite-URL`). An upstream may believe them, so they are
    /// only worth passing on from a trusted proxy; which of them coregate replaces, drops or
    /// extends is the forwarder's decision, not the parser's.
    pub const fn is_forwarding_claim(self) -> bool {
        matches!(
            self,
            FieldKind::XForwardedFor
                | FieldKind::XForwardedProto
                | FieldKind::XForwardedHost
                | FieldKind::XForwardedPort
                | FieldKind::XForwardedPrefix
                | FieldKind::XRealIp
                | FieldKind::Forwarded
                | FieldKind::XOriginalUrl
                | FieldKind::XRewriteUrl
        )
    }

    /// Fields that never cross coregate (RFC 9110 sec. 7.6.1 and the de-facto `Keep-Alive` and
    /// `Proxy-Connection`), plus the framing fields, which coregate regenerates because it
    /// re-frames every body it relays.
    pub const fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            FieldKind::Connection
                | FieldKind::KeepAlive
                | FieldKind::ProxyConnection
                | FieldKind::Te
                | FieldKind::Trailer
                | FieldKind::TransferEncoding
                | FieldKind::ContentLength
                | FieldKind::Upgrade
        )
    }
}

/// One field line of a parsed head: spans into the connection buffer plus what coregate needs
/// to know about it without looking at the bytes again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Field {
    pub name: Span,
    /// The value without leading and trailing whitespace (RFC 9112 sec. 5).
    pub value: Span,
    pub kind: FieldKind,
    /// True when the field must not be forwarded: a hop-by-hop kind, or a name listed as a
    /// `Connection` option of this message.
    pub hop_by_hop: bool,
}

impl Field {
    /// A placeholder for initialising the caller's scratch array.
    pub const EMPTY: Field = Field {
        name: Span::EMPTY,
        value: Span::EMPTY,
        kind: FieldKind::Other,
        hop_by_hop: false,
    };
}

/// What the `Connection` fields of a message say (RFC 9110 sec. 7.6.1).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Connection {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// The message lists `host` as a connection option, asking coregate to drop `Host`.
    pub names_host: bool,
}

/// The options being gathered during [`collect`]: the flags, plus the names of further fields
/// to drop. Kept out of [`FieldSummary`] so the 128-byte array is never copied around.
struct ConnectionOptions {
    flags: Connection,
    /// Options other than `close`, `keep-alive` and `upgrade`: the names of further fields to
    /// drop. Only the first `extra` entries are meaningful.
    names: [Span; MAX_CONNECTION_OPTIONS],
    extra: usize,
    /// All options seen, to enforce [`MAX_CONNECTION_OPTIONS`].
    count: usize,
}

impl ConnectionOptions {
    const NONE: ConnectionOptions = ConnectionOptions {
        flags: Connection {
            close: false,
            keep_alive: false,
            upgrade: false,
            names_host: false,
        },
        names: [Span::EMPTY; MAX_CONNECTION_OPTIONS],
        extra: 0,
        count: 0,
    };

    /// Adds the options of one `Connection` field value (`value` is its span in `buf`).
    /// Empty list elements are ignored (RFC 9110 sec. 5.6.1); anything that is not a token is
    /// refused.
    fn add(&mut self, buf: &[u8], value: Span) -> Result<(), FieldError> {
        let bytes = value.of(buf);
        let mut offset = 0;
        for element in bytes.split(|&b| b == b',') {
            let element_start = offset;
            offset += element.len() + 1;
            let token = trim_ows(element);
            if token.is_empty() {
                continue;
            }
            if !token.iter().all(|&b| is_tchar(b)) {
                return Err(FieldError::InvalidConnection);
            }
            self.count += 1;
            if self.count > MAX_CONNECTION_OPTIONS {
                return Err(FieldError::TooManyConnectionOptions);
            }
            if token.eq_ignore_ascii_case(b"close") {
                self.flags.close = true;
            } else if token.eq_ignore_ascii_case(b"keep-alive") {
                self.flags.keep_alive = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                self.flags.upgrade = true;
            } else {
                if token.eq_ignore_ascii_case(b"host") {
                    self.flags.names_host = true;
                }
                let lead = element.len() - trim_ows_start(element).len();
                let start = value.start as usize + element_start + lead;
                self.names[self.extra] = Span::new(start, start + token.len());
                self.extra += 1;
            }
        }
        Ok(())
    }

    /// Whether `name` is listed as an option (other than close / keep-alive / upgrade).
    fn lists(&self, buf: &[u8], name: &[u8]) -> bool {
        self.names[..self.extra]
            .iter()
            .any(|option| option.of(buf).eq_ignore_ascii_case(name))
    }
}

fn trim_ows_start(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    s
}

/// What the `Content-Length` fields of a message say (RFC 9110 sec. 8.6, RFC 9112 sec. 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContentLength {
    Absent,
    Valid(u64),
    /// Not `1*DIGIT`, empty, signed, or too big for a `u64`.
    Invalid,
    /// Several values that differ.
    Conflicting,
}

impl ContentLength {
    /// Folds one field value into the state. A value may be a list (`5, 5`); identical values
    /// collapse into one, as RFC 9110 sec. 8.6 permits, differing ones are a conflict.
    fn add(&mut self, value: &[u8]) {
        for element in value.split(|&b| b == b',') {
            let parsed = match parse_decimal(trim_ows(element)) {
                Some(n) => n,
                None => {
                    *self = ContentLength::Invalid;
                    return;
                }
            };
            *self = match *self {
                ContentLength::Absent => ContentLength::Valid(parsed),
                ContentLength::Valid(n) if n == parsed => ContentLength::Valid(n),
                ContentLength::Valid(_) => ContentLength::Conflicting,
                // An earlier error stands: invalid beats conflicting in the reason given.
                other => other,
            };
        }
    }
}

/// `1*DIGIT` as a `u64`: no sign, no whitespace, no hex, no empty string, no overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(n)
}

/// What the `Transfer-Encoding` fields of a message say (RFC 9112 sec. 6.1). Several fields
/// form one list, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransferEncoding {
    Absent,
    /// Exactly `chunked`, as the only coding.
    Chunked,
    /// `chunked` last, preceded by codings coregate does not decode (gzip and friends).
    ChunkedAfterOther,
    /// A well-formed list whose final coding is not `chunked`.
    NotChunked,
    /// An empty element, a non-token coding, parameters on `chunked`, or `chunked` twice.
    Invalid,
}

/// Why the fields of a message were refused outright (before any message-level decision).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FieldError {
    InvalidConnection,
    TooManyConnectionOptions,
}

/// Everything the message-level decisions need, gathered in one pass over the fields.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FieldSummary {
    pub count: usize,
    pub host: Option<Span>,
    pub host_repeated: bool,
    pub content_length: ContentLength,
    pub transfer_encoding: TransferEncoding,
    pub connection: Connection,
    pub upgrade: Option<Span>,
    pub upgrade_repeated: bool,
    pub expect: Option<Span>,
    pub expect_repeated: bool,
    /// The first `X-Request-Id` value that is forwarded (not named by a `Connection` option).
    pub request_id: Option<Span>,
    /// The first `X-Forwarded-For` value that is forwarded.
    pub forwarded_for: Option<Span>,
    /// A field spelled like a framing field with `_` for `-` (`Transfer_Encoding`).
    pub framing_lookalike: bool,
    pub repeated: RepeatedFields,
}

/// Fields that only make sense once, sent more than once: whoever reads one copy (the first)
/// must not forward the others unread. Counted as sent, `Connection` options regardless.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepeatedFields {
    /// `Authorization`: authentication reads one credential, the upstream may read another.
    pub authorization: bool,
    /// `X-Request-Id`: one id is vetted and logged, the upstream may log another.
    pub request_id: bool,
}

/// Turns httparse's headers into [`Field`]s in `out` and summarises them. `buf` is the buffer
/// httparse parsed; `out` must hold at least `headers.len()` fields (the caller sized
/// httparse's slots from it).
pub(crate) fn collect(
    buf: &[u8],
    headers: &[httparse::Header<'_>],
    out: &mut [Field],
) -> Result<FieldSummary, FieldError> {
    debug_assert!(out.len() >= headers.len());
    let mut summary = FieldSummary {
        count: 0,
        host: None,
        host_repeated: false,
        content_length: ContentLength::Absent,
        transfer_encoding: TransferEncoding::Absent,
        connection: Connection::default(),
        upgrade: None,
        upgrade_repeated: false,
        expect: None,
        expect_repeated: false,
        request_id: None,
        forwarded_for: None,
        framing_lookalike: false,
        repeated: RepeatedFields::default(),
    };
    let (mut authorization_seen, mut request_id_seen) = (false, false);
    let mut te_chunked_seen = false;
    let mut options = ConnectionOptions::NONE;

    for (header, slot) in headers.iter().zip(out.iter_mut()) {
        let name = header.name.as_bytes();
        let kind = FieldKind::classify(name);
        let value = Span::within(buf, header.value);
        *slot = Field {
            name: Span::within(buf, name),
            value,
            kind,
            hop_by_hop: kind.is_hop_by_hop(),
        };
        summary.count += 1;
        match kind {
            FieldKind::Host => {
                first_or_repeat(&mut summary.host, &mut summary.host_repeated, value)
            }
            FieldKind::ContentLength => summary.content_length.add(header.value),
            FieldKind::TransferEncoding => add_transfer_encoding(
                &mut summary.transfer_encoding,
                &mut te_chunked_seen,
                header.value,
            ),
            FieldKind::Connection => options.add(buf, value)?,
            FieldKind::Upgrade => {
                first_or_repeat(&mut summary.upgrade, &mut summary.upgrade_repeated, value)
            }
            FieldKind::Expect => {
                first_or_repeat(&mut summary.expect, &mut summary.expect_repeated, value)
            }
            FieldKind::XRequestId => {
                summary.request_id.get_or_insert(value);
                summary.repeated.request_id |= request_id_seen;
                request_id_seen = true;
            }
            FieldKind::Authorization => {
                summary.repeated.authorization |= authorization_seen;
                authorization_seen = true;
            }
            FieldKind::XForwardedFor => {
                summary.forwarded_for.get_or_insert(value);
            }
            FieldKind::Other => {
                summary.framing_lookalike |= is_framing_lookalike(name);
            }
            _ => {}
        }
    }

    // RFC 9110 sec. 7.6.1: a proxy removes every field named as a connection option. The
    // option may come after the field it names, hence a second pass, taken only when needed.
    if options.extra > 0 {
        for field in &mut out[..summary.count] {
            if !field.hop_by_hop && options.lists(buf, field.name.of(buf)) {
                field.hop_by_hop = true;
            }
        }
        // A request id or forwarding chain the client named as an option is not forwarded, so
        // it must not count as the one the upstream gets: otherwise `Connection: x-request-id`
        // would leave the upstream with no id at all.
        let forwarded = |kind: FieldKind| {
            out[..summary.count]
                .iter()
                .find(|f| f.kind == kind && !f.hop_by_hop)
                .map(|f| f.value)
        };
        summary.request_id = forwarded(FieldKind::XRequestId);
        summary.forwarded_for = forwarded(FieldKind::XForwardedFor);
    }
    summary.connection = options.flags;
    Ok(summary)
}

/// Whether `name` reads as `Content-Length` or `Transfer-Encoding` once `_` is taken for `-`.
/// coregate forwards such a field as an ordinary one, but servers that fold underscores into
/// dashes (CGI-style environments do) would see a second, unchecked framing field.
fn is_framing_lookalike(name: &[u8]) -> bool {
    let like = |canonical: &[u8]| {
        name.len() == canonical.len()
            && name.contains(&b'_')
            && name
                .iter()
                .zip(canonical)
                .all(|(&n, &c)| n.eq_ignore_ascii_case(&c) || (n == b'_' && c == b'-'))
    };
    like(b"content-length") || like(b"transfer-encoding")
}

fn first_or_repeat(first: &mut Option<Span>, repeated: &mut bool, value: Span) {
    if first.is_some() {
        *repeated = true;
    } else {
        *first = Some(value);
    }
}

/// Folds one `Transfer-Encoding` value into `state`; `chunked_seen` remembers a `chunked`
/// anywhere earlier in the list so that applying it twice is refused even when another coding
/// came in between (`chunked, gzip, chunked`).
fn add_transfer_encoding(state: &mut TransferEncoding, chunked_seen: &mut bool, value: &[u8]) {
    if *state == TransferEncoding::Invalid {
        return;
    }
    for element in value.split(|&b| b == b',') {
        let element = trim_ows(element);
        // Stricter than RFC 9110 sec. 5.6.1, which tolerates empty list elements: this field
        // decides framing, so anything odd is refused rather than interpreted.
        let (coding, has_params) = match element.iter().position(|&b| b == b';') {
            Some(semi) => (trim_ows(&element[..semi]), true),
            None => (element, false),
        };
        if coding.is_empty() || !coding.iter().all(|&b| is_tchar(b)) {
            *state = TransferEncoding::Invalid;
            return;
        }
        if coding.eq_ignore_ascii_case(b"chunked") {
            // `chunked` takes no parameters and is applied at most once (RFC 9112 sec. 6.1).
            if has_params || *chunked_seen {
                *state = TransferEncoding::Invalid;
                return;
            }
            *chunked_seen = true;
            *state = if *state == TransferEncoding::Absent {
                TransferEncoding::Chunked
            } else {
                TransferEncoding::ChunkedAfterOther
            };
        } else {
            *state = TransferEncoding::NotChunked;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_ignores_case() {
        assert_eq!(FieldKind::classify(b"HOST"), FieldKind::Host);
        assert_eq!(
            FieldKind::classify(b"Content-Length"),
            FieldKind::ContentLength
        );
        assert_eq!(
            FieldKind::classify(b"transfer-ENCODING"),
            FieldKind::TransferEncoding
        );
        assert_eq!(
            FieldKind::classify(b"X-Forwarded-For"),
            FieldKind::XForwardedFor
        );
        assert_eq!(
            FieldKind::classify(b"x-forwarded-proto"),
            FieldKind::XForwardedProto
        );
        assert_eq!(
            FieldKind::classify(b"X-Forwarded-Host"),
            FieldKind::XForwardedHost
        );
        assert_eq!(FieldKind::classify(b"x-request-id"), FieldKind::XRequestId);
        assert_eq!(
            FieldKind::classify(b"Proxy-Connection"),
            FieldKind::ProxyConnection
        );
        assert_eq!(FieldKind::classify(b"TE"), FieldKind::Te);
        assert_eq!(FieldKind::classify(b"Keep-Alive"), FieldKind::KeepAlive);
        assert_eq!(
            FieldKind::classify(b"HTTP2-Settings"),
            FieldKind::Http2Settings
        );
        assert_eq!(FieldKind::classify(b"hosts"), FieldKind::Other);
        assert_eq!(FieldKind::classify(b""), FieldKind::Other);
    }

    /// RFC 7239 and the de-facto forwarding fields are told apart from other fields, so the
    /// forwarder can decide what an untrusted client may say about the request's origin.
    #[test]
    fn forwarding_claims_are_classified() {
        for (name, kind) in [
            (&b"Forwarded"[..], FieldKind::Forwarded),
            (b"X-Real-IP", FieldKind::XRealIp),
            (b"x-forwarded-port", FieldKind::XForwardedPort),
            (b"X-Forwarded-Prefix", FieldKind::XForwardedPrefix),
            (b"X-Original-URL", FieldKind::XOriginalUrl),
            (b"x-rewrite-url", FieldKind::XRewriteUrl),
            (b"X-Forwarded-For", FieldKind::XForwardedFor),
            (b"x-forwarded-proto", FieldKind::XForwardedProto),
            (b"X-Forwarded-Host", FieldKind::XForwardedHost),
        ] {
            assert_eq!(FieldKind::classify(name), kind);
            assert!(kind.is_forwarding_claim(), "{kind:?}");
            assert!(
                !kind.is_hop_by_hop(),
                "{kind:?} is forwarded or replaced, not dropped"
            );
        }
        assert_eq!(
            FieldKind::classify(b"AUTHORIZATION"),
            FieldKind::Authorization
        );
        for kind in [
            FieldKind::Host,
            FieldKind::XRequestId,
            FieldKind::Authorization,
            FieldKind::Other,
        ] {
            assert!(!kind.is_forwarding_claim(), "{kind:?}");
        }
        assert_eq!(FieldKind::classify(b"x-forwarded-fo"), FieldKind::Other);
        assert_eq!(FieldKind::classify(b"forwarded-for"), FieldKind::Other);
    }

    #[test]
    fn hop_by_hop_kinds_are_the_rfc_list_plus_framing() {
        let hop: Vec<FieldKind> = [
            FieldKind::Host,
            FieldKind::ContentLength,
            FieldKind::TransferEncoding,
            FieldKind::Connection,
            FieldKind::KeepAlive,
            FieldKind::ProxyConnection,
            FieldKind::Te,
            FieldKind::Trailer,
            FieldKind::Upgrade,
            FieldKind::Expect,
            FieldKind::XForwardedFor,
            FieldKind::XRequestId,
            FieldKind::Other,
        ]
        .into_iter()
        .filter(|k| k.is_hop_by_hop())
        .collect();
        assert_eq!(
            hop,
            [
                FieldKind::ContentLength,
                FieldKind::TransferEncoding,
                FieldKind::Connection,
                FieldKind::KeepAlive,
                FieldKind::ProxyConnection,
                FieldKind::Te,
                FieldKind::Trailer,
                FieldKind::Upgrade,
            ]
        );
    }

    #[test]
    fn framing_lookalikes_are_spotted() {
        assert!(is_framing_lookalike(b"Transfer_Encoding"));
        assert!(is_framing_lookalike(b"content_length"));
        assert!(!is_framing_lookalike(b"Content-Length"));
        assert!(!is_framing_lookalike(b"x_content_length"));
        assert!(!is_framing_lookalike(b"Content_Lengths"));
        assert!(!is_framing_lookalike(b"Other_Field"));
    }

    fn content_length(values: &[&str]) -> ContentLength {
        let mut state = ContentLength::Absent;
        for value in values {
            state.add(value.as_bytes());
        }
        state
    }

    /// RFC 9110 sec. 8.6: Content-Length = 1*DIGIT.
    #[test]
    fn rfc9110_8_6_content_length_is_digits_only() {
        assert_eq!(content_length(&["0"]), ContentLength::Valid(0));
        assert_eq!(content_length(&["0042"]), ContentLength::Valid(42));
        assert_eq!(
            content_length(&["18446744073709551615"]),
            ContentLength::Valid(u64::MAX)
        );
        for bad in [
            "",
            "+5",
            "-5",
            "5 5",
            "0x10",
            "1e3",
            "5.0",
            "٣",
            "18446744073709551616",
        ] {
            assert_eq!(content_length(&[bad]), ContentLength::Invalid, "{bad:?}");
        }
    }

    /// RFC 9110 sec. 8.6: identical repeated values may be collapsed; differing ones are an
    /// error.
    #[test]
    fn rfc9110_8_6_repeated_content_length() {
        assert_eq!(content_length(&["5", "5"]), ContentLength::Valid(5));
        assert_eq!(content_length(&["5, 5"]), ContentLength::Valid(5));
        assert_eq!(content_length(&["5,5,005"]), ContentLength::Valid(5));
        assert_eq!(content_length(&["5", "6"]), ContentLength::Conflicting);
        assert_eq!(content_length(&["5, 6"]), ContentLength::Conflicting);
        assert_eq!(content_length(&["5,"]), ContentLength::Invalid);
        assert_eq!(content_length(&[",5"]), ContentLength::Invalid);
        assert_eq!(content_length(&["5", "x"]), ContentLength::Invalid);
    }

    fn transfer_encoding(values: &[&str]) -> TransferEncoding {
        let mut state = TransferEncoding::Absent;
        let mut seen = false;
        for value in values {
            add_transfer_encoding(&mut state, &mut seen, value.as_bytes());
        }
        state
    }

    /// RFC 9112 sec. 6.1 / 7: the transfer-coding list, read strictly.
    #[test]
    fn rfc9112_6_1_transfer_encoding_lists() {
        use TransferEncoding::*;
        assert_eq!(transfer_encoding(&["chunked"]), Chunked);
        assert_eq!(transfer_encoding(&["Chunked"]), Chunked);
        assert_eq!(transfer_encoding(&[" CHUNKED "]), Chunked);
        assert_eq!(transfer_encoding(&["gzip, chunked"]), ChunkedAfterOther);
        assert_eq!(transfer_encoding(&["gzip", "chunked"]), ChunkedAfterOther);
        assert_eq!(
            transfer_encoding(&["gzip;level=1, chunked"]),
            ChunkedAfterOther
        );
        assert_eq!(transfer_encoding(&["gzip"]), NotChunked);
        assert_eq!(transfer_encoding(&["chunked, gzip"]), NotChunked);
        assert_eq!(transfer_encoding(&["chunked", "gzip"]), NotChunked);
        assert_eq!(transfer_encoding(&["identity"]), NotChunked);
        assert_eq!(transfer_encoding(&["chunked, chunked"]), Invalid);
        assert_eq!(transfer_encoding(&["chunked", "chunked"]), Invalid);
        assert_eq!(transfer_encoding(&["chunked, gzip, chunked"]), Invalid);
        assert_eq!(transfer_encoding(&[", chunked"]), Invalid);
        assert_eq!(transfer_encoding(&["chunked,"]), Invalid);
        assert_eq!(transfer_encoding(&["gzip,,chunked"]), Invalid);
        assert_eq!(transfer_encoding(&[""]), Invalid);
        assert_eq!(transfer_encoding(&["chunked;x=1"]), Invalid);
        assert_eq!(transfer_encoding(&["chun ked"]), Invalid);
        assert_eq!(transfer_encoding(&["\"chunked\""]), Invalid);
    }

    fn headers_of<'b>(buf: &'b [u8], slots: &mut [httparse::Header<'b>]) -> usize {
        let (_, parsed) = httparse::parse_headers(buf, slots)
            .expect("valid fields")
            .unwrap();
        parsed.len()
    }

    fn summarise(buf: &[u8], out: &mut [Field]) -> Result<FieldSummary, FieldError> {
        let mut slots = [httparse::EMPTY_HEADER; 32];
        let n = headers_of(buf, &mut slots);
        collect(buf, &slots[..n], out)
    }

    /// RFC 9110 sec. 7.6.1: fields named by Connection options are hop-by-hop, whichever
    /// order they come in.
    #[test]
    fn rfc9110_7_6_1_connection_options_mark_fields() {
        let buf = b"X-Secret: 1\r\nConnection: keep-alive, X-Secret ,x-other\r\nX-Other: 2\r\nX-Kept: 3\r\nKeep-Alive: timeout=5\r\n\r\n";
        let mut out = [Field::EMPTY; 8];
        let summary = summarise(buf, &mut out).unwrap();
        assert_eq!(summary.count, 5);
        let hop: Vec<(&[u8], bool)> = out[..5]
            .iter()
            .map(|f| (f.name.of(buf), f.hop_by_hop))
            .collect();
        assert_eq!(
            hop,
            [
                (&b"X-Secret"[..], true),
                (b"Connection", true),
                (b"X-Other", true),
                (b"X-Kept", false),
                (b"Keep-Alive", true),
            ]
        );
        assert!(summary.connection.keep_alive && !summary.connection.close);
        assert_eq!(out[2].value.of(buf), b"2");
    }

    /// RFC 9110 sec. 7.6.1: a field named by a Connection option is not forwarded, so it is not
    /// the request's id or forwarding chain either; a later field of the same name still is.
    #[test]
    fn rfc9110_7_6_1_named_fields_are_not_the_request_id() {
        let mut out = [Field::EMPTY; 8];
        let buf = b"X-Request-Id: theirs\r\nConnection: x-request-id, x-forwarded-for\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n";
        let summary = summarise(buf, &mut out).unwrap();
        assert_eq!(summary.request_id, None);
        assert_eq!(summary.forwarded_for, None);
        let buf = b"X-Request-Id: a\r\nX-Request-Id: b\r\nConnection: x-other\r\n\r\n";
        let summary = summarise(buf, &mut out).unwrap();
        assert_eq!(summary.request_id.map(|s| s.of(buf)), Some(&b"a"[..]));
    }

    /// Singletons sent twice are flagged, whichever other fields come between the copies.
    #[test]
    fn repeated_singletons_are_flagged() {
        let mut out = [Field::EMPTY; 8];
        let buf = b"Authorization: Bearer a\r\nX-Request-Id: 1\r\nauthorization: Bearer b\r\n\r\n";
        let summary = summarise(buf, &mut out).unwrap();
        assert_eq!(
            summary.repeated,
            RepeatedFields {
                authorization: true,
                request_id: false
            }
        );
        let buf = b"X-Request-Id: 1\r\nConnection: x-request-id\r\nx-request-id: 2\r\n\r\n";
        let summary = summarise(buf, &mut out).unwrap();
        assert!(summary.repeated.request_id && !summary.repeated.authorization);
        let buf = b"Authorization: Basic x\r\nX-Request-Id: 1\r\n\r\n";
        assert_eq!(
            summarise(buf, &mut out).unwrap().repeated,
            RepeatedFields::default()
        );
    }

    #[test]
    fn connection_options_are_bounded_and_tokens() {
        let mut out = [Field::EMPTY; 8];
        let many = format!(
            "Connection: {}\r\n\r\n",
            (0..=MAX_CONNECTION_OPTIONS)
                .map(|i| format!("o{i}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert_eq!(
            summarise(many.as_bytes(), &mut out).err(),
            Some(FieldError::TooManyConnectionOptions)
        );
        let just_enough = format!(
            "Connection: {}\r\n\r\n",
            (0..MAX_CONNECTION_OPTIONS)
                .map(|i| format!("o{i}"))
                .collect::<Vec<_>>()
                .join(",,")
        );
        assert!(summarise(just_enough.as_bytes(), &mut out).is_ok());
        assert_eq!(
            summarise(b"Connection: close; x\r\n\r\n", &mut out).err(),
            Some(FieldError::InvalidConnection)
        );
        let summary = summarise(
            b"Connection: Close\r\nConnection: , Upgrade\r\n\r\n",
            &mut out,
        )
        .unwrap();
        assert!(summary.connection.close && summary.connection.upgrade);
    }
}
