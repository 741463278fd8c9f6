//! Reusable memory for the futures of active exchanges, so an idle connection does not carry the
//! state of a request it is not serving.
//!
//! A connection task's future is as large as its largest state: the one that forwards a request
//! and relays the response (a few KiB of locals and nested futures). Kept inline, every idle
//! keep-alive connection would pin that much. Instead the task keeps only what an idle
//! connection needs and runs each exchange in a *frame* taken from a per-shard [`FramePool`]:
//! the exchange future is written into the frame, polled there in place, dropped there, and the
//! frame goes back to the pool. Frames are allocated only when more exchanges run at once than
//! ever before on the shard; in steady state nothing is allocated.
//!
//! Soundness: a future in a frame is pinned (never moved) from the first poll until
//! [`Framed`]'s `Drop` drops it in place; only then is the frame returned for reuse. `Framed`
//! must not be leaked with `mem::forget` (nothing here does).

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::cell::{Cell, RefCell};
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::ptr::NonNull;
use std::rc::Rc;
use std::task::{Context, Poll};

/// Frames of one layout (the first one asked for), reused last-in first-out.
#[derive(Default)]
pub struct FramePool {
    layout: Cell<Option<Layout>>,
    free: RefCell<Vec<NonNull<u8>>>,
    /// Frames allocated and not released (in use or free).
    allocated: Cell<usize>,
    /// The most frames in use at once since [`FramePool::restart_busiest`].
    busiest: Cell<usize>,
}

impl FramePool {
    pub fn new() -> FramePool {
        FramePool::default()
    }

    /// Frames held, in use or free: the most exchanges that ran at once since frames were last
    /// released.
    pub fn allocated(&self) -> usize {
        self.allocated.get()
    }

    fn in_use(&self) -> usize {
        self.allocated.get() - self.free.borrow().len()
    }

    /// The most frames in use at once since the last call; counting starts again from those in
    /// use now.
    pub fn restart_busiest(&self) -> usize {
        let busiest = self.busiest.get();
        self.busiest.set(self.in_use());
        busiest
    }

    /// Frees free frames until at most `keep` are held, or none is free: after a burst of
    /// exchanges is over, its frames need not stay resident. Frames in use are not touched.
    pub fn release_spare(&self, keep: usize) {
        let Some(layout) = self.layout.get() else {
            return;
        };
        let mut free = self.free.borrow_mut();
        while self.allocated.get() > keep
            && let Some(frame) = free.pop()
        {
            // SAFETY: a free frame holds no future and was allocated with `layout`.
            unsafe { dealloc(frame.as_ptr(), layout) };
            self.allocated.set(self.allocated.get() - 1);
        }
    }

    fn take(&self, layout: Layout) -> NonNull<u8> {
        let pooled = match self.layout.get() {
            None => {
                self.layout.set(Some(layout));
                true
            }
            Some(pool_layout) => pool_layout == layout,
        };
        if !pooled {
            return allocate(layout);
        }
        let reused = self.free.borrow_mut().pop();
        let frame = reused.unwrap_or_else(|| {
            self.allocated.set(self.allocated.get() + 1);
            allocate(layout)
        });
        self.busiest.set(self.busiest.get().max(self.in_use()));
        frame
    }

    fn give_back(&self, frame: NonNull<u8>, layout: Layout) {
        if self.layout.get() == Some(layout) {
            self.free.borrow_mut().push(frame);
        } else {
            // SAFETY: allocated by `take` with this layout and no longer used.
            unsafe { dealloc(frame.as_ptr(), layout) };
        }
    }
}

fn allocate(layout: Layout) -> NonNull<u8> {
    // SAFETY: `layout` has a non-zero size (checked by `in_frame`).
    NonNull::new(unsafe { alloc(layout) }).unwrap_or_else(|| handle_alloc_error(layout))
}

impl Drop for FramePool {
    fn drop(&mut self) {
        if let Some(layout) = self.layout.get() {
            for frame in self.free.get_mut().drain(..) {
                // SAFETY: free frames hold no future and were allocated with `layout`.
                unsafe { dealloc(frame.as_ptr(), layout) };
            }
        }
    }
}

/// Moves `future` into a frame from `pool` and returns a small handle that polls it in place.
pub fn in_frame<F: Future>(pool: &Rc<FramePool>, future: F) -> Framed<F> {
    let layout = Layout::new::<F>();
    if layout.size() == 0 {
        // A zero-sized future needs no frame; give it a dangling, well-aligned pointer.
        let ptr = NonNull::<F>::dangling();
        // SAFETY: writing a zero-sized value through a dangling, aligned pointer is valid.
        unsafe { ptr.as_ptr().write(future) };
        return Framed {
            ptr,
            pool: None,
            done: false,
            _owns: PhantomData,
        };
    }
    let frame = pool.take(layout).cast::<F>();
    // SAFETY: the frame is fresh or returned, sized and aligned for `F`, and unused.
    unsafe { frame.as_ptr().write(future) };
    Framed {
        ptr: frame,
        pool: Some(pool.clone()),
        done: false,
        _owns: PhantomData,
    }
}

