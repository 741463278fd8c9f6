//! Writing the heads coregate sends: the request head forwarded upstream and the response head
//! returned to the client. Pure functions over parsed spans, run synchronously right after a
//! parse (the spans and the shard's field scratch are only valid until the next await).
//!
//! What is written, in order:
//!
//! | request to the upstream | response to the client |
//! |---|---|
//! | `METHOD path?query HTTP/1.1` (path normalised, then rewritten by the route) | `HTTP/1.1 status reason` |
//! | every client field except hop-by-hop ones, the ones the route drops or sets, `Expect`, `X-Forwarded-*` | every upstream field except hop-by-hop ones and the ones the route drops or sets |
//! | `host` from an absolute-form target, or the endpoint when an HTTP/1.0 client sent none | `content-length` for HEAD and 304 answers as the upstream sent it |
//! | the framing coregate chose: `content-length: n` or `transfer-encoding: chunked` | the framing coregate chose for the client |
//! | `x-forwarded-for`, `x-forwarded-proto`, `x-forwarded-host`: from a trusted proxy, its chain with its address appended and its proto and host kept; from anyone else, replaced (the client's address, `http`, the routed host) | `connection: close` / `keep-alive` as decided |
//! | `x-request-id` (the client's, or a new one) | the route's added fields |
//! | the route's added fields | |
//!
//! Raw framing bytes of a peer never pass through: `Content-Length`, `Transfer-Encoding` and
//! `Connection` are hop-by-hop for the parser and regenerated here.

use std::io::Write;
use std::net::IpAddr;

use crate::context::Scheme;
use crate::http1::{
    Field, FieldKind, HeadTooLarge, HeadWriter, Method, RequestBody, RequestHead, ResponseBody,
    ResponseHead, TargetForm, Version,
};
use crate::snapshot::{Edits, NameSet};

/// How the response body reaches the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFraming {
    /// No body (HEAD, 1xx, 204, 304).
    None,
    /// `content-length: n`, bytes relayed as they come.
    Length(u64),
    /// Re-framed as chunks (upstream sent chunked or close-delimited; HTTP/1.1 client).
    Chunked,
    /// Until close (HTTP/1.0 client and a body of unknown length).
    UntilClose,
}

impl ClientFraming {
    /// How a response body of this framing goes to a client of `client_version`: lengths are
    /// kept, bodies of unknown length are chunked for HTTP/1.1 and sent until close for
    /// HTTP/1.0, which knows no chunked coding (RFC 9112 sec. 7.1).
    pub fn for_response(body: ResponseBody, client_version: Version) -> ClientFraming {
        match body {
            ResponseBody::None => ClientFraming::None,
            ResponseBody::Length(length) => ClientFraming::Length(length),
            ResponseBody::Chunked | ResponseBody::CloseDelimited
                if client_version == Version::Http11 =>
            {
                ClientFraming::Chunked
            }
            ResponseBody::Chunked | ResponseBody::CloseDelimited => ClientFraming::UntilClose,
        }
    }
}

