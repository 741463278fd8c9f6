//! Request buffering end to end: a body up to the route's `request_buffering` is received
//! whole before anything goes upstream, then sent with its head (a chunked one declared by its
//! length); larger bodies are streamed as they arrive. Each test drives a raw client (plain and TLS) through coregate to a
//! recording upstream and asserts on what the upstream had seen at each point of the upload.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use coregate_tests::client::Client;
use coregate_tests::harness::{Coregate, TRANSPORTS, config_with_upstreams, start};
use coregate_tests::upstream::{Recorded, Reply, Upstream, echo, ok};

/// How long the client pauses mid-body: long enough for a streamed piece to reach the upstream.
const PAUSE: Duration = Duration::from_millis(300);

fn route(buffering: &str, extra: &str) -> String {
    format!(
        "[[route]]\npath_prefix = \"/\"\nupstream = \"up\"\nrequest_buffering = \
         {buffering}\n{extra}"
    )
}

/// Sends a POST's head and the first `split` bytes of `body`, pauses, and returns the client
/// with the rest still to send.
fn start_upload(proxy: &Coregate, body: &[u8], split: usize) -> Client {
    let head = format!(
        "POST /upload HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    send_head_and_part(proxy, head.as_bytes(), &body[..split])
}

/// Sends `head` and `part` on a new connection, then pauses.
fn send_head_and_part(proxy: &Coregate, head: &[u8], part: &[u8]) -> Client {
    let mut client = Client::connect(proxy.addr());
    client.send(head);
    client.send(part);
    thread::sleep(PAUSE);
    client
}

fn body_of(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// A 40 KiB body under the default bound: while the client pauses half-way the upstream has
/// not even been sent the head; once the body is complete it gets head and body whole.
#[test]
fn a_small_body_reaches_the_upstream_only_once_it_is_whole() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, &route("\"64KiB\"", ""));
        let body = body_of(40 * 1024);
        let mut client = start_upload(&proxy, &body, 20 * 1024);
        assert!(
            upstream.received_all().is_empty(),
            "{io}: the upstream saw bytes of an unfinished buffered body"
        );
        client.send(&body[20 * 1024..]);
        let response = client.read_response(false).expect("a response");
        assert_eq!(response.status, 200, "{io}");
        assert!(response.body_text().contains("body-bytes: 40960"), "{io}");
        let seen = upstream.wait_for(1);
        assert!(seen[0].body == body, "{io}: the upstream got another body");
        assert_eq!(seen[0].field("content-length"), Some("40960"), "{io}");
    }
}

/// Past the bound (and with buffering off) the head and the first piece go upstream at once,
/// before the client has sent the rest.
#[test]
fn a_body_past_the_bound_is_streamed_as_it_arrives() {
    for (buffering, len) in [("\"16KiB\"", 40 * 1024), ("0", 1024)] {
        for io in TRANSPORTS {
            let upstream = Upstream::start(echo());
            let proxy = start(io, &upstream, &route(buffering, ""));
            let body = body_of(len);
            let mut client = start_upload(&proxy, &body, len / 2);
            let seen = upstream.received_all();
            assert!(
                seen.starts_with(b"POST /upload HTTP/1.1\r\n"),
                "{io}, {buffering}: nothing streamed while the client paused"
            );
            client.send(&body[len / 2..]);
            let response = client.read_response(false).expect("a response");
            assert_eq!(response.status, 200, "{io}, {buffering}");
            assert!(upstream.wait_for(1)[0].body == body, "{io}, {buffering}");
        }
    }
}

