//! Property tests for the whole module: a valid message parses to exactly the same result
//! whether it arrives in one read, in reads split at arbitrary points, or one byte at a time;
//! and the result says what the generated message said.
//!
//! Generated messages are varied on purpose: every method kind and target form, HTTP/1.0 and
//! 1.1, 0 to 30 fields with odd spacing, and bodies framed by length or chunked (with chunk
//! extensions and trailers) followed by the next message on the connection.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use super::*;

/// One generated request with what parsing it must report.
#[derive(Clone, Debug)]
struct GenRequest {
    bytes: Vec<u8>,
    method: String,
    target: String,
    version: Version,
    host: Option<String>,
    /// All fields as (name, trimmed value), in order.
    fields: Vec<(String, String)>,
    body: GenBody,
    /// Bytes after the message (the next request), which must not be consumed.
    trailing: Vec<u8>,
}

#[derive(Clone, Debug)]
enum GenBody {
    None,
    Length(Vec<u8>),
    Chunked { data: Vec<u8>, encoded: Vec<u8> },
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

/// Field names that cannot collide with the fields coregate interprets.
fn plain_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9]{0,10}".prop_map(|n| format!("x-{n}"))
}

/// A field value: visible ASCII with inner spaces, as sent and as it must be reported.
fn value() -> impl Strategy<Value = (String, String)> {
    ("[ \t]{0,2}", "([!-~]([ !-~]{0,30}[!-~])?)?", "[ \t]{0,2}")
        .prop_map(|(lead, core, trail)| (format!("{lead}{core}{trail}"), core))
}

fn path() -> impl Strategy<Value = String> {
    (
        proptest::collection::vec("[A-Za-z0-9._~!$&'()*+,;=:@%-]{0,8}", 1..5),
        proptest::option::of("[A-Za-z0-9=&/?._~-]{0,20}"),
    )
        .prop_map(|(segments, query)| {
            let mut p = String::new();
            for s in segments {
                p.push('/');
                p.push_str(&s);
            }
            if let Some(q) = query {
                p.push('?');
                p.push_str(&q);
            }
            p
        })
}

fn host_name() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\\.[a-z0-9]{1,8}){0,3}"
}

fn host() -> impl Strategy<Value = String> {
    (host_name(), proptest::option::of(1u16..)).prop_map(|(name, port)| match port {
        Some(port) => format!("{name}:{port}"),
        None => name,
    })
}

/// Chunk a body into pieces and frame it, with occasional extensions and trailers.
fn chunked(data: Vec<u8>) -> impl Strategy<Value = GenBody> {
    let len = data.len();
    (
        proptest::collection::vec(1usize..200, 0..=len.min(20)),
        proptest::collection::vec(proptest::option::of("[a-z]{1,5}(=[a-z0-9]{1,5})?"), 21),
        proptest::collection::vec((plain_name(), value()), 0..3),
    )
        .prop_map(move |(sizes, extensions, trailers)| {
            let mut encoded = Vec::new();
            let mut rest = &data[..];
            let mut sizes = sizes.into_iter();
            let mut extensions = extensions.into_iter().flatten();
            while !rest.is_empty() {
                let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
                encoded.extend_from_slice(format!("{n:X}").as_bytes());
                if let Some(ext) = extensions.next() {
                    encoded.extend_from_slice(format!(";{ext}").as_bytes());
                }
                encoded.extend_from_slice(b"\r\n");
                encoded.extend_from_slice(&rest[..n]);
                encoded.extend_from_slice(b"\r\n");
                rest = &rest[n..];
            }
            encoded.extend_from_slice(b"0\r\n");
            for (name, (sent, _)) in trailers {
                encoded.extend_from_slice(format!("{name}:{sent}\r\n").as_bytes());
            }
            encoded.extend_from_slice(b"\r\n");
            GenBody::Chunked {
                data: data.clone(),
                encoded,
            }
        })
}

fn body() -> impl Strategy<Value = GenBody> {
    prop_oneof![
        Just(GenBody::None),
        proptest::collection::vec(any::<u8>(), 0..600).prop_map(GenBody::Length),
        proptest::collection::vec(any::<u8>(), 0..600).prop_flat_map(chunked),
    ]
}

