//! Fuzz target: the response-head parser, `http1::parse_response`, on arbitrary bytes, and the
//! head coregate writes to its client from what it accepted.
//!
//! The first input byte picks the request method the response answers (GET, HEAD or CONNECT,
//! which change the framing) and the client's version; the second picks the limits.
//!
//! Properties checked:
//! - it never panics; an accepted head and its spans lie inside the input;
//! - the framing decision is self-consistent: no body for HEAD, 1xx, 204 and 304; a `Length`
//!   body equals `content_length`; a close-delimited body, a 101 and a tunnel are never
//!   `keep_alive` (the upstream connection is not pooled);
//! - the head `proxy::head::write_response_head` writes for the client parses again, with the
//!   same status, at most one framing field (none when the client reads until close or there
//!   is no body), never `chunked` for an HTTP/1.0 client, and no hop-by-hop field but the
//!   `connection` coregate wrote itself.

#![no_main]

mod common;

use coregate_engine::http1::{
    HeadScanner, Method, Parsed, ResponseBody, ResponseHead, Version, parse_response,
};
use coregate_engine::proxy::head::{ClientFraming, ResponseHeadInput, write_response_head};
use coregate_engine::snapshot::Edits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [method_selector, limits_selector, input @ ..] = data else {
        return;
    };
    let method = match method_selector % 4 {
        0 | 1 => Method::Get,
        2 => Method::Head,
        _ => Method::Connect,
    };
    let client_version = if method_selector & 0x80 != 0 {
        Version::Http10
    } else {
        Version::Http11
    };
    let limits = common::limits(*limits_selector);
    let mut fields = common::fields();
    let head = match parse_response(input, &mut HeadScanner::new(), &limits, &mut fields, method) {
        Ok(Parsed::Complete(head)) => head,
        Ok(Parsed::Partial) | Err(_) => return,
    };
    assert!(head.head_len <= input.len() && head.head_len <= limits.max_head_bytes);
    assert!(head.field_count <= limits.max_headers);
    assert!((100..=599).contains(&head.status));
    common::inside(head.reason, head.head_len, "reason");
    for field in &fields[..head.field_count] {
        common::inside(field.name, head.head_len, "field name");
        common::inside(field.value, head.head_len, "field value");
    }
    if method == Method::Head || matches!(head.status, 100..=199 | 204 | 304) {
        assert_eq!(
            head.body,
            ResponseBody::None,
            "a bodiless response got a body"
        );
    }
    if let ResponseBody::Length(n) = head.body {
        assert_eq!(head.content_length, Some(n));
    }
    if head.body == ResponseBody::CloseDelimited || head.status == 101 {
        assert!(
            !head.keep_alive,
            "a connection without a known end would be pooled"
        );
    }
    if method == Method::Connect && (200..300).contains(&head.status) {
        assert!(!head.keep_alive, "a tunnel would be pooled");
    }
    check_client_head(input, &head, &fields, method, client_version);
});

/// The proxy's framing choice (`Session::plan_response`), then the written head read back.
fn check_client_head(
    input: &[u8],
    head: &ResponseHead,
    fields: &[coregate_engine::http1::Field],
    method: Method,
    client_version: Version,
) {
    if head.status == 101 || head.is_interim() {
        return; // never relayed as a final response
    }
    let framing = ClientFraming::for_response(head.body, client_version);
    let close = framing == ClientFraming::UntilClose;
    let edits = Edits::default();
    let input_for_writer = ResponseHeadInput {
        framing,
        switching_to: None,
        close,
        client_version,
        edits: &edits,
    };
    let mut out = vec![0u8; 64 * 1024];
    let Ok(len) = write_response_head(&mut out, input, head, fields, &input_for_writer) else {
        return;
    };
    let out = &out[..len];
    let generous = common::generous();
    let mut again_fields = common::fields();
    let again = match parse_response(
        out,
        &mut HeadScanner::new(),
        &generous,
        &mut again_fields,
        method,
    ) {
        Ok(Parsed::Complete(again)) => again,
        other => panic!(
            "coregate wrote a response head its own parser refuses ({other:?}):\n{}",
            String::from_utf8_lossy(out)
        ),
    };
    assert_eq!(again.head_len, out.len());
    assert_eq!(again.status, head.status);
    let written = &again_fields[..again.field_count];
    let named = |name: &[u8]| common::count_named(out, written, name);
    let te = named(b"transfer-encoding");
    let cl = named(b"content-length");
    assert!(
        te + cl <= 1,
        "two framing fields:\n{}",
        String::from_utf8_lossy(out)
    );
    match framing {
        ClientFraming::Chunked => assert_eq!((te, cl), (1, 0)),
        ClientFraming::Length(_) => assert_eq!((te, cl), (0, 1)),
        ClientFraming::UntilClose => assert_eq!((te, cl), (0, 0)),
        ClientFraming::None => assert_eq!(te, 0),
    }
    if client_version == Version::Http10 {
        assert_eq!(te, 0, "chunked sent to an HTTP/1.0 client");
    }
    for hop in [
        &b"keep-alive"[..],
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
    ] {
        assert_eq!(named(hop), 0, "{} relayed", String::from_utf8_lossy(hop));
    }
    assert!(named(b"connection") <= 1);
}
