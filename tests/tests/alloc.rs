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
use coregate_tests::harness::{Coregate, config};
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

#[test]
fn steady_state_keep_alive_proxying_allocates_nothing_per_request() {
    let body = vec![b'x'; 1024];
    let response = ok(&body);
    let upstream = Upstream::start(std::sync::Arc::new(move |_: &Recorded| {
        Reply::Raw(response.clone())
    }));
    let routes = "[[route]]\npath_prefix = \"/\"\nupstream = \"up\"\n";
    let proxy = Coregate::start(&config("uring", "0", upstream.addr(), routes));

    // Several connections at once, so slots, buffers and pooled upstream connections are all
    // exercised at their working size.
    let mut clients: Vec<Client> = (0..4).map(|_| Client::connect(proxy.addr())).collect();
    let mut round = |n: usize| {
        for i in 0..n {
            for client in clients.iter_mut() {
                client.send(format!("GET /a/{i} HTTP/1.1\r\nhost: bench\r\n\r\n").as_bytes());
            }
            for client in clients.iter_mut() {
                let response = client.read_response(false).expect("a response");
                assert_eq!(response.body.len(), 1024);
            }
        }
    };
    round(500);
    let before = IN_SHARD_TASKS.load(Ordering::Relaxed);
    round(2500);
    let after = IN_SHARD_TASKS.load(Ordering::Relaxed);
    assert_eq!(
        after - before,
        0,
        "10,000 proxied requests allocated {} times inside coregate's shard tasks",
        after - before
    );
    assert!(
        before > 0,
        "the counter sees shard allocations at all (warm-up allocates)"
    );
}