/// Everything the request head needs besides the parsed request.
pub struct RequestHeadInput<'a> {
    /// The path to forward: the routed (normalised) path, with the route's prefix rewrite
    /// applied (see `router::rewrite_path`).
    pub path: &'a [u8],
    pub edits: &'a Edits,
    pub client_ip: IpAddr,
    /// The scheme the client spoke to coregate: `x-forwarded-proto` unless a trusted proxy
    /// said otherwise.
    pub scheme: Scheme,
    /// The client is a trusted proxy (`forwarding.trusted_proxies`): its `X-Forwarded-*`
    /// fields are extended and kept rather than replaced, and its fields of
    /// `untrusted_drop` passed on.
    pub client_trusted: bool,
    /// Fields only a trusted proxy may send (`forwarding.drop_from_untrusted`).
    pub untrusted_drop: &'a NameSet,
    /// Write an RFC 7239 `Forwarded` field (`forwarding.forwarded_header`).
    pub forwarded_header: bool,
    /// Used as `Host` when an HTTP/1.0 client sent none.
    pub endpoint: std::net::SocketAddr,
    /// The request's id: the client's when it is passed on, else written as `x-request-id`.
    pub request_id: &'a [u8],
    /// The client sent an `X-Request-Id` that is not passed on (unsafe characters): it is
    /// dropped and `request_id` written instead.
    pub replace_request_id: bool,
    /// The protocol the client asks to switch to, when coregate relays the upgrade (written
    /// as `connection: upgrade` and `upgrade: <protocol>`).
    pub upgrade: Option<&'a [u8]>,
    /// What authentication established, for the upstream: the identity in its header, and
    /// forwarded claims. The client's own fields of these names were dropped by the route's
    /// edits.
    pub identity: Option<(&'a [u8], &'a [u8])>,
    pub claims: &'a [(Box<str>, Box<[u8]>)],
    /// A TLS listener's `client_cert_header` (lowercase) and the identity of the client's
    /// verified certificate, if any: the client's own fields of that name are dropped, and the
    /// identity written in their place.
    pub client_cert: Option<(&'a [u8], Option<&'a [u8]>)>,
}

/// A request head written for the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WrittenHead {
    pub len: usize,
    /// Where its `transfer-encoding: chunked` line starts, for a chunked body: a body buffered
    /// whole goes with a `content-length` instead ([`reframe_as_length`]).
    pub chunked_at: Option<usize>,
}

/// The framing line a chunked body's head carries.
const CHUNKED_FRAMING: &[u8] = b"transfer-encoding: chunked\r\n";

/// Writes the request head for the upstream into `out`.
pub fn write_request_head(
    out: &mut [u8],
    buf: &[u8],
    head: &RequestHead,
    fields: &[Field],
    input: &RequestHeadInput<'_>,
) -> Result<WrittenHead, HeadTooLarge> {
    let request = Parsed {
        buf,
        head,
        fields: &fields[..head.field_count],
    };
    let mut w = HeadWriter::new(out);
    write_request_line(&mut w, &request, input);
    write_client_fields(&mut w, &request, input);
    let chunked_at = write_framing(&mut w, &request, input);
    write_forwarding(&mut w, &request, input);
    if head.request_id.is_none() || input.replace_request_id {
        w.field(b"x-request-id", input.request_id);
    }
    if let Some((name, value)) = input.identity {
        w.field(name, value);
    }
    for (name, value) in input.claims {
        w.field(name.as_bytes(), value);
    }
    if let Some((name, Some(identity))) = input.client_cert {
        w.field(name, identity);
    }
    for (name, value) in &input.edits.add {
        w.field(name, value);
    }
    let len = w.finish()?;
    Ok(WrittenHead { len, chunked_at })
}

/// Rewrites the head `head[..written.len]` of a chunked body received whole so that it declares
/// the body's decoded `length` instead (`content-length: n` where `transfer-encoding: chunked`
/// was); returns the head's new length. A length line is never longer than the chunked one
/// (for up to ten digits), so the head shrinks in place.
///
/// # Panics
/// If the head has no chunked framing line, or the length has more than ten digits.
pub fn reframe_as_length(head: &mut [u8], written: WrittenHead, length: u64) -> usize {
    let at = written
        .chunked_at
        .expect("a head with a chunked framing line");
    assert_eq!(&head[at..at + CHUNKED_FRAMING.len()], CHUNKED_FRAMING);
    let mut line = [0u8; CHUNKED_FRAMING.len()];
    let line_len = {
        let mut w = HeadWriter::new(&mut line);
        w.field_u64(b"content-length", length);
        w.len()
    };
    assert!(
        line_len <= CHUNKED_FRAMING.len(),
        "a length line longer than the chunked one"
    );
    let rest = at + CHUNKED_FRAMING.len()..written.len;
    head.copy_within(rest, at + line_len);
    head[at..at + line_len].copy_from_slice(&line[..line_len]);
    written.len - (CHUNKED_FRAMING.len() - line_len)
}

