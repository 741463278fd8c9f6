//! HTTP/1.1 conformance end to end: one test per framing and parsing rule coregate holds at the
//! edge, each named after its RFC section (RFC 9112 for HTTP/1.1 messages, RFC 9110 for their
//! semantics, RFC 3986 for paths). Every test runs a raw client against coregate in front of a
//! recording upstream over loopback, for both I/O mechanisms, and asserts on both ends:
//!
//! - what the client got: the status, `connection: close`, and whether the connection closed;
//! - what the upstream saw, byte for byte: nothing at all for a refused request; otherwise a
//!   head with exactly one framing field, written by coregate (`content-length: n` or
//!   `transfer-encoding: chunked`, never the client's spelling), no hop-by-hop field, and the
//!   `x-forwarded-*` fields coregate sets, whatever the client tried.
//!
//! The request-smuggling classes covered: CL.TE and TE.CL, repeated, listed, signed, hex and
//! empty Content-Length, obfuscated Transfer-Encoding, Transfer-Encoding in HTTP/1.0, chunk
//! sizes and extensions, bare CR and LF, NUL, obs-fold, whitespace before the colon, Host
//! confusion, absolute-form, path tricks against a separate `/admin` route, bytes pipelined
//! behind an Upgrade, bodies left unread before reuse, early upstream answers, and upstream
//! responses framed two ways or followed by stray bytes.
//!
//! Where RFC 9112 leaves the choice to the recipient, the test says which choice coregate made.

use std::sync::Arc;
use std::time::Duration;

use coregate_engine::config::Config;
use coregate_tests::client::Client;
use coregate_tests::harness::{
    Coregate, FORWARD_ALL, TLS, TRANSPORTS, config_with_upstreams, exchange, start,
};
use coregate_tests::upstream::{Recorded, Reply, Upstream, echo, ok, ok_chunked};

/// Each request, on its own connection, is answered `status` with `connection: close` and a
/// short reason, and the connection closes. Returns nothing: the caller checks the upstream.
fn assert_refused(io: &str, proxy: &Coregate, status: u16, requests: &[&[u8]]) {
    for request in requests {
        let (response, closed) = exchange(proxy, request);
        let shown = String::from_utf8_lossy(request);
        assert_eq!(response.status, status, "{io}: {shown:?}");
        assert_eq!(
            response.field("connection"),
            Some("close"),
            "{io}: {shown:?}"
        );
        assert!(
            !response.body.is_empty(),
            "{io}: a reason is given for {shown:?}"
        );
        assert!(closed, "{io}: connection left open after {shown:?}");
    }
}

/// The upstream never heard of the refused requests: no connection, no byte.
fn assert_untouched(io: &str, upstream: &Upstream) {
    assert_eq!(
        upstream.connections(),
        0,
        "{io}: a refused request reached the upstream: {:?}",
        String::from_utf8_lossy(&upstream.received_all())
    );
}

/// Starts coregate in front of an echo upstream, refuses every request with `status`, and checks
/// the upstream saw nothing.
fn refuses_all(status: u16, requests: &[&[u8]]) {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        assert_refused(io, &proxy, status, requests);
        assert_untouched(io, &upstream);
    }
}

/// The framing field lines of a raw head (`content-length` / `transfer-encoding`, any case),
/// as sent.
fn framing_lines(raw_head: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(raw_head)
        .split("\r\n")
        .filter(|line| {
            let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
            name == "content-length" || name == "transfer-encoding"
        })
        .map(str::to_string)
        .collect()
}

/// A request body refused while it streams: answered `status` and closed, and the upstream
/// recorded no complete request (coregate may have sent the head before the bad bytes came).
/// None of the client's own chunk framing ever reaches the upstream.
fn refuses_body(status: u16, requests: &[&[u8]], never_forwarded: &[&str]) {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        assert_refused(io, &proxy, status, requests);
        assert!(upstream.requests().is_empty(), "{io}: a request completed");
        let seen = String::from_utf8_lossy(&upstream.received_all()).into_owned();
        for bytes in never_forwarded {
            assert!(
                !seen.contains(bytes),
                "{io}: {bytes:?} reached the upstream: {seen:?}"
            );
        }
    }
}

// --- RFC 9112 sec. 2: message format ---------------------------------------------------------

/// RFC 9112 sec. 2.2: a recipient MAY accept a bare LF as a line terminator. coregate's choice:
/// it refuses it everywhere (head lines, the empty line, chunk lines) with 400 and closes, since
/// a server behind it that splits lines differently would read another message. coregate writes
/// CRLF only (every other test asserts on CRLF-terminated bytes).
#[test]
fn rfc9112_2_2_bare_lf_is_refused() {
    refuses_all(
        400,
        &[
            b"GET / HTTP/1.1\nhost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\n\n",
            b"GET / HTTP/1.1\r\nhost: a\r\nx: 1\nGET /admin HTTP/1.1\r\n\r\n",
        ],
    );
    refuses_body(
        400,
        &[
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\n0\r\n\r\n",
        ],
        &["5\nhello", "hello\n0"],
    );
}