fn request() -> impl Strategy<Value = GenRequest> {
    let method_and_target = prop_oneof![
        (
            prop_oneof![
                Just("GET".to_string()),
                Just("POST".to_string()),
                Just("PUT".to_string()),
                Just("DELETE".to_string()),
                Just("PATCH".to_string()),
                Just("HEAD".to_string()),
                // CONNECT takes an authority-form target, generated below.
                "[A-Z]{3,10}".prop_filter("CONNECT", |m| m != "CONNECT"),
            ],
            prop_oneof![
                4 => path(),
                1 => (host(), path()).prop_map(|(h, p)| format!("http://{h}{p}")),
            ],
        ),
        Just(("OPTIONS".to_string(), "*".to_string())),
        host_name().prop_map(|h| ("CONNECT".to_string(), format!("{h}:443"))),
    ];
    (
        method_and_target,
        any::<bool>(),
        proptest::option::of(host()),
        proptest::collection::vec((plain_name(), value()), 0..=30),
        any::<usize>(),
        body(),
        proptest::option::of(prop_oneof![Just("close"), Just("keep-alive")]),
    )
        .prop_map(
            |((method, target), http11, host, extra, host_at, body, connection)| {
                let version = if http11 {
                    Version::Http11
                } else {
                    Version::Http10
                };
                // HTTP/1.1 needs Host; chunked needs HTTP/1.1.
                let host = if http11 {
                    Some(host.unwrap_or_else(|| "example.com".into()))
                } else {
                    host
                };
                let body = match (body, version) {
                    (GenBody::Chunked { data, .. }, Version::Http10) => GenBody::Length(data),
                    (body, _) => body,
                };
                let mut fields: Vec<(String, String, String)> = extra
                    .into_iter()
                    .map(|(n, (sent, trimmed))| (n, sent, trimmed))
                    .collect();
                let mut insert = |name: &str, value: String| {
                    let at = host_at % (fields.len() + 1);
                    fields.insert(at, (name.into(), value.clone(), value));
                };
                if let Some(h) = &host {
                    insert("Host", h.clone());
                }
                match &body {
                    GenBody::None => {}
                    GenBody::Length(b) => insert("Content-Length", b.len().to_string()),
                    GenBody::Chunked { .. } => insert("Transfer-Encoding", "chunked".into()),
                }
                if let Some(c) = connection {
                    insert("Connection", c.into());
                }
                let mut bytes = format!(
                    "{method} {target} {}\r\n",
                    std::str::from_utf8(version.as_bytes()).unwrap()
                )
                .into_bytes();
                for (name, sent, _) in &fields {
                    bytes.extend_from_slice(format!("{name}:{sent}\r\n").as_bytes());
                }
                bytes.extend_from_slice(b"\r\n");
                match &body {
                    GenBody::None => {}
                    GenBody::Length(b) => bytes.extend_from_slice(b),
                    GenBody::Chunked { encoded, .. } => bytes.extend_from_slice(encoded),
                }
                let trailing = b"GET /next HTTP/1.1\r\nHost: n\r\n\r\n".to_vec();
                bytes.extend_from_slice(&trailing);
                GenRequest {
                    bytes,
                    method,
                    target,
                    version,
                    host,
                    fields: fields.into_iter().map(|(n, _, t)| (n, t)).collect(),
                    body,
                    trailing,
                }
            },
        )
}

/// Parses `buf` growing by the given read sizes (cycled) and returns the first non-Partial
/// outcome, checking that every earlier prefix was Partial.
fn parse_request_in_reads(
    buf: &[u8],
    reads: &[usize],
    fields: &mut [Field],
) -> Result<RequestHead, RequestError> {
    let mut scanner = HeadScanner::default();
    let mut end = 0;
    for read in reads.iter().cycle() {
        end = (end + read.max(&1)).min(buf.len());
        match parse_request(&buf[..end], &mut scanner, &Limits::DEFAULT, fields)? {
            Parsed::Complete(head) => return Ok(head),
            Parsed::Partial => assert!(end < buf.len(), "partial on the whole message"),
        }
    }
    unreachable!("reads is never empty")
}

/// Decodes a chunked body arriving in the given read sizes; returns the data and the bytes
/// consumed up to Done.
fn decode_in_reads(input: &[u8], reads: &[usize]) -> Result<(Vec<u8>, usize), ChunkError> {
    let mut decoder = ChunkedDecoder::new();
    let mut data = Vec::new();
    let (mut start, mut end) = (0, 0);
    let mut reads = reads.iter().cycle();
    loop {
        match decoder.decode(&input[start..end])? {
            ChunkStep::Data {
                consumed,
                data: range,
            } => {
                data.extend_from_slice(&input[start..end][range]);
                start += consumed;
            }
            ChunkStep::NeedMore { consumed } => {
                start += consumed;
                assert!(end < input.len(), "ran out of input");
                end = (end + reads.next().unwrap().max(&1)).min(input.len());
            }
            ChunkStep::Done { consumed } => return Ok((data, start + consumed)),
        }
    }
}

fn reads() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1usize..64, 1..16)
}