/// A future living in a pooled frame. Resolves to the inner future's output.
pub struct Framed<F: Future> {
    ptr: NonNull<F>,
    pool: Option<Rc<FramePool>>,
    /// The inner future completed and was dropped already.
    done: bool,
    _owns: PhantomData<F>,
}

// The inner future is behind a pointer and never moves, so the handle itself may move freely.
impl<F: Future> Unpin for Framed<F> {}

impl<F: Future> Future for Framed<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        assert!(!self.done, "framed future polled after completion");
        // SAFETY: the future sits in the frame, which does not move while `self` owns it.
        let inner = unsafe { Pin::new_unchecked(&mut *self.ptr.as_ptr()) };
        match inner.poll(cx) {
            Poll::Ready(output) => {
                // Drop it now, not when the handle goes, so its resources are released at once.
                // SAFETY: the future is initialised and is never touched again.
                unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
                self.done = true;
                Poll::Ready(output)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F: Future> Drop for Framed<F> {
    fn drop(&mut self) {
        if !self.done {
            // SAFETY: still initialised; dropped exactly once, in place, as pinning requires.
            unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        }
        if let Some(pool) = &self.pool {
            pool.give_back(self.ptr.cast(), Layout::new::<F>());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    struct CountDrops(Rc<Cell<usize>>);

    impl Drop for CountDrops {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        let mut cx = Context::from_waker(Waker::noop());
        Pin::new(future).poll(&mut cx)
    }

    #[test]
    fn frames_are_reused_and_futures_dropped_once() {
        let pool = Rc::new(FramePool::new());
        let drops = Rc::new(Cell::new(0));
        for round in 0..3 {
            let guard = CountDrops(drops.clone());
            let mut framed = in_frame(&pool, async move {
                let _guard = guard;
                [round; 64]
            });
            assert!(matches!(poll_once(&mut framed), Poll::Ready(values) if values[0] == round));
            assert_eq!(drops.get(), round + 1, "dropped on completion");
            drop(framed);
            assert_eq!(drops.get(), round + 1, "not dropped twice");
        }
        assert_eq!(pool.allocated(), 1, "one frame served every round");
    }

    #[test]
    fn an_unfinished_future_is_dropped_with_its_handle() {
        let pool = Rc::new(FramePool::new());
        let drops = Rc::new(Cell::new(0));
        let guard = CountDrops(drops.clone());
        let mut framed = in_frame(&pool, async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        assert!(poll_once(&mut framed).is_pending());
        drop(framed);
        assert_eq!(drops.get(), 1);
        let mut again = in_frame(&pool, async { 7u64 });
        assert!(matches!(poll_once(&mut again), Poll::Ready(7)));
    }

    #[test]
    fn concurrent_frames_each_get_their_own() {
        let pool = Rc::new(FramePool::new());
        let make = |n: u32| async move {
            std::future::ready(()).await;
            n * 2
        };
        let mut a = in_frame(&pool, make(1));
        let mut b = in_frame(&pool, make(2));
        assert!(matches!(poll_once(&mut b), Poll::Ready(4)));
        assert!(matches!(poll_once(&mut a), Poll::Ready(2)));
        assert_eq!(pool.allocated(), 2);
    }

    #[test]
    fn spare_frames_are_released_down_to_the_recent_busiest() {
        let pool = Rc::new(FramePool::new());
        // One future type (one layout) that waits forever or finishes at once.
        let exchange = |waits: bool| async move {
            let state = [7u8; 64];
            if waits {
                std::future::pending::<()>().await;
            }
            state[0]
        };
        // A burst of eight exchanges at once, then two left running.
        let mut burst: Vec<_> = (0..8).map(|_| in_frame(&pool, exchange(true))).collect();
        for framed in &mut burst {
            assert!(poll_once(framed).is_pending());
        }
        let running = burst.split_off(6);
        drop(burst);
        assert_eq!(pool.allocated(), 8);
        assert_eq!(pool.restart_busiest(), 8, "the burst");

        // Three at once since: the two running and one more that came and went.
        drop(in_frame(&pool, exchange(true)));
        let busiest = pool.restart_busiest();
        assert_eq!(busiest, 3);
        pool.release_spare(busiest);
        assert_eq!(pool.allocated(), 3, "the spare frames of the burst freed");

        // Frames in use are never released, and reuse the ones kept.
        pool.release_spare(0);
        assert_eq!(pool.allocated(), 2, "only the two running are held");
        drop(running);
        let mut again = in_frame(&pool, exchange(false));
        assert!(matches!(poll_once(&mut again), Poll::Ready(7)));
        assert_eq!(pool.allocated(), 2);
    }
}