/// RFC 9112 sec. 2.2: a bare CR outside content is invalid; coregate refuses it (400, close).
#[test]
fn rfc9112_2_2_bare_cr_is_refused() {
    refuses_all(
        400,
        &[
            b"GET / HTTP/1.1\r\nhost: a\rx: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nx: a\rb\r\nhost: a\r\n\r\n",
            b"GET /\r HTTP/1.1\r\nhost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\r\n\r\n",
        ],
    );
    refuses_body(
        400,
        &[b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5\rhello\r\n0\r\n\r\n"],
        &["hello"],
    );
}

/// RFC 9110 sec. 5.5: field values are VCHAR, SP, HTAB and obs-text; NUL and other controls are
/// invalid, in names, values, the method and the target (400, close).
#[test]
fn rfc9110_5_5_nul_and_controls_are_refused() {
    refuses_all(
        400,
        &[
            b"GET / HTTP/1.1\r\nhost: a\r\nx: a\0b\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\0.example\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\nx\0: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\nx: a\x01b\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\nx: a\x7fb\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\ntransfer-encoding:\x0bchunked\r\n\r\n",
            b"GET /\0 HTTP/1.1\r\nhost: a\r\n\r\n",
            b"G\0T / HTTP/1.1\r\nhost: a\r\n\r\n",
        ],
    );
}

// --- RFC 9112 sec. 3: request line, target, Host ---------------------------------------------

/// RFC 9112 sec. 3 and RFC 9110 sec. 9.1: method = token, single SP between the parts,
/// HTTP-version is `HTTP/` DIGIT `.` DIGIT of major version 1 (400, close; for `HTTP/1.2` and
/// up, see `rfc9110_2_5_http_1_2_is_processed_as_http_1_1`).
#[test]
fn rfc9112_3_invalid_request_lines_are_refused() {
    refuses_all(
        400,
        &[
            b"G@T / HTTP/1.1\r\nhost: a\r\n\r\n",
            b"G(T / HTTP/1.1\r\nhost: a\r\n\r\n",
            b"GET  / HTTP/1.1\r\nhost: a\r\n\r\n",
            b"GET / HTTP/1.1 \r\nhost: a\r\n\r\n",
            b"GET /\tx HTTP/1.1\r\nhost: a\r\n\r\n",
            b"GET / HTTP/2.0\r\nhost: a\r\n\r\n",
            b"GET / http/1.1\r\nhost: a\r\n\r\n",
            b"GET / HTTP/1.10\r\nhost: a\r\n\r\n",
            b"GET /\r\nhost: a\r\n\r\n",
            b" GET / HTTP/1.1\r\nhost: a\r\n\r\n",
        ],
    );
}

/// RFC 9110 sec. 2.5: a recipient SHOULD process a message with a higher minor version than it
/// implements as the highest minor version it conforms to (505 is for refusing a major
/// version). coregate's choice: follow the SHOULD. `HTTP/1.2` is read with every HTTP/1.1 rule
/// (a missing Host is still 400), forwarded as `HTTP/1.1`, answered `HTTP/1.1`, and the
/// connection persists as for HTTP/1.1.
#[test]
fn rfc9110_2_5_http_1_2_is_processed_as_http_1_1() {
    refuses_all(
        400,
        &[
            b"GET / HTTP/1.2\r\n\r\n",
            b"GET / HTTP/1.2\r\nhost: a\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        ],
    );
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        client.send(b"POST /one HTTP/1.2\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello");
        let response = client.read_response(false).expect("a response");
        assert_eq!((response.status, response.version), (200, 1), "{io}");
        assert_eq!(response.field("connection"), None, "{io}");
        client.send(b"GET /two HTTP/1.9\r\nhost: a\r\n\r\n");
        let response = client.read_response(false).expect("a second response");
        assert_eq!(response.status, 200, "{io}");
        let seen = upstream.wait_for(2);
        assert_eq!((seen[0].version, seen[1].version), (1, 1), "{io}");
        assert_eq!(seen[0].target, "/one", "{io}");
        assert_eq!(seen[0].body, b"hello", "{io}");
        assert!(
            seen[0].raw_head.starts_with(b"POST /one HTTP/1.1\r\n"),
            "{io}: {:?}",
            String::from_utf8_lossy(&seen[0].raw_head)
        );
    }
}

/// RFC 9112 sec. 3.2: the request-target is origin-, absolute-, authority- (CONNECT only) or
/// asterisk-form (OPTIONS only); a fragment, raw non-ASCII bytes or another scheme is 400.
#[test]
fn rfc9112_3_2_invalid_request_targets_are_refused() {
    refuses_all(
        400,
        &[
            b"GET /a#b HTTP/1.1\r\nhost: a\r\n\r\n",
            b"GET /caf\xc3\xa9 HTTP/1.1\r\nhost: a\r\n\r\n",
            b"GET * HTTP/1.1\r\nhost: a\r\n\r\n",
            b"GET a.example:80 HTTP/1.1\r\nhost: a\r\n\r\n",
            b"GET mailto:x@y HTTP/1.1\r\nhost: a\r\n\r\n",
            b"GET http://user@b.example/ HTTP/1.1\r\nhost: b.example\r\n\r\n",
            b"GET http:///x HTTP/1.1\r\nhost: a\r\n\r\n",
            b"GET ftp://b.example/ HTTP/1.1\r\nhost: a\r\n\r\n",
        ],
    );
}

/// RFC 9112 sec. 3.2: an HTTP/1.1 request needs exactly one valid Host; any request with more
/// than one, or an invalid one, is 400. RFC 9110 sec. 7.6.1: a client cannot ask a proxy to
/// drop Host by naming it in Connection (400).
#[test]
fn rfc9112_3_2_host_must_be_single_and_valid() {
    refuses_all(
        400,
        &[
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\nhost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n",
            b"GET / HTTP/1.0\r\nhost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost:\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a b\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a/b\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: user@a\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a:port\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a, b\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a:99999\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\nconnection: host\r\n\r\n",
        ],
    );
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let (response, _) = exchange(&proxy, b"GET /v6 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
        assert_eq!(response.status, 200, "{io}");
        let seen = upstream.wait_for(1);
        assert_eq!(seen[0].fields_named("host"), ["[::1]:8080"], "{io}");
    }
}

/// RFC 3986 sec. 3.2.2 lets a reg-name be percent-encoded, but coregate routes on the host as
/// sent while an upstream may decode it: `ex%61mple.com` would be routed as one name and served
/// as another. coregate's choice: refuse `%` in Host and in an absolute-form authority (400,
/// close) rather than decode it; no HTTP client encodes a host name.
#[test]
fn rfc3986_3_2_2_percent_encoded_hosts_are_refused() {
    refuses_all(
        400,
        &[
            b"GET / HTTP/1.1\r\nhost: ex%61mple.com\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: admin%2eexample.com:80\r\n\r\n",
            b"GET / HTTP/1.0\r\nhost: %41\r\n\r\n",
            b"GET http://ex%61mple.com/ HTTP/1.1\r\nhost: example.com\r\n\r\n",
        ],
    );
}

/// RFC 9112 sec. 3.2.2: with an absolute-form target the authority is the host, overriding
/// Host. coregate forwards origin-form, with exactly one Host, generated from the authority, and
/// that authority in `x-forwarded-host`. An http URI without a path means `/` (RFC 9110
/// sec. 4.2.3).
#[test]
fn rfc9112_3_2_2_absolute_form_takes_host_from_its_authority() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        for request in [
            &b"GET http://b.example:8080/x?y=1 HTTP/1.1\r\nHost: a.example\r\n\r\n"[..],
            b"GET HTTP://B.example?q HTTP/1.1\r\nHost: a.example\r\n\r\n",
            b"GET http://b.example HTTP/1.1\r\nHost: b.example\r\n\r\n",
        ] {
            client.send(request);
            let response = client.read_response(false).expect("a response");
            assert_eq!(
                response.status,
                200,
                "{io}: {:?}",
                String::from_utf8_lossy(request)
            );
        }
        let seen = upstream.wait_for(3);
        let targets: Vec<&str> = seen.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(targets, ["/x?y=1", "/?q", "/"], "{io}");
        assert_eq!(seen[0].fields_named("host"), ["b.example:8080"], "{io}");
        assert_eq!(
            seen[0].fields_named("x-forwarded-host"),
            ["b.example:8080"],
            "{io}"
        );
        assert_eq!(seen[1].fields_named("host"), ["B.example"], "{io}");
        assert!(
            !String::from_utf8_lossy(&seen[0].raw_head).contains("a.example"),
            "{io}: the overridden Host was forwarded"
        );
    }
}

/// RFC 9112 sec. 3.2: a request carries exactly one Host, and a server answers 400 to more. A
/// route adding `Host` would have coregate forward two for absolute-form and HTTP/1.0 requests
/// (the one it writes and the route's), and one adding `X-Forwarded-Proto` or `X-Request-Id`
/// would put the route's value beside coregate's. coregate's choice: refuse such edits when
/// the configuration is read (never emit both), naming file, line, column and key.
#[test]
fn rfc9112_3_2_route_edits_cannot_add_a_second_host_or_forwarding_field() {
    let upstream = Upstream::start(echo());
    for (edit, key) in [
        (
            "add_request_headers = { \"Host\" = \"internal\" }",
            "route[1].add_request_headers.Host",
        ),
        (
            "add_request_headers = { \"X-Forwarded-Proto\" = \"https\" }",
            "route[1].add_request_headers.X-Forwarded-Proto",
        ),
        (
            "add_request_headers = { \"x-request-id\" = \"fixed\" }",
            "route[1].add_request_headers.x-request-id",
        ),
        (
            "remove_request_headers = [\"X-Request-Id\"]",
            "route[1].remove_request_headers[1]",
        ),
    ] {
        let text = config_with_upstreams(
            "uring",
            "0",
            &format!(
                "[[upstream]]\nname = \"up\"\nendpoints = [\"{}\"]\n",
                upstream.addr()
            ),
            &format!("{FORWARD_ALL}{edit}\n"),
        );
        let errors = match Config::parse(&text, "edits.toml") {
            Ok(_) => panic!("{edit} was accepted"),
            Err(errors) => errors.to_string(),
        };
        assert!(
            errors.contains(&format!(": {key}: ")) && errors.starts_with("edits.toml:"),
            "{edit}: {errors}"
        );
    }
    assert_untouched("config", &upstream);
}

// --- RFC 9112 sec. 3 / RFC 6585 sec. 5: limits -----------------------------------------------

/// RFC 9112 sec. 3: a request line over the limit is 414; RFC 6585 sec. 5: a field over the
/// head limit, a head over it, or too many fields is 431. Nothing is dropped or truncated, and
/// nothing reaches the upstream.
#[test]
fn rfc9112_3_and_rfc6585_5_oversized_heads_are_414_and_431() {
    let long_line = format!("GET /{} HTTP/1.1\r\nhost: a\r\n\r\n", "a".repeat(9000));
    let long_field = format!(
        "GET / HTTP/1.1\r\nhost: a\r\nx: {}\r\n\r\n",
        "v".repeat(17_000)
    );
    let mut many = String::from("GET / HTTP/1.1\r\nhost: a\r\n");
    for i in 0..100 {
        many.push_str(&format!("x-{i}: v\r\n"));
    }
    many.push_str("\r\n");
    refuses_all(414, &[long_line.as_bytes()]);
    refuses_all(431, &[long_field.as_bytes(), many.as_bytes()]);
}

// --- RFC 9112 sec. 5: field lines ------------------------------------------------------------

/// RFC 9112 sec. 5.1: no whitespace between a field name and the colon; a server MUST reject
/// such a request with 400 (the classic `Transfer-Encoding : chunked` smuggle).
#[test]
fn rfc9112_5_1_whitespace_before_the_colon_is_refused() {
    refuses_all(
        400,
        &[
            b"GET / HTTP/1.1\r\nhost : a\r\n\r\n",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding : chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length\t: 5\r\n\r\nhello",
            b"GET / HTTP/1.1\r\nhost: a\r\n: empty-name\r\n\r\n",
        ],
    );
}

