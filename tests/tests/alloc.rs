//! The hot path allocates nothing per request in steady state.
//!
//! A counting global allocator counts every allocation made while a coregate shard task is being
//! polled (the connection tasks and the I/O driver: everything coregate runs per request). After
//! a warm-up that lets pools, slots and buffers reach their working size, thousands more
//! keep-alive GETs through coregate must not add a single allocation. Allocations of glommio's
//! own executor loop between task polls are not coregate's hot path and are not counted here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use coregate_tests::client::Client;
use coregate_tests::harness::{Coregate, TLS, config};
use coregate_tests::upstream::{Recorded, Reply, Upstream, ok};

struct Counting;

static IN_SHARD_TASKS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if coregate_engine::io::in_tracked_task() {
            IN_SHARD_TASKS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if coregate_engine::io::in_tracked_task() {
            IN_SHARD_TASKS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if coregate_engine::io::in_tracked_task() {
            IN_SHARD_TASKS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What each client sends per request.
#[derive(Clone, Copy)]
enum Load {
    /// `GET`, no body.
    Get,
    /// `POST` with a body of this many bytes.
    Post(usize),
    /// `POST` with a chunked body of this many bytes, in 4 KiB chunks.
    PostChunked(usize),
}

/// Proxies 10,000 keep-alive GETs (after 2,000 of warm-up) through coregate configured with
/// `extra`, and returns the allocations made inside its shard tasks during the measured part.
fn allocations_in_steady_state(io: &str, extra: &str) -> (u64, u64) {
    allocations_under(io, extra, Load::Get, (500, 2500))
}

/// Like [`allocations_in_steady_state`], with `load` for `rounds` (warm-up, measured) of four
/// requests each.
fn allocations_under(io: &str, extra: &str, load: Load, rounds: (usize, usize)) -> (u64, u64) {
    // The counter is process-wide: measure one coregate at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let body = vec![b'x'; 1024];
    let response = ok(&body);
    let upstream = Upstream::start(std::sync::Arc::new(move |_: &Recorded| {
        Reply::Raw(response.clone())
    }));
    let routes = format!("{extra}\n[[route]]\npath_prefix = \"/\"\nupstream = \"up\"\n");
    let proxy = Coregate::start(&config(io, "0", upstream.addr(), &routes));

    // Several connections at once, so slots, buffers and pooled upstream connections are all
    // exercised at their working size.
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(proxy.addr())).collect();
    let mut round = |n: usize| {
        for i in 0..n {
            let request = match load {
                Load::Get => format!("GET /a/{i} HTTP/1.1\r\nhost: bench\r\n\r\n").into_bytes(),
                Load::Post(len) => {
                    let head = format!(
                        "POST /a/{i} HTTP/1.1\r\nhost: bench\r\ncontent-length: {len}\r\n\r\n"
                    );
                    [head.into_bytes(), vec![b'p'; len]].concat()
                }
                Load::PostChunked(len) => {
                    let mut request = format!(
                        "POST /a/{i} HTTP/1.1\r\nhost: bench\r\ntransfer-encoding: chunked\r\n\r\n"
                    )
                    .into_bytes();
                    for chunk in vec![b'p'; len].chunks(4096) {
                        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                        request.extend_from_slice(chunk);
                        request.extend_from_slice(b"\r\n");
                    }
                    request.extend_from_slice(b"0\r\n\r\n");
                    request
                }
            };
            for client in clients.iter_mut() {
                client.send(&request);
            }
            for client in clients.iter_mut() {
                let response = client.read_response(false).expect("a response");
                assert_eq!(response.body.len(), 1024);
            }
        }
    };
    round(rounds.0);
    let before = IN_SHARD_TASKS.load(Ordering::Relaxed);
    round(rounds.1);
    let after = IN_SHARD_TASKS.load(Ordering::Relaxed);
    (before, after - before)
}

#[test]
fn steady_state_keep_alive_proxying_allocates_nothing_per_request() {
    let (warm_up, measured) = allocations_in_steady_state("uring", "");
    assert_eq!(
        measured, 0,
        "10,000 proxied requests allocated {measured} times inside coregate's shard tasks"
    );
    assert!(
        warm_up > 0,
        "the counter sees shard allocations at all (warm-up allocates)"
    );
}

/// With the access log on, every request also formats a line into the shard's buffer and
/// buffers travel to the writer and back: still nothing allocated once the buffers exist.
#[test]
fn the_access_log_allocates_nothing_per_request_either() {
    let dir = std::env::temp_dir().join(format!("coregate-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let extra = format!(
        "[access_log]\npath = \"{}\"\nbuffer_size = \"4KiB\"\n",
        log.display()
    );
    let (_, measured) = allocations_in_steady_state("uring", &extra);
    let lines = std::fs::read_to_string(&log)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        measured, 0,
        "10,000 logged requests allocated {measured} times inside coregate's shard tasks"
    );
    assert!(lines > 2_000, "the lines were written ({lines})");
}

/// Over TLS too: records are opened and sealed in place in the shard's buffers once the
/// handshake is over (`tls/record.rs`), and a TLS receive waits in the connection's own future.
#[test]
fn tls_keep_alive_allocates_nothing_per_request_either() {
    let (_, measured) = allocations_in_steady_state(TLS, "");
    assert_eq!(
        measured, 0,
        "10,000 requests over TLS allocated {measured} times inside coregate's shard tasks"
    );
}

/// A body received whole before it goes upstream (`request_buffering`) fills pool buffers and
/// leaves in one gathered send whose memory is reused: nothing allocated per request either.
#[test]
fn buffered_request_bodies_allocate_nothing_per_request() {
    let (_, measured) = allocations_under("uring", "", Load::Post(20 * 1024), (100, 500));
    assert_eq!(
        measured, 0,
        "2,000 buffered 20 KiB POSTs allocated {measured} times inside coregate's shard tasks"
    );
}

/// A chunked body buffered whole is decoded into pool buffers and sent by its length, with
/// its head rewritten in place: nothing allocated per request either.
#[test]
fn buffered_chunked_bodies_allocate_nothing_per_request() {
    let (_, measured) = allocations_under("uring", "", Load::PostChunked(20 * 1024), (100, 500));
    assert_eq!(
        measured, 0,
        "2,000 buffered chunked 20 KiB POSTs allocated {measured} times inside coregate's shard tasks"
    );
}

/// Over TLS, a body of several full 16 KiB records often has two or more of them at hand at
/// once: each is opened only when the caller's buffer can take its whole plaintext, so none is
/// parked in memory of its own. Buffered and streamed bodies alike.
#[test]
fn tls_request_bodies_of_several_records_allocate_nothing_per_request() {
    for (extra, what) in [
        ("", "buffered"),
        ("[limits]\nrequest_buffering = 0\n", "streamed"),
    ] {
        let (_, measured) = allocations_under(TLS, extra, Load::Post(40 * 1024), (100, 400));
        assert_eq!(
            measured, 0,
            "1,600 {what} 40 KiB POSTs over TLS allocated {measured} times inside coregate's shard tasks"
        );
    }
}