proptest! {
    // Failing cases are kept beside this file (`proptests.regressions`), to be committed and
    // replayed first on every run.
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn requests_parse_the_same_however_they_arrive(req in request(), reads in reads()) {
        let mut fields_whole = [Field::EMPTY; Limits::DEFAULT_MAX_HEADERS];
        let whole = parse_request_in_reads(&req.bytes, &[req.bytes.len()], &mut fields_whole)
            .unwrap_or_else(|e| panic!("{e:?} for {:?}", String::from_utf8_lossy(&req.bytes)));

        let mut fields_split = [Field::EMPTY; Limits::DEFAULT_MAX_HEADERS];
        let split = parse_request_in_reads(&req.bytes, &reads, &mut fields_split).unwrap();
        prop_assert_eq!(whole, split);
        prop_assert_eq!(&fields_whole[..whole.field_count], &fields_split[..split.field_count]);

        let mut fields_bytewise = [Field::EMPTY; Limits::DEFAULT_MAX_HEADERS];
        let bytewise = parse_request_in_reads(&req.bytes, &[1], &mut fields_bytewise).unwrap();
        prop_assert_eq!(whole, bytewise);
        prop_assert_eq!(&fields_whole[..whole.field_count], &fields_bytewise[..bytewise.field_count]);

        // And the result is what was generated.
        let buf = &req.bytes[..];
        prop_assert_eq!(whole.method_span.of(buf), req.method.as_bytes());
        prop_assert_eq!(whole.method, Method::from_token(req.method.as_bytes()));
        prop_assert_eq!(whole.target.of(buf), req.target.as_bytes());
        prop_assert_eq!(whole.version, req.version);
        prop_assert_eq!(whole.host.map(|h| h.of(buf)), req.host.as_ref().map(|h| h.as_bytes()));
        let parsed: Vec<(&[u8], &[u8])> = fields_whole[..whole.field_count]
            .iter()
            .map(|f| (f.name.of(buf), f.value.of(buf)))
            .collect();
        let expected: Vec<(&[u8], &[u8])> = req
            .fields
            .iter()
            .map(|(n, v)| (n.as_bytes(), v.as_bytes()))
            .collect();
        prop_assert_eq!(parsed, expected);

        let body = &buf[whole.head_len..];
        let rest = match (&req.body, whole.body) {
            (GenBody::None, RequestBody::None) => body,
            (GenBody::Length(b), RequestBody::Length(n)) => {
                prop_assert_eq!(n, b.len() as u64);
                prop_assert_eq!(&body[..b.len()], &b[..]);
                &body[b.len()..]
            }
            (GenBody::Chunked { data, encoded }, RequestBody::Chunked) => {
                let whole = decode_in_reads(body, &[body.len()]).unwrap();
                prop_assert_eq!(&whole, &decode_in_reads(body, &reads).unwrap());
                prop_assert_eq!(&whole, &decode_in_reads(body, &[1]).unwrap());
                prop_assert_eq!(&whole.0, data);
                prop_assert_eq!(whole.1, encoded.len());
                &body[whole.1..]
            }
            (generated, parsed) => {
                return Err(TestCaseError::fail(format!("body {generated:?} parsed as {parsed:?}")));
            }
        };
        prop_assert_eq!(rest, &req.trailing[..]);
    }

    #[test]
    fn responses_parse_the_same_however_they_arrive(
        status in 200u16..600,
        reason in "[A-Za-z][ A-Za-z]{0,20}",
        extra in proptest::collection::vec((plain_name(), value()), 0..=30),
        body in body(),
        reads in reads(),
    ) {
        prop_assume!(status != 204 && status != 304);
        let mut bytes = format!("HTTP/1.1 {status} {reason}\r\n").into_bytes();
        for (name, (sent, _)) in &extra {
            bytes.extend_from_slice(format!("{name}: {sent}\r\n").as_bytes());
        }
        match &body {
            GenBody::None => {}
            GenBody::Length(b) => bytes.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes()),
            GenBody::Chunked { .. } => bytes.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        }
        bytes.extend_from_slice(b"\r\n");
        let head_len = bytes.len();

        let parse_in = |reads: &[usize], fields: &mut [Field]| {
            let mut scanner = HeadScanner::default();
            let mut end = 0;
            for read in reads.iter().cycle() {
                end = (end + read).min(bytes.len());
                if let Parsed::Complete(head) =
                    parse_response(&bytes[..end], &mut scanner, &Limits::DEFAULT, fields, Method::Get)
                        .unwrap()
                {
                    return head;
                }
                assert!(end < bytes.len());
            }
            unreachable!()
        };
        let mut fields_whole = [Field::EMPTY; Limits::DEFAULT_MAX_HEADERS];
        let whole = parse_in(&[bytes.len()], &mut fields_whole);
        let mut fields_split = [Field::EMPTY; Limits::DEFAULT_MAX_HEADERS];
        prop_assert_eq!(whole, parse_in(&reads, &mut fields_split));
        let mut fields_bytewise = [Field::EMPTY; Limits::DEFAULT_MAX_HEADERS];
        prop_assert_eq!(whole, parse_in(&[1], &mut fields_bytewise));
        prop_assert_eq!(&fields_whole[..whole.field_count], &fields_split[..whole.field_count]);
        prop_assert_eq!(&fields_whole[..whole.field_count], &fields_bytewise[..whole.field_count]);

        prop_assert_eq!(whole.status, status);
        prop_assert_eq!(whole.reason.of(&bytes), reason.as_bytes());
        prop_assert_eq!(whole.head_len, head_len);
        let values: Vec<&[u8]> = fields_whole[..extra.len()].iter().map(|f| f.value.of(&bytes)).collect();
        let expected: Vec<&[u8]> = extra.iter().map(|(_, (_, trimmed))| trimmed.as_bytes()).collect();
        prop_assert_eq!(values, expected);
        let expected_body = match &body {
            GenBody::None => ResponseBody::CloseDelimited,
            GenBody::Length(b) => ResponseBody::Length(b.len() as u64),
            GenBody::Chunked { .. } => ResponseBody::Chunked,
        };
        prop_assert_eq!(whole.body, expected_body);
        prop_assert_eq!(whole.keep_alive, !matches!(body, GenBody::None));
    }

    #[test]
    fn chunked_bodies_decode_the_same_however_they_arrive(
        body in proptest::collection::vec(any::<u8>(), 0..4000).prop_flat_map(chunked),
        reads in reads(),
    ) {
        let GenBody::Chunked { data, encoded } = body else { unreachable!() };
        let mut input = encoded.clone();
        input.extend_from_slice(b"HTTP/1.1 200 OK\r\n"); // the next message, not consumed
        let whole = decode_in_reads(&input, &[input.len()]).unwrap();
        prop_assert_eq!(&whole.0, &data);
        prop_assert_eq!(whole.1, encoded.len());
        prop_assert_eq!(&whole, &decode_in_reads(&input, &reads).unwrap());
        prop_assert_eq!(&whole, &decode_in_reads(&input, &[1]).unwrap());
    }

    /// What coregate writes with `write_chunk_header` decodes to the same data.
    #[test]
    fn reframed_chunks_round_trip(pieces in proptest::collection::vec(
        proptest::collection::vec(any::<u8>(), 1..300), 0..10)
    ) {
        let mut framed = Vec::new();
        let mut header = [0u8; MAX_CHUNK_HEADER];
        for piece in &pieces {
            let n = write_chunk_header(piece.len() as u64, &mut header).unwrap();
            framed.extend_from_slice(&header[..n]);
            framed.extend_from_slice(piece);
            framed.extend_from_slice(CHUNK_END);
        }
        framed.extend_from_slice(LAST_CHUNK);
        let (data, consumed) = decode_in_reads(&framed, &[7]).unwrap();
        prop_assert_eq!(data, pieces.concat());
        prop_assert_eq!(consumed, framed.len());
    }

    /// Arbitrary bytes never panic the parsers, whatever the reads.
    #[test]
    fn arbitrary_input_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..2000),
        reads in reads(),
    ) {
        let mut fields = [Field::EMPTY; Limits::DEFAULT_MAX_HEADERS];
        let mut scanner = HeadScanner::default();
        let mut end = 0;
        for read in reads.iter().cycle() {
            end = (end + read).min(bytes.len());
            match parse_request(&bytes[..end], &mut scanner, &Limits::DEFAULT, &mut fields) {
                Ok(Parsed::Partial) if end < bytes.len() => continue,
                _ => break,
            }
        }
        let mut scanner = HeadScanner::default();
        let _ = parse_response(&bytes, &mut scanner, &Limits::DEFAULT, &mut fields, Method::Get);
        let _ = ChunkedDecoder::new().decode(&bytes);
    }

    /// Requests whose head is a valid one with a random token swapped into the method never
    /// panic and either parse or fail with a 4xx/5xx the canned writer can answer.
    #[test]
    fn errors_always_have_an_answer(method in token(), bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut buf = format!("{method} /").into_bytes();
        buf.extend_from_slice(&bytes);
        buf.extend_from_slice(b" HTTP/1.1\r\nHost: a\r\n\r\n");
        let mut fields = [Field::EMPTY; Limits::DEFAULT_MAX_HEADERS];
        if let Err(err) = parse_request(&buf, &mut HeadScanner::default(), &Limits::DEFAULT, &mut fields) {
            prop_assert!(reason_phrase(err.status).is_some());
            let mut out = [0u8; 512];
            prop_assert!(err.write_response(&mut out).is_ok());
        }
    }
}