/// RFC 9112 sec. 5.2: obs-fold in a request is refused with 400 (a server MAY instead unfold
/// it; coregate does not), including a folded Transfer-Encoding and a first field line that
/// starts with whitespace.
#[test]
fn rfc9112_5_2_obs_fold_is_refused() {
    refuses_all(
        400,
        &[
            b"GET / HTTP/1.1\r\nhost: a\r\nx: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nhost: a\r\nx: a\r\n\tb\r\n\r\n",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip\r\n chunked\r\n\r\n0\r\n\r\n",
            b"GET / HTTP/1.1\r\n host: a\r\n\r\n",
        ],
    );
}

// --- RFC 9112 sec. 6: message body framing ---------------------------------------------------

/// RFC 9112 sec. 6.1 and 6.3 step 3: Transfer-Encoding together with Content-Length "ought to
/// be handled as an error"; a server MAY instead drop Content-Length, read chunked, and close
/// afterwards. coregate's choice: refuse (400, close), in either order and in HTTP/1.0 too.
#[test]
fn rfc9112_6_1_content_length_with_transfer_encoding_is_refused() {
    refuses_all(
        400,
        &[
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nX",
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ncontent-length: 6\r\n\r\n0\r\n\r\nX",
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\ntransfer-encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.0\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
        ],
    );
}

/// RFC 9112 sec. 6.1: Transfer-Encoding in an HTTP/1.0 message means faulty framing: 400 and
/// close (HTTP/1.0 has no chunked coding to trust).
#[test]
fn rfc9112_6_1_transfer_encoding_in_http10_is_refused() {
    refuses_all(
        400,
        &[
            b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST / HTTP/1.0\r\nhost: a\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        ],
    );
}

/// RFC 9112 sec. 6.1 and 6.3 step 4: a request whose final transfer coding is not `chunked`
/// cannot be framed (400); `chunked` applied twice, an empty list element, parameters on
/// `chunked`, a quoted or misspelt coding and an underscore look-alike name are refused too
/// (400); a coding coregate does not implement before `chunked` is 501. A plainly spelt
/// `chunked` in any case and with whitespace is accepted and forwarded as coregate's own
/// `transfer-encoding: chunked`, re-chunked.
#[test]
fn rfc9112_6_1_only_a_plain_final_chunked_is_accepted() {
    let te = |value: &str| {
        format!("POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: {value}\r\n\r\n0\r\n\r\n")
    };
    let bad: Vec<String> = [
        "gzip",
        "identity",
        "chunked, gzip",
        "chunked, chunked",
        ", chunked",
        "chunked,",
        "gzip,,chunked",
        "chunked;q=1",
        "\"chunked\"",
        "xchunked",
        "chunked x",
        "",
    ]
    .into_iter()
    .map(te)
    .collect();
    let mut refused: Vec<&[u8]> = bad.iter().map(|r| r.as_bytes()).collect();
    refused.push(
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    refused.push(b"POST / HTTP/1.1\r\nhost: a\r\nTransfer_Encoding: chunked\r\n\r\n0\r\n\r\n");
    refused.push(b"POST / HTTP/1.1\r\nhost: a\r\ncontent_length: 5\r\n\r\nhello");
    refuses_all(400, &refused);
    let gzip = te("gzip, chunked");
    refuses_all(501, &[gzip.as_bytes()]);

    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        for value in ["CHUNKED", "\tChunked "] {
            client.send(
                format!(
                    "POST /te HTTP/1.1\r\nhost: a\r\ntransfer-encoding: {value}\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                )
                .as_bytes(),
            );
            let response = client.read_response(false).expect("a response");
            assert_eq!(response.status, 200, "{io}: {value:?}");
        }
        let seen = upstream.wait_for(2);
        for request in &seen {
            // One framing line, coregate's own: a small chunked body is received whole and
            // declared by its length (`request_buffering`).
            assert_eq!(
                framing_lines(&request.raw_head),
                ["content-length: 3"],
                "{io}"
            );
            assert_eq!(request.body, b"abc", "{io}");
        }
    }
}

/// RFC 9110 sec. 8.6 and RFC 9112 sec. 6.3 step 5: Content-Length = 1*DIGIT. Differing values
/// (in several fields or one list), signs, hex, empty values, whitespace inside, overflow and
/// stray commas are 400. Identical repeated values may be collapsed; coregate collapses them
/// and forwards one `content-length` of its own, so the next request on the connection is
/// still found where the client put it.
#[test]
fn rfc9110_8_6_content_length_must_be_one_decimal_value() {
    let cl = |value: &str| {
        format!(
            "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: {value}\r\n\r\nhelloGET /x HTTP/1.1\r\n\r\n"
        )
    };
    let bad: Vec<String> = [
        "5\r\ncontent-length: 6",
        "5, 6",
        "+5",
        "-5",
        "0x5",
        "5.0",
        "5e0",
        "",
        "5 5",
        "5,",
        ",5",
        "18446744073709551616",
        "\u{663}",
    ]
    .into_iter()
    .map(cl)
    .collect();
    let refused: Vec<&[u8]> = bad.iter().map(|r| r.as_bytes()).collect();
    refuses_all(400, &refused);

    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        for fields in [
            "Content-Length: 5\r\nContent-Length: 5",
            "Content-Length: 5, 5",
            "Content-Length: 005",
        ] {
            client.send(
                format!("POST /cl HTTP/1.1\r\nhost: a\r\n{fields}\r\n\r\nhelloGET /after HTTP/1.1\r\nhost: a\r\n\r\n")
                    .as_bytes(),
            );
            for _ in 0..2 {
                let response = client.read_response(false).expect("a response");
                assert_eq!(response.status, 200, "{io}: {fields:?}");
            }
        }
        let seen = upstream.wait_for(6);
        assert_eq!(seen.len(), 6, "{io}");
        for pair in seen.chunks(2) {
            assert_eq!(pair[0].target, "/cl", "{io}");
            assert_eq!(
                framing_lines(&pair[0].raw_head),
                ["content-length: 5"],
                "{io}"
            );
            assert_eq!(pair[0].body, b"hello", "{io}");
            assert_eq!(
                pair[1].target, "/after",
                "{io}: the next request stayed in place"
            );
            assert!(framing_lines(&pair[1].raw_head).is_empty(), "{io}");
        }
    }
}

/// RFC 9112 sec. 6.3 step 7 (for requests, step 6): a request with neither Content-Length nor
/// Transfer-Encoding has no body. It is forwarded without framing fields, the bytes after its
/// head are the next request, and an HTTP/1.0 request is never read until close.
#[test]
fn rfc9112_6_3_a_request_without_framing_has_no_body() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        client.send(b"POST /a HTTP/1.1\r\nhost: a\r\n\r\nGET /b HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(
            client.read_response(false).expect("first").status,
            200,
            "{io}"
        );
        assert_eq!(
            client.read_response(false).expect("second").status,
            200,
            "{io}"
        );
        let seen = upstream.wait_for(2);
        assert_eq!(
            (seen[0].target.as_str(), seen[1].target.as_str()),
            ("/a", "/b"),
            "{io}"
        );
        assert!(seen[0].body.is_empty(), "{io}");
        assert!(framing_lines(&seen[0].raw_head).is_empty(), "{io}");

        // The client keeps its side open: an answer proves nothing waited for the close.
        let mut old = Client::connect(proxy.addr());
        old.set_read_timeout(Duration::from_secs(3));
        old.send(b"POST /c HTTP/1.0\r\nhost: a\r\n\r\n");
        let response = old
            .read_response(false)
            .expect("answered without waiting for the client to close");
        assert_eq!(response.status, 200, "{io}");
        let seen = upstream.wait_for(3);
        assert!(seen[2].body.is_empty(), "{io}");
    }
}

// --- RFC 9112 sec. 7: chunked transfer coding ------------------------------------------------

/// RFC 9112 sec. 7.1: chunk-size = 1*HEXDIG; signs, `0x`, leading whitespace, a size too big
/// for 64 bits, and data not followed by CRLF are 400 and close. The client's chunk lines never
/// reach the upstream: coregate writes its own.
#[test]
fn rfc9112_7_1_chunk_sizes_must_be_hex_digits() {
    let body = |chunks: &str| {
        format!("POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n{chunks}")
    };
    let bad: Vec<String> = [
        "g\r\nhello\r\n0\r\n\r\n",
        "0x5\r\nhello\r\n0\r\n\r\n",
        "-5\r\nhello\r\n0\r\n\r\n",
        "+5\r\nhello\r\n0\r\n\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",
        "5 5\r\nhello\r\n0\r\n\r\n",
        "\r\nhello\r\n0\r\n\r\n",
        "10000000000000005\r\nhello\r\n0\r\n\r\n",
        "fffffffffffffffff\r\nhello\r\n0\r\n\r\n",
        "5\r\nhelloXX\r\n0\r\n\r\n",
    ]
    .into_iter()
    .map(body)
    .collect();
    let refused: Vec<&[u8]> = bad.iter().map(|r| r.as_bytes()).collect();
    refuses_body(
        400,
        &refused,
        &["0x5", "-5", "10000000000000005", "fffffffffffffffff"],
    );
}