/// A parsed request head with the bytes its spans point into.
struct Parsed<'a> {
    buf: &'a [u8],
    head: &'a RequestHead,
    /// The head's own fields.
    fields: &'a [Field],
}

impl Parsed<'_> {
    /// The authority of an absolute-form target, which replaces `Host` (RFC 9112 sec. 3.2.2).
    fn absolute_authority(&self) -> Option<crate::http1::Span> {
        match self.head.form {
            TargetForm::Absolute { authority, .. } => Some(authority),
            _ => None,
        }
    }

    /// The value of the first non-empty field of `kind` a trusted proxy sent.
    fn passed_on(&self, kind: FieldKind, trusted: bool) -> Option<&[u8]> {
        if !trusted {
            return None;
        }
        self.fields
            .iter()
            .find(|f| f.kind == kind && !f.hop_by_hop && !f.value.of(self.buf).is_empty())
            .map(|f| f.value.of(self.buf))
    }
}

/// `METHOD target HTTP/1.1`: the routed path (rewritten by the route) and the query.
fn write_request_line(w: &mut HeadWriter<'_>, request: &Parsed<'_>, input: &RequestHeadInput<'_>) {
    let head = request.head;
    w.raw(head.method_span.of(request.buf)).raw(b" ");
    // RFC 9112 sec. 3.2.4: an absolute-form OPTIONS with an empty path asks about the server,
    // and goes on as `OPTIONS *`.
    let server_wide = head.method == Method::Options
        && matches!(head.form, TargetForm::Absolute { .. })
        && head.path.is_empty()
        && head.query.is_none();
    if head.form == TargetForm::Asterisk || server_wide {
        w.raw(b"*");
    } else {
        w.raw(input.path);
        if let Some(query) = head.query {
            w.raw(b"?").raw(query.of(request.buf));
        }
    }
    w.raw(b" ").raw(Version::Http11.as_bytes()).raw(b"\r\n");
}

/// The client's fields, less hop-by-hop ones, the ones coregate writes itself, the ones only a
/// trusted proxy may send (from anyone else) and the ones the route drops.
fn write_client_fields(w: &mut HeadWriter<'_>, request: &Parsed<'_>, input: &RequestHeadInput<'_>) {
    let absolute = request.absolute_authority().is_some();
    for field in request.fields {
        if field.hop_by_hop {
            continue;
        }
        match field.kind {
            FieldKind::XForwardedFor
            | FieldKind::XForwardedProto
            | FieldKind::XForwardedHost
            | FieldKind::Expect
            | FieldKind::Http2Settings => continue,
            FieldKind::Host if absolute => continue,
            FieldKind::XRequestId if input.replace_request_id => continue,
            FieldKind::Forwarded if input.forwarded_header => continue,
            _ => {}
        }
        let name = field.name.of(request.buf);
        if input
            .client_cert
            .is_some_and(|(header, _)| header.eq_ignore_ascii_case(name))
        {
            continue;
        }
        let claim_dropped = !input.client_trusted && input.untrusted_drop.contains(name);
        if !claim_dropped && !input.edits.drops(name) {
            w.field(name, field.value.of(request.buf));
        }
    }
}

/// `host` where the client's own does not serve, the framing coregate chose, and the upgrade
/// being relayed; returns where a chunked framing line starts.
fn write_framing(
    w: &mut HeadWriter<'_>,
    request: &Parsed<'_>,
    input: &RequestHeadInput<'_>,
) -> Option<usize> {
    match (request.absolute_authority(), request.head.host) {
        (Some(authority), _) => {
            w.field(b"host", authority.of(request.buf));
        }
        (None, None) => {
            let mut text = [0u8; 64];
            let len = display(&mut text, &input.endpoint);
            w.field(b"host", &text[..len]);
        }
        (None, Some(_)) => {}
    }
    let mut chunked_at = None;
    match request.head.body {
        RequestBody::None => {}
        RequestBody::Length(n) => {
            w.field_u64(b"content-length", n);
        }
        RequestBody::Chunked => {
            chunked_at = Some(w.len());
            w.raw(CHUNKED_FRAMING);
        }
    }
    if let Some(protocol) = input.upgrade {
        w.field(b"connection", b"upgrade");
        w.field(b"upgrade", protocol);
    }
    chunked_at
}

