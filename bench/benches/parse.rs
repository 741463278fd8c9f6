//! Criterion benchmark: what coregate's HTTP/1.1 parsing costs against bare httparse.
//!
//! Questions it answers:
//! - `request/*`: how much does `http1::parse_request` (end-of-head scan, httparse, field
//!   classification, Connection options, Host/target/framing checks) add to a bare
//!   `httparse::Request` parse of the same bytes? Three shapes: a minimal GET, a browser-like
//!   request with 20 fields, and an 8 KiB header block. Both sides write into uninitialised
//!   header slots, so neither pays for initialising a header array.
//! - `response/*`: the same for a typical upstream response head.
//! - `chunked/64k_in_1k`: decoding a 64 KiB body sent as 1 KiB chunks with `ChunkedDecoder`
//!   (which also checks the CRLF after every chunk and the trailer section) against a loop over
//!   `httparse::parse_chunk_size`.
//!
//! Run: `cargo bench -p coregate-bench --bench parse -- --warm-up-time 1 --measurement-time 3`
//!
//! Measured on the 2-core development VM (criterion medians, 2026-12-01):
//!
//! | input | coregate | bare httparse | ratio |
//! |---|---|---|---|
//! | `request/small_get` (minimal GET) | 74.8 ns | 24.2 ns | 3.1x |
//! | `request/20_fields` (browser-like) | 547 ns | 265 ns | 2.1x |
//! | `request/8k_head` | 2.27 us | 1.59 us | 1.4x |
//! | `response/8_fields` | 161 ns | 74.0 ns | 2.2x |
//! | `chunked/64k_in_1k` (64 chunks) | 959 ns | 297 ns | 3.2x |
//!
//! The difference is the work httparse leaves to its caller: the end-of-head scan that lets a
//! head be parsed once, field classification (framing, hop-by-hop, Host), the Connection options
//! and the RFC 9112 checks; for chunked bodies, the CRLF after each chunk and the trailers.

use std::hint::black_box;
use std::mem::MaybeUninit;