/// RFC 9112 sec. 7.1.1: chunk extensions are allowed and skipped; coregate bounds them (4 KiB
/// per size line) and refuses CR, LF, NUL and other controls inside them (400, close). Accepted
/// extensions are never forwarded.
#[test]
fn rfc9112_7_1_1_chunk_extensions_are_bounded_and_dropped() {
    let body = |chunks: &str| {
        format!("POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n{chunks}")
    };
    let long = format!("5;{}\r\nhello\r\n0\r\n\r\n", "x".repeat(5000));
    let bad: Vec<String> = [
        "5;a\0b\r\nhello\r\n0\r\n\r\n",
        "5;a\nhello\r\n0\r\n\r\n",
        "5;a\rb\r\nhello\r\n0\r\n\r\n",
        "5;a\x7f\r\nhello\r\n0\r\n\r\n",
        "5;a\x01\r\nhello\r\n0\r\n\r\n",
        long.as_str(),
    ]
    .into_iter()
    .map(body)
    .collect();
    let refused: Vec<&[u8]> = bad.iter().map(|r| r.as_bytes()).collect();
    refuses_body(400, &refused, &["hello", "xxxxxxxx"]);

    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let (response, closed) = exchange(
            &proxy,
            b"POST /ext HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5;name=value\r\nhello\r\n0;last=1\r\nx-trailer: t\r\n\r\n",
        );
        assert_eq!((response.status, closed), (200, false), "{io}");
        let seen = upstream.wait_for(1);
        assert_eq!(seen[0].body, b"hello", "{io}");
        let raw = String::from_utf8_lossy(&upstream.received(0)).into_owned();
        assert!(
            !raw.contains("name=value") && !raw.contains("last=1") && !raw.contains("x-trailer"),
            "{io}: client chunk framing was forwarded: {raw:?}"
        );
    }
}

/// RFC 9112 sec. 7.1.1: a server ought to limit the total length of chunk extensions it
/// receives and answer 4xx beyond it. Each size line is capped at 4 KiB, but a client sending
/// endless lines of extensions around one-byte chunks makes coregate read bytes that no body
/// limit counts (the class of CVE-2023-39326 and CVE-2024-22019). coregate bounds extensions
/// and trailers together at 16 KiB per body (`http1::MAX_CHUNK_METADATA`): beyond it, 400 and
/// close, and the upstream never gets a complete request.
#[test]
fn rfc9112_7_1_1_chunk_extensions_are_bounded_per_body() {
    let chunk = format!("1;{}\r\na\r\n", "x".repeat(2000));
    let over = format!(
        "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n{}0\r\n\r\n",
        chunk.repeat(9)
    );
    let with_trailers = format!(
        "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n{}0\r\nx-t: {}\r\n\r\n",
        chunk.repeat(5),
        "v".repeat(7000)
    );
    refuses_body(
        400,
        &[over.as_bytes(), with_trailers.as_bytes()],
        &["xxxxxxxx", "vvvvvvvv"],
    );
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let under = format!(
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n{}0\r\n\r\n",
            chunk.repeat(7)
        );
        let mut client = Client::connect(proxy.addr());
        client.send(under.as_bytes());
        let response = client.read_response(false).expect("a response");
        assert_eq!(response.status, 200, "{io}");
        assert_eq!(response.field("connection"), None, "{io}: kept open");
        assert_eq!(upstream.wait_for(1)[0].body, b"aaaaaaa", "{io}");
    }
}

// --- RFC 9110 sec. 7.6 and 7.8: hop-by-hop fields and Upgrade --------------------------------

/// RFC 9110 sec. 7.6.1: a proxy removes Connection, every field it names, and the hop-by-hop
/// fields (Keep-Alive, Proxy-Connection, TE, Trailer, Upgrade) before forwarding. coregate adds
/// its own fields after that removal, so a client cannot name `x-forwarded-*` or
/// `x-request-id` away, and the client's X-Forwarded-For is kept only as the start of the chain
/// that coregate's entry ends (never the only value). A client cannot unframe a body by naming
/// the framing fields either.
#[test]
fn rfc9110_7_6_1_hop_by_hop_fields_go_and_forwarding_fields_stay() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        client.get(
            "/named",
            &[
                "connection: keep-alive, x-drop, x-forwarded-for, x-forwarded-proto, x-forwarded-host",
                "x-drop: 1",
                "keep-alive: timeout=300",
                "proxy-connection: keep-alive",
                "te: trailers",
                "trailer: x-t",
                "upgrade: websocket",
                "x-forwarded-for: 203.0.113.7",
                "x-forwarded-proto: https",
                "x-forwarded-host: evil.example",
            ],
        );
        client.get(
            "/chain",
            &[
                "x-forwarded-for: 203.0.113.7",
                "x-forwarded-for: 198.51.100.2",
                "x-forwarded-proto: https",
                "x-forwarded-host: evil.example",
            ],
        );
        client.get(
            "/id",
            &["connection: x-request-id", "x-request-id: client-id"],
        );
        client.send(
            b"POST /framing HTTP/1.1\r\nhost: test.local\r\nconnection: content-length, transfer-encoding\r\ncontent-length: 5\r\n\r\nhello",
        );
        assert_eq!(
            client.read_response(false).expect("a response").status,
            200,
            "{io}"
        );

        let seen = upstream.wait_for(4);
        let named = &seen[0];
        for name in [
            "connection",
            "x-drop",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
        ] {
            assert_eq!(named.field(name), None, "{io}: {name} was forwarded");
        }
        assert_eq!(named.fields_named("x-forwarded-for"), ["127.0.0.1"], "{io}");
        // The scheme the client spoke to coregate.
        assert_eq!(
            named.fields_named("x-forwarded-proto"),
            [scheme(io)],
            "{io}"
        );
        assert_eq!(
            named.fields_named("x-forwarded-host"),
            ["test.local"],
            "{io}"
        );

        // Whether the client's chain is kept depends on whether the client is trusted (see
        // `x_forwarded_for_is_kept_only_from_trusted_proxies`); either way coregate's entry
        // ends it, in one field.
        let chain = &seen[1];
        let xff = chain.fields_named("x-forwarded-for");
        assert_eq!(xff.len(), 1, "{io}: {xff:?}");
        assert!(
            xff[0] == "127.0.0.1" || xff[0] == "203.0.113.7, 198.51.100.2, 127.0.0.1",
            "{io}: {xff:?}"
        );
        assert_eq!(
            chain.fields_named("x-forwarded-proto"),
            [scheme(io)],
            "{io}"
        );
        assert_eq!(
            chain.fields_named("x-forwarded-host"),
            ["test.local"],
            "{io}"
        );

        let id = &seen[2];
        let ids = id.fields_named("x-request-id");
        assert_eq!(
            ids.len(),
            1,
            "{io}: {:?}",
            String::from_utf8_lossy(&id.raw_head)
        );
        assert_ne!(
            ids[0], "client-id",
            "{io}: a hop-by-hop field was forwarded"
        );

        let framing = &seen[3];
        assert_eq!(
            framing_lines(&framing.raw_head),
            ["content-length: 5"],
            "{io}"
        );
        assert_eq!(framing.body, b"hello", "{io}");
    }
}

/// RFC 9110 sec. 7.8 (and RFC 9113 sec. 3.1, which retires it): `Upgrade: h2c` is never
/// forwarded, nor the HTTP2-Settings its Connection names; the request is answered as plain
/// HTTP/1.1 and the connection stays HTTP/1.1.
#[test]
fn rfc9110_7_8_upgrade_h2c_is_never_forwarded() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        let response = client.get(
            "/upgrade-me",
            &[
                "connection: Upgrade, HTTP2-Settings",
                "upgrade: h2c",
                "http2-settings: AAMAAABkAARAAAAAAAIAAAAA",
            ],
        );
        assert_eq!(response.status, 200, "{io}");
        assert_eq!(response.field("upgrade"), None, "{io}");
        assert_eq!(
            client.get("/after", &[]).status,
            200,
            "{io}: still HTTP/1.1"
        );
        let seen = upstream.wait_for(2);
        for name in ["upgrade", "http2-settings", "connection"] {
            assert_eq!(seen[0].field(name), None, "{io}: {name} was forwarded");
        }
        assert!(
            !String::from_utf8_lossy(&upstream.received_all()).contains("h2c"),
            "{io}"
        );
    }
}