/// `x-forwarded-for`, `-proto` and `-host`: a trusted proxy's are extended and kept, anyone
/// else's replaced.
fn write_forwarding(w: &mut HeadWriter<'_>, request: &Parsed<'_>, input: &RequestHeadInput<'_>) {
    let buf = request.buf;
    // x-forwarded-for: a trusted proxy's chain (every field, in order), then the client.
    w.raw(b"x-forwarded-for: ");
    if input.client_trusted {
        write_chain(w, request, FieldKind::XForwardedFor);
    }
    let mut ip = [0u8; 64];
    let ip_len = format_ip(&input.client_ip.to_canonical(), &mut ip);
    w.raw(&ip[..ip_len]).raw(b"\r\n");
    let trusted = input.client_trusted;
    let proto = request.passed_on(FieldKind::XForwardedProto, trusted);
    w.field(
        b"x-forwarded-proto",
        proto.unwrap_or(input.scheme.as_bytes()),
    );
    let host = request
        .passed_on(FieldKind::XForwardedHost, trusted)
        .or_else(|| request.head.route_host().map(|host| host.of(buf)));
    if let Some(host) = host {
        w.field(b"x-forwarded-host", host);
    }
    if input.forwarded_header {
        write_forwarded(w, request, input);
    }
}

/// A trusted proxy's chain of a list field (every field of `kind`, in order), each element
/// followed by `, `: this hop's element comes next.
fn write_chain(w: &mut HeadWriter<'_>, request: &Parsed<'_>, kind: FieldKind) {
    let elements = request
        .fields
        .iter()
        .filter(|f| f.kind == kind && !f.hop_by_hop)
        .map(|f| f.value.of(request.buf))
        .filter(|value| !value.is_empty());
    for value in elements {
        w.raw(value).raw(b", ");
    }
}

/// `forwarded` (RFC 7239): a trusted proxy's elements, then this hop's: `for` the client's
/// address, `host` the routed host, `proto` the scheme the client spoke. Values are quoted
/// where a token cannot hold them (sec. 4: IPv6 addresses, hosts with a port).
fn write_forwarded(w: &mut HeadWriter<'_>, request: &Parsed<'_>, input: &RequestHeadInput<'_>) {
    let buf = request.buf;
    w.raw(b"forwarded: ");
    if input.client_trusted {
        write_chain(w, request, FieldKind::Forwarded);
    }
    let client = input.client_ip.to_canonical();
    let mut ip = [0u8; 64];
    let ip_len = format_ip(&client, &mut ip);
    match client {
        std::net::IpAddr::V4(_) => w.raw(b"for=").raw(&ip[..ip_len]),
        std::net::IpAddr::V6(_) => w.raw(b"for=\"[").raw(&ip[..ip_len]).raw(b"]\""),
    };
    if let Some(host) = request.head.route_host() {
        // A host is a reg-name or address, with no `"` or `\\` (the parser refuses them).
        w.raw(b";host=\"").raw(host.of(buf)).raw(b"\"");
    }
    w.raw(b";proto=").raw(input.scheme.as_bytes()).raw(b"\r\n");
}

/// What the response head needs besides the parsed upstream response.
pub struct ResponseHeadInput<'a> {
    pub framing: ClientFraming,
    /// A `101` switching to this protocol: written with `connection: upgrade` and
    /// `upgrade: <protocol>` instead of framing.
    pub switching_to: Option<&'a [u8]>,
    /// The client connection closes after this response.
    pub close: bool,
    pub client_version: Version,
    pub edits: &'a Edits,
}