use coregate_engine::http1::{
    ChunkStep, ChunkedDecoder, Field, HeadScanner, Limits, Method, Parsed, parse_request,
    parse_response,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn small_get() -> Vec<u8> {
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n".to_vec()
}

/// What a browser sends for a page: 20 fields, about 1 KiB.
fn twenty_fields() -> Vec<u8> {
    let mut req = String::from("GET /articles/2024/io-uring-proxies?page=2&sort=new HTTP/1.1\r\n");
    for (name, value) in [
        ("Host", "www.example.com"),
        (
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("Accept-Language", "en-US,en;q=0.5"),
        ("Accept-Encoding", "gzip, deflate, br, zstd"),
        ("Referer", "https://www.example.com/articles/2024/"),
        ("Connection", "keep-alive"),
        (
            "Cookie",
            "session=8f14e45fceea167a5a36dedd4bea2543; theme=dark; consent=1",
        ),
        ("Upgrade-Insecure-Requests", "1"),
        ("Sec-Fetch-Dest", "document"),
        ("Sec-Fetch-Mode", "navigate"),
        ("Sec-Fetch-Site", "same-origin"),
        ("Sec-Fetch-User", "?1"),
        ("Priority", "u=0, i"),
        ("Cache-Control", "max-age=0"),
        ("If-None-Match", "\"5d8c72a5edda8\""),
        ("If-Modified-Since", "Tue, 15 Nov 1994 12:45:26 GMT"),
        ("X-Request-Id", "3f2b9c1e-7a4d-4e8b-9f0a-2c6d1e5b8a7f"),
        ("X-Forwarded-For", "203.0.113.195"),
        ("DNT", "1"),
    ] {
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("\r\n");
    req.into_bytes()
}

/// A head of about 8 KiB: 64 fields of 128 bytes each (think large cookies and tracing
/// baggage).
fn eight_kib_head() -> Vec<u8> {
    let mut req = String::from("POST /api/v1/upload HTTP/1.1\r\nHost: api.example.com\r\n");
    for i in 0..64 {
        let name = format!("X-Custom-{i:02}");
        let value: String = "abcdefghijklmnopqrstuvwxyz0123456789"
            .chars()
            .cycle()
            .skip(i)
            .take(128 - name.len() - 4)
            .collect();
        req.push_str(&format!("{name}: {value}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    req.into_bytes()
}

fn upstream_response() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Tue, 15 Nov 1994 08:12:31 GMT\r\nContent-Type: application/json\r\nContent-Length: 1234\r\nConnection: keep-alive\r\nCache-Control: no-cache\r\nETag: \"abc123\"\r\n\r\n".to_vec()
}

fn chunked_64k() -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..64u8 {
        body.extend_from_slice(b"400\r\n");
        body.extend(std::iter::repeat_n(i, 1024));
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    body
}

fn bench_requests(c: &mut Criterion) {
    let limits = Limits::DEFAULT;
    for (name, buf) in [
        ("small_get", small_get()),
        ("20_fields", twenty_fields()),
        ("8k_head", eight_kib_head()),
    ] {
        // Both parsers must accept the fixture, or the comparison means nothing.
        let mut fields = [Field::EMPTY; Limits::DEFAULT_MAX_HEADERS];
        let mut scanner = HeadScanner::default();
        let parsed = parse_request(&buf, &mut scanner, &limits, &mut fields);
        assert!(matches!(parsed, Ok(Parsed::Complete(h)) if h.head_len == buf.len()));

        let mut group = c.benchmark_group(format!("request/{name}"));
        group.throughput(Throughput::Bytes(buf.len() as u64));
        group.bench_function("coregate", |b| {
            b.iter(|| {
                let head = parse_request(black_box(&buf), &mut scanner, &limits, &mut fields);
                black_box(head.is_ok())
            })
        });
        group.bench_function("httparse", |b| {
            b.iter(|| {
                let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 100];
                let mut req = httparse::Request::new(&mut []);
                let status = req.parse_with_uninit_headers(black_box(&buf), &mut slots);
                black_box(status.is_ok())
            })
        });
        group.finish();
    }
}

fn bench_response(c: &mut Criterion) {
    let limits = Limits::DEFAULT;
    let buf = upstream_response();
    let mut fields = [Field::EMPTY; Limits::DEFAULT_MAX_HEADERS];
    let mut scanner = HeadScanner::default();
    let mut group = c.benchmark_group("response/8_fields");
    group.throughput(Throughput::Bytes(buf.len() as u64));
    group.bench_function("coregate", |b| {
        b.iter(|| {
            let head = parse_response(
                black_box(&buf),
                &mut scanner,
                &limits,
                &mut fields,
                Method::Get,
            );
            black_box(head.is_ok())
        })
    });
    group.bench_function("httparse", |b| {
        b.iter(|| {
            let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 100];
            let mut resp = httparse::Response::new(&mut []);
            let status = httparse::ParserConfig::default().parse_response_with_uninit_headers(
                &mut resp,
                black_box(&buf),
                &mut slots,
            );
            black_box(status.is_ok())
        })
    });
    group.finish();
}

fn bench_chunked(c: &mut Criterion) {
    let body = chunked_64k();
    let mut group = c.benchmark_group("chunked/64k_in_1k");
    group.throughput(Throughput::Bytes(64 * 1024));
    group.bench_function("coregate", |b| {
        b.iter(|| {
            let mut decoder = ChunkedDecoder::new();
            let mut input = black_box(&body[..]);
            let mut data = 0;
            loop {
                match decoder.decode(input) {
                    Ok(ChunkStep::Data {
                        consumed,
                        data: range,
                    }) => {
                        data += black_box(&input[range]).len();
                        input = &input[consumed..];
                    }
                    Ok(ChunkStep::Done { .. }) => break,
                    Ok(ChunkStep::NeedMore { .. }) | Err(_) => unreachable!(),
                }
            }
            assert_eq!(data, 64 * 1024);
        })
    });
    group.bench_function("httparse_chunk_size", |b| {
        b.iter(|| {
            let mut input = black_box(&body[..]);
            let mut data = 0;
            loop {
                let Ok(httparse::Status::Complete((header, size))) =
                    httparse::parse_chunk_size(input)
                else {
                    unreachable!()
                };
                if size == 0 {
                    break;
                }
                let size = size as usize;
                data += black_box(&input[header..header + size]).len();
                // Skip the data and its CRLF without checking it, as the bare loop would.
                input = &input[header + size + 2..];
            }
            assert_eq!(data, 64 * 1024);
        })
    });
    group.finish();
}

criterion_group!(benches, bench_requests, bench_response, bench_chunked);
criterion_main!(benches);