/// RFC 9110 sec. 7.8: the connection switches protocols only after a 101. coregate relays an
/// Upgrade request (with `Connection: upgrade` and its `Upgrade`), but the bytes the client
/// pipelined behind it are held until the upstream answers: a declined upgrade leaves them to
/// be parsed and routed as the next HTTP request; after a 101 they belong to the new protocol
/// and go to the upstream that switched, never through routing to another one. The switched
/// upstream connection is never pooled.
#[test]
fn rfc9110_7_8_bytes_behind_an_upgrade_are_never_tunnelled_before_a_101() {
    for io in TRANSPORTS {
        let app = Upstream::start(Arc::new(|req: &Recorded| {
            match req.target.as_str() {
            "/ws-switch" => Reply::Raw(
                b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\n"
                    .to_vec(),
            ),
            _ => Reply::Raw(ok(b"app")),
        }
        }));
        let admin = Upstream::start(Arc::new(|_: &Recorded| Reply::Raw(ok(b"admin"))));
        let upstreams = format!(
            "[[upstream]]\nname = \"app\"\nendpoints = [\"{}\"]\n\
             [[upstream]]\nname = \"admin\"\nendpoints = [\"{}\"]\n",
            app.addr(),
            admin.addr()
        );
        let routes = "[[route]]\npath_prefix = \"/\"\nupstream = \"app\"\n\
                      [[route]]\npath = \"/admin\"\nupstream = \"admin\"\n";
        let proxy = Coregate::start(&config_with_upstreams(io, "0", &upstreams, routes));
        let upgrade = |path: &str| {
            format!(
                "GET {path} HTTP/1.1\r\nhost: a\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
                 sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n\
                 GET /admin HTTP/1.1\r\nhost: a\r\n\r\n"
            )
        };

        // Declined: the pipelined request is HTTP, routed to its own upstream.
        let mut client = Client::connect(proxy.addr());
        client.send(upgrade("/ws").as_bytes());
        let first = client
            .read_response(false)
            .expect("the upgrade request's answer");
        assert_eq!(
            (first.status, first.body.as_slice()),
            (200, &b"app"[..]),
            "{io}"
        );
        let second = client
            .read_response(false)
            .expect("the pipelined request's answer");
        assert_eq!(
            second.body, b"admin",
            "{io}: the pipelined request was routed"
        );
        let seen = app.wait_for(1);
        assert_eq!(
            seen[0].field("upgrade"),
            Some("websocket"),
            "{io}: the upgrade is relayed"
        );
        assert!(
            !String::from_utf8_lossy(&app.received_all()).contains("/admin"),
            "{io}: bytes behind a declined Upgrade reached the upgrading upstream"
        );

        // Switched: the bytes behind the request are the new protocol's, for the app alone.
        let mut client = Client::connect(proxy.addr());
        client.send(upgrade("/ws-switch").as_bytes());
        // A 101 has no body: read its head alone.
        let switched = client.read_response(true).expect("an answer");
        assert_eq!(switched.status, 101, "{io}");
        let seen = app.wait_for(2);
        assert_eq!(seen[1].target, "/ws-switch", "{io}");
        // Held until the 101 went out, then tunnelled to the upstream that switched: the app
        // (an HTTP server, here) reads them on the switched connection.
        let tunnelled = app.wait_for(3);
        assert_eq!(tunnelled[2].target, "/admin", "{io}");
        assert_eq!(tunnelled[2].connection, seen[1].connection, "{io}");
        assert_eq!(
            admin.requests().len(),
            1,
            "{io}: nothing behind a switch was routed to another upstream"
        );
        drop(client);
        // The connection that answered 101 was dropped, not pooled.
        let mut later = Client::connect(proxy.addr());
        assert_eq!(later.get("/later", &[]).body, b"app", "{io}");
        let seen = app.wait_for(4);
        let later_request = seen.iter().find(|r| r.target == "/later").expect("/later");
        assert_ne!(
            later_request.connection, tunnelled[1].connection,
            "{io}: the switched connection was reused"
        );
    }
}

// --- RFC 9112 sec. 9.3: persistence and reuse ------------------------------------------------

/// RFC 9112 sec. 9.3 and 6.3: a client connection carries another request only once the
/// previous request's body was read in full. coregate answers early (404, 405, 413, a route's
/// own answer) and closes whenever the body is not all there, so body bytes are never read as a
/// request; a body already received is skipped and the connection goes on.
#[test]
fn rfc9112_9_3_an_unread_body_closes_the_client_connection() {
    let smuggled = "GET /admin HTTP/1.1\r\nhost: a\r\n\r\n";
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let routes = r#"
[[route]]
path = "/healthz"
respond = { status = 200, body = "ok\n" }

[[route]]
path = "/only-get"
methods = ["GET"]
upstream = "up"

[[route]]
path_prefix = "/small/"
upstream = "up"
max_body_bytes = 16

[[route]]
path = "/admin"
upstream = "up"
"#;
        let proxy = start(io, &upstream, routes);
        for (path, status) in [("/nowhere", 404), ("/only-get", 405), ("/small/x", 413)] {
            let request = format!(
                "POST {path} HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            );
            let (response, closed) = exchange(&proxy, request.as_bytes());
            assert_eq!(response.status, status, "{io}: {path}");
            assert_eq!(response.field("connection"), Some("close"), "{io}: {path}");
            assert!(
                closed,
                "{io}: {path}: the body could have been read as a request"
            );
        }
        // A chunked body is never skipped: its end is unknown until it is decoded.
        let (response, closed) = exchange(
            &proxy,
            format!(
                "POST /healthz HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{smuggled}\r\n0\r\n\r\n",
                smuggled.len()
            )
            .as_bytes(),
        );
        assert_eq!(
            (response.status, closed),
            (200, true),
            "{io}: chunked body unread"
        );
        assert_eq!(response.field("connection"), Some("close"), "{io}");
        // Only the head has arrived: the route answers, and the connection must close.
        let mut client = Client::connect(proxy.addr());
        client.send(b"POST /healthz HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\n");
        let response = client.read_response(false).expect("an answer");
        assert_eq!(response.field("connection"), Some("close"), "{io}");
        assert!(client.is_closed(), "{io}: closed with the body unread");
        assert_eq!(
            upstream.connections(),
            0,
            "{io}: a body was read as a request"
        );

        // The whole body is here: skipped, and the next request is answered.
        let mut client = Client::connect(proxy.addr());
        client.send(
            b"POST /healthz HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhelloGET /healthz HTTP/1.1\r\nhost: a\r\n\r\n",
        );
        for _ in 0..2 {
            let response = client.read_response(false).expect("an answer");
            assert_eq!(
                (response.status, response.field("connection")),
                (200, None),
                "{io}"
            );
        }
    }
}

/// RFC 9112 sec. 9.3 and 9.5 (a client sending a body watches for a response arriving while it
/// sends): once an upstream answered before it received the whole request body, what it does
/// with the rest of the body is unknown (a naive server reads it as the next request), so that
/// upstream connection must not be pooled. NGINX never caches such a connection either. Here the body is itself a request; if the connection
/// were reused, the answer to that smuggled request would be taken for the next client's.
/// The route streams bodies (`request_buffering = 0`): a buffered body goes upstream in the
/// same write as its head, so no upstream can answer before it has the whole request.
#[test]
fn rfc9112_9_3_an_early_upstream_answer_is_not_reused() {
    let smuggled = "GET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n";
    for io in TRANSPORTS {
        let upstream = Upstream::start_early(Arc::new(|req: &Recorded| {
            match req.target.as_str() {
                "/upload" => Reply::Raw(ok(b"early")),
                // Slow, so coregate has pooled the connection before this answer comes.
                "/smuggled" => Reply::Delayed(Duration::from_millis(300), ok(b"smuggled")),
                other => Reply::Raw(ok(other.as_bytes())),
            }
        }));
        let streaming = format!("{FORWARD_ALL}request_buffering = 0\n");
        let proxy = start(io, &upstream, &streaming);
        let mut client = Client::connect(proxy.addr());
        client.send(
            format!(
                "POST /upload HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\n\r\n",
                smuggled.len()
            )
            .as_bytes(),
        );
        // The upstream has the head and has answered; only now does the body follow.
        upstream.wait_for(1);
        client.send(smuggled.as_bytes());
        let early = client.read_response(false).expect("the early answer");
        assert_eq!(early.body, b"early", "{io}");
        let next = client.get("/next", &[]);
        assert_eq!(
            next.body, b"/next",
            "{io}: the answer to another request was relayed"
        );
        let seen = upstream.wait_for(3);
        let next = seen
            .iter()
            .find(|r| r.target == "/next")
            .expect("/next arrived");
        assert_ne!(
            next.connection, seen[0].connection,
            "{io}: the connection was reused"
        );
    }
}

