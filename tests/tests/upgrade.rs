//! Protocol switches (WebSocket) end to end: the connection becomes a tunnel only once the
//! upstream answered `101`, bytes the client sent behind its request reach the upstream only
//! then, half-closes travel through, a declined upgrade stays HTTP, `h2c` is never forwarded, an
//! unasked-for `101` is a 502, and a silent tunnel is closed after `timeouts.tunnel_idle`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use coregate_tests::client::Client;
use coregate_tests::harness::{Coregate, MECHANISMS, config};

/// What the switching upstream saw of one connection.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// The request head, lowercased.
    head: String,
    /// Bytes that arrived together with the head, before the upstream answered.
    with_head: Vec<u8>,
}

/// An upstream that answers `101` to `/ws`, then sends `hi`, echoes what arrives uppercased and,
/// when its client finishes sending, says `bye` and closes; `/decline` and anything else get a
/// plain 200; `/rogue` gets a `101` although nobody asked.
struct Switcher {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Switcher {
    fn start() -> Switcher {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let record = record.clone();
                thread::spawn(move || serve(stream, record));
            }
        });
        Switcher { addr, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(mut stream: TcpStream, record: Arc<Mutex<Vec<Seen>>>) {
    let mut pending = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&pending[..end + 4]).to_ascii_lowercase();
        let rest = pending[end + 4..].to_vec();
        record.lock().unwrap().push(Seen {
            head: head.clone(),
            with_head: rest.clone(),
        });
        let target = head.split(' ').nth(1).unwrap_or("").to_owned();
        if target == "/ws" {
            let _ = stream.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\nhi",
            );
            let mut data = rest;
            loop {
                if !data.is_empty() {
                    let upper = data.to_ascii_uppercase();
                    if stream.write_all(&upper).is_err() {
                        return;
                    }
                    data.clear();
                }
                match stream.read(&mut chunk) {
                    Ok(0) => {
                        let _ = stream.write_all(b"bye");
                        let _ = stream.shutdown(Shutdown::Both);
                        return;
                    }
                    Ok(n) => data.extend_from_slice(&chunk[..n]),
                    Err(_) => return,
                }
            }
        }
        let reply: &[u8] = if target == "/rogue" {
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        } else if target == "/ws-h2c" {
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nplain"
        };
        if stream.write_all(reply).is_err() {
            return;
        }
        pending = rest;
    }
}

const ROUTES: &str = "[[route]]\npath_prefix = \"/\"\nupstream = \"up\"\n";

/// Reads until `want` bytes arrived (or the connection ended); returns what came.
fn read_exactly(stream: &mut TcpStream, want: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while got.len() < want {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    got
}

fn read_head(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end + 4]).into_owned();
            return (head, got[end + 4..].to_vec());
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => panic!("closed before a head: {:?}", String::from_utf8_lossy(&got)),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
}

