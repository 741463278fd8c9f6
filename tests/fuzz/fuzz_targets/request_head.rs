//! Fuzz target: the request-head parser, `http1::parse_request`, on arbitrary bytes, and the
//! head coregate forwards upstream from what it accepted.
//!
//! Properties checked:
//! - it never panics, whatever the bytes and limits (the first input byte picks the limits);
//! - an accepted head lies inside the input: `head_len` and every span are within it, the field
//!   count is within the limits, and an HTTP/1.1 request has exactly one Host;
//! - the head written by `proxy::head::write_request_head` (after `router::normalize_path`,
//!   as the proxy does) is accepted by the same parser, with the same method, the normalised
//!   path, the same body framing carried by exactly one framing field that coregate wrote, no
//!   hop-by-hop field, and exactly one `x-forwarded-for`, `x-forwarded-proto` and `host`.
//!   Whatever a client sends, the upstream never sees a head it could read two ways;
//! - a chunked request's head rewritten to declare a length (a body buffered whole,
//!   `proxy::head::reframe_as_length`) parses with that length and differs in nothing else.

#![no_main]

mod common;

use coregate_engine::config::defaults::DEFAULT_DROP_FROM_UNTRUSTED;
use coregate_engine::context::Scheme;
use coregate_engine::http1::{
    FieldKind, HeadScanner, Limits, Parsed, RequestBody, RequestHead, TargetForm, Version,
    parse_request,
};
use coregate_engine::proxy::head::{
    RequestHeadInput, WrittenHead, reframe_as_length, write_request_head,
};
use coregate_engine::router::{Normalized, normalize_path};
use coregate_engine::snapshot::{Edits, NameSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else {
        return;
    };
    let limits = common::limits(selector);
    let mut fields = common::fields();
    let mut scanner = HeadScanner::new();
    let head = match parse_request(input, &mut scanner, &limits, &mut fields) {
        Ok(Parsed::Complete(head)) => head,
        Ok(Parsed::Partial) => return,
        Err(err) => {
            assert!(
                matches!(err.status, 400 | 414 | 417 | 431 | 501),
                "unexpected status {}",
                err.status
            );
            return;
        }
    };
    check_bounds(input, &head, &limits, &fields);
    check_forwarded(input, &head, &fields);
});

fn check_bounds(
    input: &[u8],
    head: &RequestHead,
    limits: &Limits,
    fields: &[coregate_engine::http1::Field],
) {
    assert!(head.head_len <= input.len());
    assert!(head.head_len <= limits.max_head_bytes);
    assert!(head.field_count <= limits.max_headers);
    let len = head.head_len;
    common::inside(head.method_span, len, "method");
    common::inside(head.target, len, "target");
    common::inside(head.path, len, "path");
    for span in [head.query, head.host, head.upgrade, head.request_id]
        .into_iter()
        .flatten()
    {
        common::inside(span, len, "span");
    }
    for field in &fields[..head.field_count] {
        common::inside(field.name, len, "field name");
        common::inside(field.value, len, "field value");
        assert!(!field.name.is_empty(), "empty field name accepted");
    }
    let hosts = fields[..head.field_count]
        .iter()
        .filter(|f| f.kind == FieldKind::Host)
        .count();
    match head.version {
        Version::Http11 => assert_eq!(hosts, 1, "HTTP/1.1 needs exactly one Host"),
        Version::Http10 => assert!(hosts <= 1, "several Host fields accepted"),
    }
    if head.version == Version::Http10 {
        assert_ne!(head.body, RequestBody::Chunked, "chunked HTTP/1.0 request");
    }
}