// --- RFC 9110 sec. 10.1.1: Expect -------------------------------------------------------------

/// RFC 9110 sec. 10.1.1: coregate answers `100-continue` itself (and does not forward Expect),
/// then reads the body by its framing; an expectation it does not know is 417 and close, with
/// nothing sent upstream; 100-continue on a request without body gets no interim answer.
#[test]
fn rfc9110_10_1_1_expect_is_answered_or_refused() {
    refuses_all(
        417,
        &[
            b"POST / HTTP/1.1\r\nhost: a\r\nexpect: 200-ok\r\ncontent-length: 5\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\nexpect: 100-continue\r\ncontent-length: 5\r\n\r\nhello",
        ],
    );
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        client.send(
            b"POST /e HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ntransfer-encoding: chunked\r\n\r\n",
        );
        let interim = client.read_exact(25);
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n", "{io}");
        client.send(b"4\r\ndata\r\n0\r\n\r\n");
        assert_eq!(
            client.read_response(false).expect("final").status,
            200,
            "{io}"
        );
        // Without a body there is nothing to continue: the first bytes are the final answer.
        client.send(b"GET /no-body HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\n\r\n");
        let first = client.read_exact(12);
        assert_eq!(&first, b"HTTP/1.1 200", "{io}");
        let seen = upstream.wait_for(2);
        assert_eq!(seen[0].body, b"data", "{io}");
        assert!(seen.iter().all(|r| r.field("expect").is_none()), "{io}");
    }
}

// --- RFC 9112 sec. 7 and RFC 9110 sec. 9.3.6: what clients get --------------------------------

/// RFC 9112 sec. 7 / 6.1: chunked is an HTTP/1.1 coding; an HTTP/1.0 client never receives it.
/// A chunked or close-delimited upstream body is decoded and sent close-delimited, with
/// `connection: close`, even when the client asked for keep-alive.
#[test]
fn rfc9112_7_http10_clients_never_get_chunked() {
    for io in TRANSPORTS {
        let body: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let copy = body.clone();
        let upstream = Upstream::start(Arc::new(move |req: &Recorded| match req.target.as_str() {
            "/chunked" => Reply::Raw(ok_chunked(&copy, 1000)),
            _ => {
                let mut bytes = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
                bytes.extend_from_slice(&copy);
                Reply::RawThenClose(bytes)
            }
        }));
        let proxy = start(io, &upstream, FORWARD_ALL);
        for path in ["/chunked", "/close"] {
            let mut client = Client::connect(proxy.addr());
            client.send(
                format!("GET {path} HTTP/1.0\r\nhost: a\r\nconnection: keep-alive\r\n\r\n")
                    .as_bytes(),
            );
            let raw = client.read_to_close();
            let text = String::from_utf8_lossy(&raw);
            let head_end = text.find("\r\n\r\n").expect("a head") + 4;
            let head = &text[..head_end].to_ascii_lowercase();
            assert!(head.starts_with("http/1.1 200 "), "{io}: {head}");
            assert!(!head.contains("transfer-encoding"), "{io}: {path}: {head}");
            assert!(!head.contains("content-length"), "{io}: {path}: {head}");
            assert!(
                head.contains("connection: close\r\n"),
                "{io}: {path}: {head}"
            );
            assert_eq!(
                &raw[head_end..],
                &body[..],
                "{io}: {path}: the body, then the close"
            );
        }
    }
}

/// RFC 9110 sec. 9.3.6: CONNECT asks for a tunnel, which a reverse proxy does not offer:
/// 501 and close; a CONNECT without an authority-form target is 400. Nothing goes upstream.
#[test]
fn rfc9110_9_3_6_connect_is_refused() {
    refuses_all(
        501,
        &[
            b"CONNECT b.example:443 HTTP/1.1\r\nhost: b.example:443\r\n\r\n",
            b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nhost: 127.0.0.1:22\r\n\r\nSSH-2.0-x\r\n",
        ],
    );
    refuses_all(
        400,
        &[
            b"CONNECT / HTTP/1.1\r\nhost: a\r\n\r\n",
            b"CONNECT b.example HTTP/1.1\r\nhost: b.example\r\n\r\n",
        ],
    );
}

/// RFC 9110 sec. 8.6: a server MUST NOT send Content-Length in a 204, and in a 304 only the
/// length the representation would have in a 200 (sec. 15.4.5), which a route's own answer
/// does not have. So a `respond` route answering 204 or 304 sends neither `content-length`
/// nor a body (`http1::status_allows_content_length`); validation already refuses a body on
/// them. A 200 keeps its `content-length: 0`.
#[test]
fn rfc9110_8_6_direct_204_and_304_carry_no_content_length() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let routes = "[[route]]\npath = \"/none\"\nrespond = { status = 204 }\n\
                      [[route]]\npath = \"/same\"\nrespond = { status = 304 }\n\
                      [[route]]\npath = \"/empty\"\nrespond = { status = 200 }\n";
        let proxy = start(io, &upstream, routes);
        let mut client = Client::connect(proxy.addr());
        for (path, status) in [("/none", 204), ("/same", 304)] {
            let response = client.get(path, &[]);
            assert_eq!(response.status, status, "{io}");
            assert_eq!(
                response.field("content-length"),
                None,
                "{io}: {:?}",
                String::from_utf8_lossy(&response.raw_head)
            );
        }
        let response = client.get("/empty", &[]);
        assert_eq!(
            response.status, 200,
            "{io}: the connection is still in step"
        );
        assert_eq!(response.field("content-length"), Some("0"), "{io}");
        assert_untouched(io, &upstream);
    }
}

// --- RFC 9112 sec. 6.3: upstream responses -----------------------------------------------------

/// RFC 9112 sec. 6.3, applied to upstream responses as strictly as to requests:
/// - step 5: differing Content-Length values, or an invalid one, are 502, and that upstream
///   connection is closed;
/// - step 3: Transfer-Encoding with Content-Length: chunked wins, Content-Length is dropped,
///   and the connection is not reused;
/// - bytes left over after a complete response mean the connection is never reused (they would
///   be taken for the answer to the next request);
/// - a final coding other than chunked, Transfer-Encoding in HTTP/1.0, bare LF, obs-fold and
///   an invalid status line (RFC 9112 sec. 4) are 502.
#[test]
fn rfc9112_6_3_upstream_responses_are_framed_one_way_only() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(Arc::new(|req: &Recorded| {
            let raw: &[u8] = match req.target.as_str() {
                "/dup-cl" => b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd",
                "/list-cl" => b"HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\nabcd",
                "/bad-cl" => b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\nabcd",
                "/cl-te" => b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                "/leftover" => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nsmuggled",
                "/gzip" => b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\nabcd",
                "/te-1.0" => b"HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
                "/bare-lf" => b"HTTP/1.1 200 OK\ncontent-length: 2\r\n\r\nok",
                "/fold" => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx: a\r\n b\r\n\r\nok",
                "/status" => b"HTTP/1.1 2000 OK\r\ncontent-length: 2\r\n\r\nok",
                "/version" => b"HTTP/2 200 OK\r\ncontent-length: 2\r\n\r\nok",
                _ => return Reply::Raw(ok(req.target.as_bytes())),
            };
            Reply::Raw(raw.to_vec())
        }));
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        for path in [
            "/dup-cl", "/list-cl", "/bad-cl", "/gzip", "/te-1.0", "/bare-lf", "/fold", "/status",
            "/version",
        ] {
            let response = client.get(path, &[]);
            assert_eq!(response.status, 502, "{io}: {path}");
            let next = client.get("/next", &[]);
            assert_eq!(next.body, b"/next", "{io}: after {path}");
        }
        for path in ["/cl-te", "/leftover"] {
            let response = client.get(path, &[]);
            assert_eq!(response.status, 200, "{io}: {path}");
            let next = client.get("/next", &[]);
            assert_eq!(
                next.body, b"/next",
                "{io}: after {path}: a stale answer was relayed"
            );
        }
        let cl_te = client.get("/cl-te", &[]);
        assert_eq!(cl_te.body, b"hello", "{io}");
        assert!(cl_te.chunked, "{io}: re-chunked");
        assert_eq!(cl_te.field("content-length"), None, "{io}");
        let leftover = client.get("/leftover", &[]);
        assert_eq!(leftover.body, b"ok", "{io}");

        // Each faulty exchange ended its upstream connection: the request after it came on a
        // new one.
        let seen = upstream.requests();
        for pair in seen.windows(2) {
            if pair[0].target != "/next" && pair[1].target == "/next" {
                assert_ne!(
                    pair[1].connection, pair[0].connection,
                    "{io}: the connection that sent {} was reused",
                    pair[0].target
                );
            }
        }
    }
}