/// Writes the response head for the client into `out`; returns its length.
pub fn write_response_head(
    out: &mut [u8],
    buf: &[u8],
    head: &ResponseHead,
    fields: &[Field],
    input: &ResponseHeadInput<'_>,
) -> Result<usize, HeadTooLarge> {
    let mut w = HeadWriter::new(out);
    w.status_line(Version::Http11, head.status, head.reason.of(buf));
    for field in &fields[..head.field_count] {
        if field.hop_by_hop {
            continue;
        }
        let name = field.name.of(buf);
        if input.edits.drops(name) {
            continue;
        }
        w.field(name, field.value.of(buf));
    }
    match input.framing {
        ClientFraming::None => {
            // HEAD and 304 answers carry the length the body would have (RFC 9110 sec. 8.6).
            if let Some(length) = head.content_length
                && head.status != 204
                && !(100..200).contains(&head.status)
            {
                w.field_u64(b"content-length", length);
            }
        }
        ClientFraming::Length(n) => {
            w.field_u64(b"content-length", n);
        }
        ClientFraming::Chunked => {
            w.field(b"transfer-encoding", b"chunked");
        }
        ClientFraming::UntilClose => {}
    }
    match input.switching_to {
        Some(protocol) => {
            w.field(b"connection", b"upgrade");
            w.field(b"upgrade", protocol);
        }
        None => write_connection(&mut w, input.close, input.client_version),
    }
    for (name, value) in &input.edits.add {
        w.field(name, value);
    }
    w.finish()
}

/// Writes an interim (1xx) answer for the client: its status line and the upstream's fields
/// less hop-by-hop ones (`Link` of a `103 Early Hints`, say); returns its length. No framing:
/// an interim answer has no body.
pub fn write_interim_head(
    out: &mut [u8],
    buf: &[u8],
    head: &ResponseHead,
    fields: &[Field],
) -> Result<usize, HeadTooLarge> {
    let mut w = HeadWriter::new(out);
    w.status_line(Version::Http11, head.status, head.reason.of(buf));
    for field in fields[..head.field_count].iter().filter(|f| !f.hop_by_hop) {
        w.field(field.name.of(buf), field.value.of(buf));
    }
    w.finish()
}

/// `connection: close` when closing; `connection: keep-alive` for an HTTP/1.0 client that keeps
/// the connection (its default is to close).
pub fn write_connection(w: &mut HeadWriter<'_>, close: bool, client_version: Version) {
    if close {
        w.field(b"connection", b"close");
    } else if client_version == Version::Http10 {
        w.field(b"connection", b"keep-alive");
    }
}