#[test]
fn a_websocket_is_tunnelled_only_after_101() {
    for io in MECHANISMS {
        let upstream = Switcher::start();
        let proxy = Coregate::start(&config(io, "0-1", upstream.addr, ROUTES));
        let mut client = TcpStream::connect(proxy.addr()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // The handshake and, in the same write, bytes of the new protocol.
        client
            .write_all(
                b"GET /ws HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
                  sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\nearly",
            )
            .unwrap();
        let (head, mut after) = read_head(&mut client);
        assert!(
            head.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
            "{io}: {head}"
        );
        let lower = head.to_ascii_lowercase();
        assert!(
            lower.contains("\r\nconnection: upgrade\r\n"),
            "{io}: {head}"
        );
        assert!(lower.contains("\r\nupgrade: websocket\r\n"), "{io}: {head}");
        assert!(lower.contains("sec-websocket-accept: "), "{io}: {head}");
        assert!(!lower.contains("content-length") && !lower.contains("transfer-encoding"));
        // The upstream's first bytes, then the early bytes it received after answering.
        after.extend(read_exactly(&mut client, 7 - after.len()));
        assert_eq!(after, b"hiEARLY", "{io}");

        client.write_all(b"hello").unwrap();
        assert_eq!(read_exactly(&mut client, 5), b"HELLO", "{io}");

        // A half-close travels through: the upstream sees EOF, answers, closes.
        client.shutdown(Shutdown::Write).unwrap();
        let rest = read_exactly(&mut client, usize::MAX);
        assert_eq!(rest, b"bye", "{io}: the last words, then EOF");

        let seen = upstream.seen();
        assert_eq!(seen.len(), 1, "{io}");
        assert!(
            seen[0].head.contains("\r\nupgrade: websocket\r\n"),
            "{io}: {}",
            seen[0].head
        );
        assert!(
            seen[0].head.contains("\r\nconnection: upgrade\r\n"),
            "{io}: {}",
            seen[0].head
        );
        assert!(seen[0].head.contains("sec-websocket-key: "), "{io}");
        assert!(
            seen[0].with_head.is_empty(),
            "{io}: nothing was sent behind the handshake before the 101: {:?}",
            String::from_utf8_lossy(&seen[0].with_head)
        );
    }
}

#[test]
fn a_declined_upgrade_stays_http() {
    for io in MECHANISMS {
        let upstream = Switcher::start();
        let proxy = Coregate::start(&config(io, "0", upstream.addr, ROUTES));
        let mut client = Client::connect(proxy.addr());
        client.send(
            b"GET /decline HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n\
              GET /next HTTP/1.1\r\nhost: t\r\n\r\n",
        );
        let first = client
            .read_response(false)
            .expect("the declined upgrade's answer");
        assert_eq!(
            (first.status, first.body_text().as_str()),
            (200, "plain"),
            "{io}"
        );
        let second = client
            .read_response(false)
            .expect("the pipelined request's answer");
        assert_eq!(
            second.status, 200,
            "{io}: the bytes behind it were HTTP after all"
        );
        let seen = upstream.seen();
        assert_eq!(seen.len(), 2, "{io}");
        assert!(
            seen[1].head.starts_with("get /next "),
            "{io}: {}",
            seen[1].head
        );
    }
}

#[test]
fn h2c_is_never_forwarded() {
    let upstream = Switcher::start();
    let proxy = Coregate::start(&config("uring", "0", upstream.addr, ROUTES));
    let mut client = Client::connect(proxy.addr());
    let response = client.get(
        "/h2",
        &[
            "upgrade: h2c",
            "connection: upgrade, http2-settings",
            "http2-settings: AAMAAABkAAQAoAAAAAIAAAAA",
        ],
    );
    assert_eq!(response.status, 200);
    let head = &upstream.seen()[0].head;
    assert!(!head.contains("upgrade"), "{head}");
    assert!(
        !head.contains("http2-settings"),
        "named in Connection, so hop-by-hop: {head}"
    );
}

#[test]
fn a_switch_nobody_asked_for_is_a_bad_gateway() {
    let upstream = Switcher::start();
    let proxy = Coregate::start(&config("uring", "0", upstream.addr, ROUTES));
    let mut client = Client::connect(proxy.addr());
    assert_eq!(client.get("/rogue", &[]).status, 502);
}

#[test]
fn a_switch_to_a_protocol_the_client_did_not_offer_is_a_bad_gateway() {
    for io in MECHANISMS {
        let upstream = Switcher::start();
        let proxy = Coregate::start(&config(io, "0", upstream.addr, ROUTES));
        let mut client = Client::connect(proxy.addr());
        // The client offers websocket; the upstream "switches" to h2c: never a tunnel.
        client.send(
            b"GET /ws-h2c HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n\
              PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        );
        let response = client.read_response(false).expect("an answer");
        assert_eq!(response.status, 502, "{io}");
        // The preface behind the request never reached the upstream.
        let seen = upstream.seen();
        assert_eq!(seen.len(), 1, "{io}");
        assert!(seen[0].with_head.is_empty(), "{io}");
    }
}

#[test]
fn a_silent_tunnel_is_closed_after_the_idle_timeout() {
    for io in MECHANISMS {
        let upstream = Switcher::start();
        let extra = format!("[timeouts]\ntunnel_idle = \"300ms\"\n\n{ROUTES}");
        let proxy = Coregate::start(&config(io, "0", upstream.addr, &extra));
        let mut client = TcpStream::connect(proxy.addr()).unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client
            .write_all(
                b"GET /ws HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
            )
            .unwrap();
        let (head, after) = read_head(&mut client);
        assert!(head.starts_with("HTTP/1.1 101"), "{io}: {head}");
        let started = Instant::now();
        let rest = read_exactly(&mut client, usize::MAX);
        assert_eq!([after, rest].concat(), b"hi", "{io}");
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(250) && waited < Duration::from_secs(3),
            "{io}: closed after {waited:?}"
        );
    }
}