// --- RFC 3986 sec. 6.2.2: what a path means --------------------------------------------------

/// RFC 3986 sec. 6.2.2 (with RFC 9110 sec. 4.2.3): coregate routes and forwards the normal
/// form of the path: unreserved escapes decoded, dot segments removed, `//` collapsed. So
/// `/api/../admin` reaches exactly what `/admin` reaches, however it is spelt, and the `/api/`
/// upstream never sees `admin`. Spellings with no single meaning (`%2F`, `%5C`, `%00`, `..;`)
/// are 400.
#[test]
fn rfc3986_6_2_2_paths_are_routed_as_the_upstream_reads_them() {
    for io in TRANSPORTS {
        let api = Upstream::start(echo());
        let admin = Upstream::start(echo());
        let upstreams = format!(
            "[[upstream]]\nname = \"api\"\nendpoints = [\"{}\"]\n\
             [[upstream]]\nname = \"admin\"\nendpoints = [\"{}\"]\n",
            api.addr(),
            admin.addr()
        );
        let routes = "[[route]]\npath_prefix = \"/api/\"\nupstream = \"api\"\n\
                      [[route]]\npath = \"/admin\"\nupstream = \"admin\"\n\
                      [[route]]\npath_prefix = \"/admin/\"\nupstream = \"admin\"\n";
        let proxy = Coregate::start(&config_with_upstreams(io, "0", &upstreams, routes));
        let mut client = Client::connect(proxy.addr());
        let to_admin = [
            ("/api/../admin", "/admin"),
            ("/api/%2e%2e/admin", "/admin"),
            ("/api/%2E%2E/admin/users", "/admin/users"),
            ("/api/.%2e/admin?x=1", "/admin?x=1"),
            ("/api//..//admin", "/admin"),
            ("/api/./../admin/./x", "/admin/x"),
            ("/%61pi/%2e%2e/%61dmin", "/admin"),
        ];
        for (path, _) in to_admin {
            assert_eq!(client.get(path, &[]).status, 200, "{io}: {path}");
        }
        let to_api = [("/%61pi/v1", "/api/v1"), ("/api/v1/../v2", "/api/v2")];
        for (path, _) in to_api {
            assert_eq!(client.get(path, &[]).status, 200, "{io}: {path}");
        }
        let targets = |upstream: &Upstream, n: usize| -> Vec<String> {
            upstream
                .wait_for(n)
                .iter()
                .map(|r| r.target.clone())
                .collect()
        };
        let want: Vec<&str> = to_admin.iter().map(|(_, t)| *t).collect();
        assert_eq!(targets(&admin, want.len()), want, "{io}");
        let want: Vec<&str> = to_api.iter().map(|(_, t)| *t).collect();
        assert_eq!(targets(&api, want.len()), want, "{io}");

        let refused: Vec<String> = [
            "/api/%2f../admin",
            "/api/..%2Fadmin",
            "/api/..%5cadmin",
            "/api/..;/admin",
            "/api/%2e%2e;/admin",
            "/api/.;x/admin",
            "/api/%00/x",
            "/api/%zz",
        ]
        .iter()
        .map(|path| format!("GET {path} HTTP/1.1\r\nhost: a\r\n\r\n"))
        .collect();
        let refused: Vec<&[u8]> = refused.iter().map(|r| r.as_bytes()).collect();
        assert_refused(io, &proxy, 400, &refused);
        assert_eq!(api.requests().len(), 2, "{io}");
        assert_eq!(admin.requests().len(), 7, "{io}");
        assert!(
            !String::from_utf8_lossy(&api.received_all()).contains("admin"),
            "{io}: the /api/ upstream saw an admin path"
        );
    }
}

/// RFC 3986 sec. 3.3: a path is a sequence of segments, and a prefix route covers whole ones.
/// With a byte prefix `/api` and `strip_prefix`, `/apiadmin` was forwarded as `/admin` and
/// `/api../x` as `/../x`: a path the upstream reads as outside the route, reached through it.
/// coregate matches `/api` against `/api` and `/api/...` only; other requests fall to the
/// routes they name (here none: 404), and what is stripped is always a whole segment.
#[test]
fn rfc3986_3_3_prefix_routes_cover_whole_segments() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let routes = "[[route]]\npath_prefix = \"/api\"\nupstream = \"up\"\nstrip_prefix = true\n";
        let proxy = start(io, &upstream, routes);
        let mut client = Client::connect(proxy.addr());
        for path in ["/apiadmin", "/api../x", "/api2/x", "/api.json"] {
            assert_eq!(client.get(path, &[]).status, 404, "{io}: {path}");
        }
        for path in ["/api/x", "/api", "/api/", "/api/admin/../x"] {
            assert_eq!(client.get(path, &[]).status, 200, "{io}: {path}");
        }
        let targets: Vec<String> = upstream.wait_for(4).into_iter().map(|r| r.target).collect();
        assert_eq!(targets, ["/x", "/", "/", "/x"], "{io}");
    }
}

/// RFC 3986 sec. 3.3 leaves `;` inside a segment to the scheme; servlet containers (Tomcat,
/// Jetty) read a segment's `;params` as not part of the path, so `/admin;x/secret` is
/// `/admin/secret` to them, and a router comparing bytes sent it past the `/admin/` route to
/// the catch-all. coregate's choice (the other would be refusing `;` outright, which breaks
/// `;jsessionid=`): match each segment without its parameters and forward the path as sent.
/// A segment of parameters alone (`/;x/admin`), which servlet containers drop, is 400.
#[test]
fn rfc3986_3_3_path_parameters_do_not_change_the_route() {
    for io in TRANSPORTS {
        let public = Upstream::start(echo());
        let admin = Upstream::start(echo());
        let upstreams = format!(
            "[[upstream]]\nname = \"public\"\nendpoints = [\"{}\"]\n\
             [[upstream]]\nname = \"admin\"\nendpoints = [\"{}\"]\n",
            public.addr(),
            admin.addr()
        );
        let routes = "[[route]]\npath_prefix = \"/\"\nupstream = \"public\"\n\
                      [[route]]\npath_prefix = \"/admin/\"\nupstream = \"admin\"\n";
        let proxy = Coregate::start(&config_with_upstreams(io, "0", &upstreams, routes));
        let mut client = Client::connect(proxy.addr());
        for path in ["/admin;x/secret", "/admin;a=1;b/x;y", "/page;jsessionid=1"] {
            assert_eq!(client.get(path, &[]).status, 200, "{io}: {path}");
        }
        let targets = |upstream: &Upstream, n: usize| -> Vec<String> {
            upstream.wait_for(n).into_iter().map(|r| r.target).collect()
        };
        assert_eq!(
            targets(&admin, 2),
            ["/admin;x/secret", "/admin;a=1;b/x;y"],
            "{io}"
        );
        assert_eq!(targets(&public, 1), ["/page;jsessionid=1"], "{io}");
        assert_refused(
            io,
            &proxy,
            400,
            &[
                b"GET /;x/admin/secret HTTP/1.1\r\nhost: a\r\n\r\n",
                b"GET /admin/..;/x HTTP/1.1\r\nhost: a\r\n\r\n",
            ],
        );
        assert_eq!(public.requests().len(), 1, "{io}");
    }
}

/// RFC 3986 sec. 2 has no place for a raw `\` in a URI, and servers disagree on it: IIS, the
/// WHATWG URL parser (Node, browsers) and GURL-based normalisers read it as `/`, so
/// `/public\..\admin` is `/admin` to them while a byte-comparing router sees one segment under
/// `/public`. coregate's choice: refuse it in the path (400, close), as it refuses `%5C`,
/// rather than rewrite it to `/` for routing and forwarding alike. A `\` in the query is data
/// and passes.
#[test]
fn rfc3986_2_a_raw_backslash_in_the_path_is_refused() {
    refuses_all(
        400,
        &[
            b"GET /public\\..\\admin HTTP/1.1\r\nhost: a\r\n\r\n",
            b"GET /public/..\\admin HTTP/1.1\r\nhost: a\r\n\r\n",
            b"GET /a\\b?x=1 HTTP/1.1\r\nhost: a\r\n\r\n",
            b"GET http://a/public\\..\\admin HTTP/1.1\r\nhost: a\r\n\r\n",
        ],
    );
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, FORWARD_ALL);
        let (response, _) = exchange(&proxy, b"GET /a?q=b\\c HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(response.status, 200, "{io}");
        assert_eq!(upstream.wait_for(1)[0].target, "/a?q=b\\c", "{io}");
    }
}