/// Formats an address into a stack buffer: IPv4 by hand (this runs for every request, and the
/// formatting machinery costs several times more), IPv6 with `Display`.
fn format_ip(ip: &IpAddr, out: &mut [u8; 64]) -> usize {
    let IpAddr::V4(v4) = ip else {
        return display(out, ip);
    };
    let mut len = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            out[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            out[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        out[len] = b'0' + octet % 10;
        len += 1;
    }
    len
}

/// Formats a value with `Display` into a stack buffer (no allocation); returns the length.
fn display(out: &mut [u8], value: &dyn std::fmt::Display) -> usize {
    let capacity = out.len();
    let mut cursor: &mut [u8] = out;
    // An address never exceeds the buffer; if it did, the truncated text is still no CR/LF.
    let _ = write!(cursor, "{value}");
    capacity - cursor.len()
}

/// Writes a request id: 32 lowercase hex digits from the shard's seed and a counter.
pub fn request_id(seed: u64, number: u64, out: &mut [u8; 32]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    // A cheap mix (splitmix64) so ids from consecutive numbers do not look sequential.
    let mut z = number
        .wrapping_add(seed)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    for (i, word) in [seed, z].iter().enumerate() {
        for j in 0..16 {
            out[i * 16 + j] = HEX[((word >> (60 - 4 * j)) & 0xf) as usize];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::Method;
    use crate::http1::{HeadScanner, Limits, Parsed, parse_request, parse_response};

    fn forward(request: &[u8], edits: Edits) -> String {
        forward_from(request, edits, true)
    }

    fn forward_from(request: &[u8], edits: Edits, trusted: bool) -> String {
        let (out, written) = write_for(request, edits, trusted);
        String::from_utf8(out[..written.len].to_vec()).unwrap()
    }

    fn write_for(request: &[u8], edits: Edits, trusted: bool) -> (Vec<u8>, WrittenHead) {
        let mut fields = vec![Field::EMPTY; 100];
        let mut scanner = HeadScanner::new();
        let head =
            match parse_request(request, &mut scanner, &Limits::default(), &mut fields).unwrap() {
                Parsed::Complete(head) => head,
                Parsed::Partial => panic!("partial"),
            };
        let path = head.path.of(request).to_vec();
        let input = RequestHeadInput {
            path: &path,
            edits: &edits,
            client_ip: "192.0.2.7".parse().unwrap(),
            scheme: Scheme::Http,
            untrusted_drop: &NameSet::new(
                crate::config::defaults::DEFAULT_DROP_FROM_UNTRUSTED
                    .iter()
                    .copied(),
            ),
            forwarded_header: false,
            client_trusted: trusted,
            endpoint: "127.0.0.1:9001".parse().unwrap(),
            request_id: b"0123456789abcdef0123456789abcdef",
            replace_request_id: false,
            upgrade: None,
            identity: None,
            client_cert: None,
            claims: &[],
        };
        let mut out = vec![0u8; 4096];
        let written = write_request_head(&mut out, request, &head, &fields, &input).unwrap();
        (out, written)
    }

    #[test]
    fn hop_by_hop_fields_go_and_forwarding_fields_are_added() {
        let head = forward(
            b"GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive, x-secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nAccept: */*\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n",
            Edits::default(),
        );
        assert_eq!(
            head,
            "GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nx-forwarded-for: 10.0.0.1, 192.0.2.7\r\n\
             x-forwarded-proto: http\r\nx-forwarded-host: example.com\r\nx-request-id: 0123456789abcdef0123456789abcdef\r\n\r\n"
        );
    }

    #[test]
    fn an_untrusted_client_cannot_supply_forwarding_fields() {
        let request = b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Forwarded-For: 10.0.0.1\r\n\
                        X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.test\r\n\r\n";
        let untrusted = forward_from(request, Edits::default(), false);
        assert!(
            untrusted.contains(
                "x-forwarded-for: 192.0.2.7\r\nx-forwarded-proto: http\r\n\
                                x-forwarded-host: example.com\r\n"
            ),
            "{untrusted}"
        );
        let trusted = forward_from(request, Edits::default(), true);
        assert!(
            trusted.contains(
                "x-forwarded-for: 10.0.0.1, 192.0.2.7\r\nx-forwarded-proto: https\r\n\
                              x-forwarded-host: evil.test\r\n"
            ),
            "{trusted}"
        );
    }

    #[test]
    fn a_server_wide_options_goes_on_as_asterisk() {
        let head = forward(
            b"OPTIONS http://example.com:8001 HTTP/1.1\r\nHost: example.com:8001\r\n\r\n",
            Edits::default(),
        );
        assert!(head.starts_with("OPTIONS * HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("host: example.com:8001\r\n"), "{head}");
        let head = forward(
            b"OPTIONS http://example.com/a HTTP/1.1\r\nHost: example.com\r\n\r\n",
            Edits::default(),
        );
        assert!(head.starts_with("OPTIONS /a HTTP/1.1\r\n"), "{head}");
    }

    #[test]
    fn http2_settings_never_goes_upstream() {
        let head = forward(
            b"GET / HTTP/1.1\r\nHost: h\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n",
            Edits::default(),
        );
        assert!(
            !head.to_ascii_lowercase().contains("http2-settings"),
            "{head}"
        );
    }

    #[test]
    fn framing_is_regenerated() {
        let head = forward(
            b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n",
            Edits::default(),
        );
        assert!(head.contains("content-length: 5\r\n"), "{head}");
        assert!(!head.contains("Content-Length"), "{head}");
        let head = forward(
            b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
            Edits::default(),
        );
        assert!(head.contains("transfer-encoding: chunked\r\n"), "{head}");
        assert!(!head.contains("Transfer-Encoding"), "{head}");
    }

    /// A chunked body received whole is declared by its length: the framing line is replaced
    /// in place, every other byte of the head kept, for every number of digits up to ten.
    #[test]
    fn a_chunked_head_is_reframed_as_a_length() {
        let request =
            b"POST /p HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nAccept: */*\r\n\r\n";
        let (chunked, written) = write_for(request, Edits::default(), true);
        let at = written.chunked_at.expect("the chunked line is found");
        let chunked = &chunked[..written.len];
        assert!(chunked[at..].starts_with(b"transfer-encoding: chunked\r\n"));
        for length in [0, 7, 65_536, 9_999_999_999] {
            let mut head = chunked.to_vec();
            let len = reframe_as_length(&mut head, written, length);
            let expected = String::from_utf8(chunked.to_vec()).unwrap().replace(
                "transfer-encoding: chunked\r\n",
                &format!("content-length: {length}\r\n"),
            );
            assert_eq!(String::from_utf8(head[..len].to_vec()).unwrap(), expected);
        }
        let (_, length_head) = write_for(
            b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\n",
            Edits::default(),
            true,
        );
        assert_eq!(length_head.chunked_at, None);
    }

    #[test]
    fn route_edits_drop_and_set_fields() {
        let edits = Edits {
            drop: NameSet::new(["x-remove", "x-set"]),
            add: vec![(b"x-set".as_slice().into(), b"mine".as_slice().into())],
        };
        let head = forward(
            b"GET / HTTP/1.1\r\nHost: h\r\nX-Remove: a\r\nX-Set: theirs\r\n\r\n",
            edits,
        );
        assert!(
            !head.contains("X-Remove") && !head.contains("theirs"),
            "{head}"
        );
        assert!(head.ends_with("x-set: mine\r\n\r\n"), "{head}");
    }

    #[test]
    fn an_absolute_target_becomes_origin_form_with_its_host() {
        let head = forward(
            b"GET http://example.org/x HTTP/1.1\r\nHost: other\r\n\r\n",
            Edits::default(),
        );
        assert!(head.starts_with("GET /x HTTP/1.1\r\n"), "{head}");
        assert!(
            head.contains("host: example.org\r\n") && !head.contains("other"),
            "{head}"
        );
    }

    #[test]
    fn response_heads_get_coregate_framing() {
        let response = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nServer: up\r\n\r\nhello";
        let mut fields = vec![Field::EMPTY; 100];
        let mut scanner = HeadScanner::new();
        let head = parse_response(
            response,
            &mut scanner,
            &Limits::default(),
            &mut fields,
            Method::Get,
        )
        .unwrap()
        .complete()
        .unwrap();
        let input = ResponseHeadInput {
            framing: ClientFraming::Length(5),
            switching_to: None,
            close: true,
            client_version: Version::Http11,
            edits: &Edits::default(),
        };
        let mut out = vec![0u8; 1024];
        let len = write_response_head(&mut out, response, &head, &fields, &input).unwrap();
        assert_eq!(
            std::str::from_utf8(&out[..len]).unwrap(),
            "HTTP/1.1 200 OK\r\nServer: up\r\ncontent-length: 5\r\nconnection: close\r\n\r\n"
        );
    }

    #[test]
    fn addresses_format_like_display() {
        for text in [
            "0.0.0.0",
            "192.0.2.7",
            "10.100.9.255",
            "255.255.255.255",
            "::1",
            "2001:db8::5",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            let mut out = [0u8; 64];
            let len = format_ip(&ip, &mut out);
            assert_eq!(&out[..len], text.as_bytes());
        }
    }

    #[test]
    fn request_ids_are_hex_and_differ() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        request_id(42, 1, &mut a);
        request_id(42, 2, &mut b);
        assert_ne!(a, b);
        assert!(a.iter().all(|c| c.is_ascii_hexdigit()));
    }
}