/// A buffered body is at hand whole, so a POST whose route allows it is sent again after a
/// reset even though its body arrived in pieces (streamed, it could not be: the body was gone).
#[test]
fn a_buffered_body_is_sent_again_after_a_reset() {
    for io in TRANSPORTS {
        let resets = Upstream::start(Arc::new(|_: &Recorded| Reply::Reset));
        let fine = Upstream::start(echo());
        let upstreams = format!(
            "[[upstream]]\nname = \"up\"\nendpoints = [\"{}\", \"{}\"]\n\
             [upstream.outlier]\nconsecutive_failures = 0\n",
            resets.addr(),
            fine.addr()
        );
        let extra = route("\"64KiB\"", "retry = { non_idempotent = true }\n");
        let proxy = Coregate::start(&config_with_upstreams(io, "0", &upstreams, &extra));
        let body = body_of(30 * 1024);
        for _ in 0..4 {
            let mut client = start_upload(&proxy, &body, 10 * 1024);
            client.send(&body[10 * 1024..]);
            let response = client.read_response(false).expect("a response");
            assert_eq!(response.status, 200, "{io}");
        }
        assert!(
            !resets.requests().is_empty(),
            "{io}: the resetting endpoint was never tried"
        );
        let answered = fine.wait_for(4);
        assert!(answered.iter().all(|seen| seen.body == body), "{io}");
    }
}

/// A client that stops mid-body is answered 408 once the body timeout passes, and the upstream
/// never hears of the request; one that leaves mid-body costs the upstream nothing either.
#[test]
fn an_unfinished_buffered_body_never_reaches_the_upstream() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(Arc::new(|_: &Recorded| Reply::Raw(ok(b"ok"))));
        let proxy = start(
            io,
            &upstream,
            &route("\"64KiB\"", "[timeouts]\nbody = \"200ms\"\n"),
        );
        let body = body_of(8 * 1024);
        let mut stalled = start_upload(&proxy, &body, 1024);
        let response = stalled.read_response(false).expect("a response");
        assert_eq!(response.status, 408, "{io}");
        assert!(
            stalled.is_closed(),
            "{io}: a half-read body leaves the connection unusable"
        );
        let left = start_upload(&proxy, &body, 4096);
        drop(left);
        thread::sleep(PAUSE);
        assert_eq!(upstream.connections(), 0, "{io}");
    }
}

/// `Expect: 100-continue` with a buffered body: coregate asks for the body itself, then sends
/// the upstream the request whole.
#[test]
fn a_client_expecting_100_continue_is_asked_for_the_body_it_then_buffers() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(io, &upstream, &route("\"64KiB\"", ""));
        let body = body_of(20 * 1024);
        let mut client = Client::connect(proxy.addr());
        let head = format!(
            "POST /upload HTTP/1.1\r\nhost: test\r\nexpect: 100-continue\r\n\
             content-length: {}\r\n\r\n",
            body.len()
        );
        client.send(head.as_bytes());
        let interim = client.read_exact(25);
        assert_eq!(interim, b"HTTP/1.1 100 Continue\r\n\r\n", "{io}");
        assert!(upstream.received_all().is_empty(), "{io}");
        client.send(&body);
        let response = client.read_response(false).expect("a response");
        assert_eq!(response.status, 200, "{io}");
        let seen = upstream.wait_for(1);
        assert!(seen[0].body == body, "{io}: the upstream got another body");
        assert_eq!(seen[0].field("expect"), None, "{io}");
    }
}

/// `body` as chunks of `size` bytes, each with an extension, ended by a trailer.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(size) {
        out.extend_from_slice(format!("{:x};ext=1\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\nx-trailer: t\r\n\r\n");
    out
}

/// Sends a chunked POST's head and the first `split` bytes of its encoding, pauses, and returns
/// the client with the rest still to send.
fn start_chunked_upload(proxy: &Coregate, encoded: &[u8], split: usize) -> Client {
    let head = b"POST /upload HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n";
    send_head_and_part(proxy, head, &encoded[..split])
}