fn check_forwarded(input: &[u8], head: &RequestHead, fields: &[coregate_engine::http1::Field]) {
    // The proxy refuses CONNECT and routes `*` as is; everything else is routed normalised.
    let mut scratch = Vec::new();
    let routed: &[u8] = match head.form {
        TargetForm::Authority => return,
        TargetForm::Asterisk => b"*",
        _ => match normalize_path(head.path.of(input), &mut scratch) {
            Ok(Normalized::Unchanged) => head.path.of(input),
            Ok(Normalized::Rewritten) => &scratch,
            Err(_) => return,
        },
    };
    let edits = Edits::default();
    let untrusted_drop = NameSet::new(DEFAULT_DROP_FROM_UNTRUSTED.iter().copied());
    let request_id = [b'0'; 32];
    let forwarded = RequestHeadInput {
        path: routed,
        edits: &edits,
        client_ip: "192.0.2.1".parse().expect("an address"),
        scheme: Scheme::Http,
        client_trusted: false,
        untrusted_drop: &untrusted_drop,
        // Written, so its value is read back like every other field.
        forwarded_header: true,
        endpoint: "127.0.0.1:9".parse().expect("an address"),
        request_id: &request_id,
        replace_request_id: false,
        upgrade: None,
        identity: None,
        claims: &[],
        client_cert: None,
    };
    let mut out = vec![0u8; 64 * 1024];
    let Ok(written) = write_request_head(&mut out, input, head, fields, &forwarded) else {
        return; // the proxy answers 431 for a forwarded head that does not fit a buffer
    };
    if head.body == RequestBody::Chunked {
        check_reframed(&out, written, input.len() as u64 * 1021);
    }
    let out = &out[..written.len];

    // Read it back as the upstream would, with room for the fields coregate added.
    let generous = common::generous();
    let mut again_fields = common::fields();
    let again = match parse_request(out, &mut HeadScanner::new(), &generous, &mut again_fields) {
        Ok(Parsed::Complete(again)) => again,
        other => panic!(
            "coregate forwarded a head its own parser refuses ({other:?}):\n{}",
            String::from_utf8_lossy(out)
        ),
    };
    assert_eq!(again.head_len, out.len(), "forwarded head length");
    assert_eq!(again.method_span.of(out), head.method_span.of(input));
    assert_eq!(again.version, Version::Http11);
    if head.form != TargetForm::Asterisk {
        assert_eq!(
            again.path.of(out),
            routed,
            "forwarded path is the routed one"
        );
        assert_eq!(
            again.query.map(|q| q.of(out)),
            head.query.map(|q| q.of(input))
        );
    }
    assert_eq!(again.body, head.body, "body framing changed on the way");
    assert!(again.keep_alive, "coregate asked its upstream to close");

    let forwarded_fields = &again_fields[..again.field_count];
    let named = |name: &[u8]| common::count_named(out, forwarded_fields, name);
    let framing = named(b"content-length") + named(b"transfer-encoding");
    let expected = usize::from(head.body != RequestBody::None);
    assert_eq!(
        framing,
        expected,
        "framing fields:\n{}",
        String::from_utf8_lossy(out)
    );
    for hop in [
        &b"connection"[..],
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
        b"expect",
    ] {
        assert_eq!(named(hop), 0, "{} forwarded", String::from_utf8_lossy(hop));
    }
    assert_eq!(named(b"host"), 1);
    assert_eq!(named(b"x-forwarded-for"), 1);
    assert_eq!(named(b"x-forwarded-proto"), 1);
    assert!(named(b"x-forwarded-host") <= 1);
    if let RequestBody::Length(n) = head.body {
        let cl = forwarded_fields
            .iter()
            .find(|f| f.kind == FieldKind::ContentLength)
            .map(|f| f.value.of(out));
        assert_eq!(
            cl,
            Some(n.to_string().as_bytes()),
            "content-length rewritten"
        );
    }
}

/// A chunked body buffered whole goes with its length instead: the rewritten head parses, its
/// one framing field is that length, and the rest of the head is unchanged.
fn check_reframed(out: &[u8], written: WrittenHead, length: u64) {
    let mut head = out.to_vec();
    let len = reframe_as_length(&mut head, written, length);
    let head = &head[..len];
    let generous = common::generous();
    let mut fields = common::fields();
    let again = match parse_request(head, &mut HeadScanner::new(), &generous, &mut fields) {
        Ok(Parsed::Complete(again)) => again,
        other => panic!(
            "a reframed head does not parse ({other:?}):\n{}",
            String::from_utf8_lossy(head)
        ),
    };
    assert_eq!(again.body, RequestBody::Length(length));
    // The framing line is the written one, a field line of its own; a field whose name or value
    // merely contains the same text stays as it came.
    let at = written
        .chunked_at
        .expect("a chunked head notes its framing line");
    let framing = b"transfer-encoding: chunked\r\n";
    assert!(out[..at].ends_with(b"\r\n"), "framing line starts a line");
    let mut expected = out[..at].to_vec();
    expected.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
    expected.extend_from_slice(&out[at + framing.len()..written.len]);
    assert_eq!(
        String::from_utf8_lossy(head),
        String::from_utf8_lossy(&expected),
        "only the framing changed"
    );
}
