//! The engine test binary's global allocator: the system allocator, counting allocations (and
//! the bytes asked for) per thread so a test can prove a code path allocates nothing, or how
//! much, while other tests run in parallel.
//!
//! Test-only; owns nothing else. It forwards every call unchanged.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct CountingAllocator;

thread_local! {
    // Const-initialised: reading it never allocates, so the allocator may use it.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    static BYTES: Cell<u64> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    // During thread teardown the slot may be gone; such allocations are nobody's test.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    let _ = BYTES.try_with(|n| n.set(n.get() + bytes as u64));
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Allocations (including reallocations) this thread made while running `work`.
pub(crate) fn allocations_during<T>(work: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCATIONS.with(Cell::get);
    let result = work();
    let after = ALLOCATIONS.with(Cell::get);
    (result, after - before)
}

/// Bytes this thread asked the allocator for (reallocations at their new size) while running
/// `work`.
pub(crate) fn bytes_allocated_during<T>(work: impl FnOnce() -> T) -> (T, u64) {
    let before = BYTES.with(Cell::get);
    let result = work();
    let after = BYTES.with(Cell::get);
    (result, after - before)
}

#[test]
fn the_counter_sees_allocations() {
    let (_, none) = allocations_during(|| 1 + 1);
    assert_eq!(none, 0);
    let (vec, some) = allocations_during(|| vec![1u8; 64]);
    assert_eq!(vec.len(), 64);
    assert_eq!(some, 1);
    let (_, bytes) = bytes_allocated_during(|| vec![1u8; 100]);
    assert_eq!(bytes, 100);
}