/// A chunked body under the bound is received whole, then sent with a `content-length` head
/// (as NGINX does, and as upstreams that take no chunked request bodies need), its extensions
/// and trailer dropped; nothing reached the upstream while the client paused. Chunk sizes that
/// fill the decoded buffers exactly, and an empty body, take the same path.
#[test]
fn a_small_chunked_body_goes_upstream_whole_with_its_length() {
    for (len, size) in [(40 * 1024, 1000), (48 * 1024, 16 * 1024 - 20), (0, 1)] {
        for io in TRANSPORTS {
            let upstream = Upstream::start(echo());
            let proxy = start(io, &upstream, &route("\"64KiB\"", ""));
            let body = body_of(len);
            let encoded = chunked(&body, size);
            let mut client = start_chunked_upload(&proxy, &encoded, encoded.len() / 2);
            assert!(
                upstream.received_all().is_empty(),
                "{io}, {len}: the upstream saw bytes of an unfinished buffered body"
            );
            client.send(&encoded[encoded.len() / 2..]);
            let response = client.read_response(false).expect("a response");
            assert_eq!(response.status, 200, "{io}, {len}");
            let seen = upstream.wait_for(1);
            assert!(
                seen[0].body == body,
                "{io}, {len}: the upstream got another body"
            );
            assert!(!seen[0].chunked, "{io}, {len}");
            assert_eq!(
                seen[0].field("content-length"),
                Some(len.to_string().as_str())
            );
            assert_eq!(seen[0].field("transfer-encoding"), None, "{io}, {len}");
            let head = String::from_utf8_lossy(&seen[0].raw_head).into_owned();
            assert!(
                !head.contains("x-trailer") && !head.contains("ext="),
                "{io}: {head}"
            );
            // The connection goes on: the next request is served.
            let next = client.get("/next", &[]);
            assert_eq!(next.status, 200, "{io}, {len}");
        }
    }
}

/// A chunked body past the bound (or with buffering off) stays chunked: what was decoded while
/// it was being buffered leaves as chunks, the rest streams, and the upstream gets every byte.
#[test]
fn a_chunked_body_past_the_bound_is_streamed_as_chunks() {
    for (buffering, len) in [
        ("\"16KiB\"", 100 * 1024),
        ("\"64KiB\"", 200 * 1024),
        ("0", 2048),
    ] {
        for io in TRANSPORTS {
            let upstream = Upstream::start(echo());
            let proxy = start(io, &upstream, &route(buffering, ""));
            let body = body_of(len);
            let encoded = chunked(&body, 7000);
            let mut client = start_chunked_upload(&proxy, &encoded, encoded.len() / 2);
            if buffering == "0" {
                assert!(
                    upstream
                        .received_all()
                        .starts_with(b"POST /upload HTTP/1.1\r\n"),
                    "{io}: nothing streamed while the client paused"
                );
            }
            client.send(&encoded[encoded.len() / 2..]);
            let response = client.read_response(false).expect("a response");
            assert_eq!(response.status, 200, "{io}, {buffering}");
            let seen = upstream.wait_for(1);
            assert!(
                seen[0].chunked,
                "{io}, {buffering}: the body stayed chunked"
            );
            assert_eq!(seen[0].field("content-length"), None, "{io}, {buffering}");
            assert!(
                seen[0].body == body,
                "{io}, {buffering}: the upstream got another body"
            );
        }
    }
}

/// A chunked body stopped mid-way is answered 408 and never reaches the upstream; a malformed
/// one is 400; one over the route's `max_body_bytes` is 413, counted over the part decoded
/// while buffering and the part streamed after it together.
#[test]
fn a_bad_chunked_body_is_refused_before_the_upstream_hears_of_it() {
    for io in TRANSPORTS {
        let upstream = Upstream::start(echo());
        let proxy = start(
            io,
            &upstream,
            &route(
                "\"16KiB\"",
                "max_body_bytes = \"24KiB\"\n[timeouts]\nbody = \"200ms\"\n",
            ),
        );
        let encoded = chunked(&body_of(8 * 1024), 1000);
        let mut stalled = start_chunked_upload(&proxy, &encoded, 3000);
        let response = stalled.read_response(false).expect("a response");
        assert_eq!(response.status, 408, "{io}");
        assert!(stalled.is_closed(), "{io}");

        let mut malformed = start_chunked_upload(&proxy, b"5\r\nhello\r\nzz\r\n", 14);
        let response = malformed.read_response(false).expect("a response");
        assert_eq!(response.status, 400, "{io}");
        assert_eq!(
            upstream.connections(),
            0,
            "{io}: the upstream heard of a bad body"
        );

        // 30 KiB: 16 KiB decoded while buffering, the rest streamed; 24 KiB allowed in all.
        let encoded = chunked(&body_of(30 * 1024), 4096);
        let mut large = start_chunked_upload(&proxy, &encoded, encoded.len());
        let response = large.read_response(false).expect("a response");
        assert_eq!(response.status, 413, "{io}");
    }
}
