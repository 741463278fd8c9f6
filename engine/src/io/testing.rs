//! Helpers for the ring-level tests of this module: a ring or shard turned by hand (no
//! executor, so a test decides exactly when entries reach the kernel and when completions are
//! reaped), a waker that counts, loopback socket pairs, and a bound on how long a test may run.

use std::future::Future;
use std::net::{TcpListener, TcpStream};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use super::{IoSettings, IoShard};

/// Settings small enough for a test: a few buffers, a short idle wait.
pub(crate) fn settings() -> IoSettings {
    IoSettings {
        ring_entries: 64,
        buffer_size: 4096,
        buffers: 64,
        idle_wait: Duration::from_millis(5),
    }
}

pub(crate) fn shard() -> Rc<IoShard> {
    IoShard::new(&settings(), 64).expect("a test ring")
}

/// A waker that counts how often it was woken.
pub(crate) struct Counter(AtomicUsize);

impl Counter {
    pub(crate) fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

impl Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

pub(crate) fn waker() -> (Waker, Arc<Counter>) {
    let counter = Arc::new(Counter(AtomicUsize::new(0)));
    (Waker::from(counter.clone()), counter)
}

/// Polls `future` once with a counting waker.
pub(crate) fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    let (waker, _) = waker();
    future.poll(&mut Context::from_waker(&waker))
}

/// Polls `future`, turning `shard`'s ring between polls, until it is ready (at most 5 s).
pub(crate) fn run<F: Future>(shard: &IoShard, future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Poll::Ready(out) = poll_once(future.as_mut()) {
            return out;
        }
        assert!(Instant::now() < deadline, "the operation never completed");
        shard.ring().turn(Duration::from_millis(10));
    }
}

/// A connected loopback TCP pair: the first end for the ring, the second for the test.
pub(crate) fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a test listener");
    let near = TcpStream::connect(listener.local_addr().unwrap()).expect("connect");
    let (far, _) = listener.accept().expect("accept");
    far.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    (near, far)
}

/// Whether `fd` is readable within `timeout` (poll(2); no sleeping).
pub(crate) fn readable(fd: std::os::fd::RawFd, timeout: Duration) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd on the stack.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as libc::c_int) };
    n == 1
}

/// Runs `f` on a thread of its own and fails the test if it takes longer than `limit` (a hang
/// becomes a failure; the stuck thread is left behind).
pub(crate) fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => value,
        Err(_) => panic!("{what} did not finish within {limit:?}"),
    }
}

/// Runs `make()`'s future on a glommio executor of its own (unpinned, small I/O memory) and
/// waits for it, failing after `limit`.
pub(crate) fn on_executor<F, Fut>(limit: Duration, what: &str, make: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    within(limit, what, move || {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(1 << 20)
            .spawn(make)
            .expect("start an executor")
            .join()
            .expect("the executor's future panicked");
    })
}
