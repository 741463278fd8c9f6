//! Shared fixtures for coregate's micro-benchmarks (the load harness lives in `bench/run.sh`).
//!
//! [`CountingAllocator`] lets a bench prove, before it measures, that the path it measures
//! allocates nothing: install it as the bench's `#[global_allocator]`, then compare
//! [`allocations`] before and after the work.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting every allocation the process makes.
pub struct CountingAllocator;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations made so far, when [`CountingAllocator`] is the global allocator (else 0).
pub fn allocations() -> usize {
    ALLOCATIONS.load(Ordering::Relaxed)
}