/// The `X-Forwarded-For` chain is only as good as the hop that wrote it: coregate keeps a
/// client's chain only when the client is a proxy it trusts, and otherwise replaces it with the
/// client's own address, so a client cannot make the upstream believe it came from elsewhere.
#[test]
fn x_forwarded_for_is_kept_only_from_trusted_proxies() {
    for io in TRANSPORTS {
        for (trusted, expected) in [
            ("[]", "127.0.0.1"),
            ("[\"10.0.0.0/8\"]", "127.0.0.1"),
            ("[\"127.0.0.1/32\"]", "203.0.113.7, 127.0.0.1"),
        ] {
            let upstream = Upstream::start(echo());
            let extra = format!("[forwarding]\ntrusted_proxies = {trusted}\n{FORWARD_ALL}");
            let proxy = start(io, &upstream, &extra);
            let mut client = Client::connect(proxy.addr());
            client.get("/", &["x-forwarded-for: 203.0.113.7"]);
            let seen = upstream.wait_for(1);
            assert_eq!(
                seen[0].fields_named("x-forwarded-for"),
                [expected],
                "{io}: trusted_proxies = {trusted}"
            );
        }
    }
}

/// Beyond `X-Forwarded-*`, applications believe other fields about where a request came from
/// (`Forwarded` of RFC 7239, `X-Real-IP`, `X-Forwarded-Port`, `-Prefix`) and which path it
/// asked for (`X-Original-URL`, `X-Rewrite-URL`: IIS- and Symfony-style applications serve
/// that path instead of the request line's, so a request routed as `/public` would be served
/// as `/admin`). From a client that is not a trusted proxy coregate removes them
/// (`forwarding.drop_from_untrusted`); a trusted proxy's pass on.
#[test]
fn forwarding_claims_pass_only_from_trusted_proxies() {
    let claims = [
        "forwarded: for=203.0.113.7;proto=https",
        "x-real-ip: 203.0.113.7",
        "x-forwarded-port: 443",
        "x-forwarded-prefix: /admin",
        "x-original-url: /admin/users",
        "x-rewrite-url: /admin/users",
        "true-client-ip: 203.0.113.7",
    ];
    for io in TRANSPORTS {
        for trusted in ["[]", "[\"127.0.0.1/32\"]"] {
            let upstream = Upstream::start(echo());
            let extra = format!("[forwarding]\ntrusted_proxies = {trusted}\n{FORWARD_ALL}");
            let proxy = start(io, &upstream, &extra);
            let mut client = Client::connect(proxy.addr());
            assert_eq!(client.get("/public", &claims).status, 200, "{io}");
            let seen = &upstream.wait_for(1)[0];
            assert_eq!(seen.target, "/public", "{io}");
            for claim in claims {
                let (name, value) = claim.split_once(": ").unwrap();
                let expected: &[&str] = if trusted == "[]" { &[] } else { &[value] };
                assert_eq!(
                    seen.fields_named(name),
                    expected,
                    "{io}: trusted_proxies = {trusted}: {name}"
                );
            }
        }
    }
}

/// `forwarding.forwarded_header` writes RFC 7239's `Forwarded` for this hop: `for` the client's
/// address (quoted when IPv6, sec. 6), `host` the routed host, `proto` the scheme the client
/// spoke; a trusted proxy's elements come first, anyone else's are replaced.
#[test]
fn rfc7239_forwarded_is_written_when_configured() {
    for io in TRANSPORTS {
        for (trusted, expected) in [
            ("[]", "for=127.0.0.1;host=\"example.com:8080\";proto=http"),
            (
                "[\"127.0.0.1/32\"]",
                "for=203.0.113.7;proto=https, for=127.0.0.1;host=\"example.com:8080\";proto=http",
            ),
        ] {
            let upstream = Upstream::start(echo());
            let extra = format!(
                "[forwarding]\ntrusted_proxies = {trusted}\nforwarded_header = true\n{FORWARD_ALL}"
            );
            let proxy = start(io, &upstream, &extra);
            let request = b"GET / HTTP/1.1\r\nhost: example.com:8080\r\n\
                            forwarded: for=203.0.113.7;proto=https\r\n\r\n";
            let (response, _) = exchange(&proxy, request);
            assert_eq!(response.status, 200, "{io}");
            let seen = &upstream.wait_for(1)[0];
            // Every expected value ends with coregate's own element, whose proto is the
            // scheme the client spoke to coregate.
            let expected = match io {
                TLS => format!("{expected}s"),
                _ => expected.to_owned(),
            };
            assert_eq!(
                seen.fields_named("forwarded"),
                [expected.as_str()],
                "{io}: trusted_proxies = {trusted}"
            );
        }
    }
}

/// A field that only makes sense once, sent twice, is read one way by coregate and possibly
/// the other way by the upstream: authentication checks one `Authorization` (or API key)
/// while the application reads the other, the log records one `X-Request-Id` while the
/// upstream traces the other. Such requests are refused with 400 and never reach the upstream,
/// as RFC 9112 has a repeated `Host` or `Content-Length` refused.
#[test]
fn repeated_singleton_fields_are_refused() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let extra = "[[auth]]\nname = \"partners\"\nkind = \"api_key\"\n\
                     keys = [{ identity = \"acme\", key = \"acme-key-0123456789\" }]\n\
                     [[route]]\npath_prefix = \"/keyed\"\nupstream = \"up\"\nauth = \"partners\"\n\
                     [[route]]\npath_prefix = \"/\"\nupstream = \"up\"\n";
        let proxy = start(io, &upstream, extra);
        assert_refused(
            io,
            &proxy,
            400,
            &[
                b"GET / HTTP/1.1\r\nhost: a\r\nauthorization: Bearer a\r\n\
                  authorization: Bearer b\r\n\r\n",
                b"GET / HTTP/1.1\r\nhost: a\r\nx-request-id: one\r\nx-request-id: two\r\n\r\n",
                b"GET /keyed HTTP/1.1\r\nhost: a\r\nx-api-key: acme-key-0123456789\r\n\
                  x-api-key: other-key-0123456789\r\n\r\n",
            ],
        );
        assert_untouched(io, &upstream);
        let (response, _) = exchange(
            &proxy,
            b"GET /keyed HTTP/1.1\r\nhost: a\r\nx-api-key: acme-key-0123456789\r\n\r\n",
        );
        assert_eq!(response.status, 200, "{io}: one key is fine");
    }
}

/// RFC 9110 sec. 15.2: a proxy forwards the 1xx answers it did not ask for (`103 Early Hints`,
/// `102 Processing`), several of them if they come, to HTTP/1.1 clients, and never to HTTP/1.0
/// ones, who cannot read them. `100 Continue` is coregate's own business (it answers `Expect`
/// and never asks an upstream for one), so an upstream's is not passed on.
#[test]
fn rfc9110_15_2_interim_answers_reach_http_1_1_clients() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(Arc::new(|_: &Recorded| {
            Reply::Raw(
                b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n\
                  HTTP/1.1 100 Continue\r\n\r\n\
                  HTTP/1.1 102 Processing\r\n\r\n\
                  HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                    .to_vec(),
            )
        }));
        let proxy = start(io, &upstream, FORWARD_ALL);
        let mut client = Client::connect(proxy.addr());
        let response = client.get("/", &[]);
        assert_eq!(response.status, 200, "{io}");
        assert_eq!(response.body, b"ok", "{io}");
        let interim: Vec<String> = response
            .interim
            .iter()
            .map(|head| String::from_utf8_lossy(head).into_owned())
            .collect();
        assert_eq!(interim.len(), 2, "{io}: {interim:?}");
        assert!(interim[0].starts_with("HTTP/1.1 103 "), "{io}: {interim:?}");
        assert!(
            interim[0].contains("link: </a.css>; rel=preload\r\n"),
            "{io}: {interim:?}"
        );
        assert!(interim[1].starts_with("HTTP/1.1 102 "), "{io}: {interim:?}");
        assert_eq!(client.get("/", &[]).interim.len(), 2, "{io}: in step");

        client.send(b"GET / HTTP/1.0\r\nhost: a\r\n\r\n");
        let old = client.read_response(false).expect("an answer");
        assert_eq!(old.status, 200, "{io}");
        assert!(old.interim.is_empty(), "{io}: HTTP/1.0 gets no 1xx");
    }
}

/// What `x-forwarded-proto` and `Forwarded: proto=` say for a transport.
fn scheme(io: &str) -> &'static str {
    match io {
        TLS => "https",
        _ => "http",
    }
}
