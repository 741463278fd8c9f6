//! The shard's I/O buffers: one memory region cut into equal buffers, handed out as [`Buf`]
//! handles, and (with the `uring` mechanism) a provided-buffer ring through which the kernel picks
//! a buffer only when bytes actually arrive.
//!
//! Why this shape: an idle keep-alive connection must not pin memory. With provided buffers a
//! connection waiting for its next request has a receive in flight but no buffer; the kernel takes
//! one from the ring at the moment data lands and the connection gives it back once the bytes are
//! consumed. Buffers are reused last-in first-out so the working set stays small and warm.
//!
//! Everything here belongs to one shard and is used from its thread only (`Rc`, `Cell`); nothing
//! allocates after start-up: the region and the free list are sized once.

use std::cell::{Cell, RefCell};
use std::io;
use std::ptr::NonNull;
use std::rc::Rc;

use io_uring::types::BufRingEntry;

/// The buffer group id of the shard's provided-buffer ring (one group per ring).
pub(crate) const PROVIDED_GROUP: u16 = 0;

/// Buffers offered to the kernel at start; the offer doubles whenever the kernel runs out.
const INITIAL_PROVIDED: usize = 64;

/// Largest number of buffers a shard may own: buffer ids travel as `u16` in completions.
pub const MAX_BUFFERS: usize = 32768;

/// One shard's buffers.
pub struct BufferPool {
    region: Region,
    buf_size: usize,
    count: usize,
    /// Ids of buffers that are neither in the kernel's ring nor in use, most recently freed last.
    free: RefCell<Vec<u16>>,
    provided: Option<ProvidedRing>,
    /// Lowest number of free buffers seen, for the metrics and for sizing advice.
    low_water: Cell<usize>,
}

/// The provided-buffer ring shared with the kernel: we add buffers at the tail, the kernel takes
/// them from the head when a `BUFFER_SELECT` receive completes.
struct ProvidedRing {
    entries: Region,
    mask: u16,
    /// Our copy of the tail; published to the kernel with a release store.
    tail: Cell<u16>,
    /// Buffers currently owned by the kernel through the ring.
    in_kernel: Cell<usize>,
    /// How many buffers we try to keep in the kernel's hands. Starts small and doubles each time
    /// the kernel found the ring empty (up to the ring's size): the kernel takes buffers in ring
    /// order, so every buffer that ever sits in the ring ends up touched (resident). A small ring
    /// keeps resident memory near what the traffic really needs.
    target: Cell<usize>,
    /// The most the target may grow to: the ring's size, or half the buffers.
    max_target: usize,
}

impl BufferPool {
    /// Creates a pool of `count` buffers of `buf_size` bytes. The memory is reserved, not touched:
    /// pages become resident only when a buffer is first used.
    pub fn new(buf_size: usize, count: usize) -> io::Result<Rc<BufferPool>> {
        Self::build(buf_size, count, None)
    }

    /// Creates a pool whose buffers are also offered to the kernel through a provided-buffer ring
    /// of `ring_entries` (a power of two) slots; the caller registers it with
    /// [`BufferPool::provided_ring_addr`].
    pub(crate) fn with_provided_ring(
        buf_size: usize,
        count: usize,
        ring_entries: usize,
    ) -> io::Result<Rc<BufferPool>> {
        Self::build(buf_size, count, Some(ring_entries))
    }

    fn build(
        buf_size: usize,
        count: usize,
        ring_entries: Option<usize>,
    ) -> io::Result<Rc<BufferPool>> {
        if count == 0 || count > MAX_BUFFERS || buf_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count or size out of range",
            ));
        }
        let region = Region::map(buf_size * count)?;
        let provided = match ring_entries {
            None => None,
            Some(entries) => {
                debug_assert!(entries.is_power_of_two() && entries <= MAX_BUFFERS);
                let ring = Region::map(entries * std::mem::size_of::<BufRingEntry>())?;
                Some(ProvidedRing {
                    entries: ring,
                    mask: (entries - 1) as u16,
                    tail: Cell::new(0),
                    in_kernel: Cell::new(0),
                    // Keep at most half the buffers in the kernel's hands so heads and bodies being
                    // written always find free buffers on our side.
                    target: Cell::new(INITIAL_PROVIDED.min(entries).min(count / 2).max(1)),
                    max_target: entries.min(count / 2).max(1),
                })
            }
        };
        // Ids are popped from the end: push in reverse so buffer 0 is used first.
        let free: Vec<u16> = (0..count as u16).rev().collect();
        let pool = Rc::new(BufferPool {
            region,
            buf_size,
            count,
            low_water: Cell::new(count),
            free: RefCell::new(free),
            provided,
        });
        pool.refill_provided();
        Ok(pool)
    }

    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    pub fn count(&self) -> usize {
        self.count
    }

    /// Buffers free on our side (not in use, not in the kernel's ring).
    pub fn free_count(&self) -> usize {
        self.free.borrow().len()
    }

    pub fn low_water(&self) -> usize {
        self.low_water.get()
    }

    /// Takes a free buffer, or `None` when every buffer is in use.
    pub fn take(self: &Rc<Self>) -> Option<Buf> {
        let id = self.free.borrow_mut().pop()?;
        let left = self.free.borrow().len();
        if left < self.low_water.get() {
            self.low_water.set(left);
        }
        Some(Buf {
            pool: self.clone(),
            id,
        })
    }

    /// Wraps a buffer the kernel picked from the provided ring (its id came in a completion).
    pub(crate) fn adopt_provided(self: &Rc<Self>, id: u16) -> Buf {
        let ring = self
            .provided
            .as_ref()
            .expect("provided buffer completion without a ring");
        debug_assert!(ring.in_kernel.get() > 0);
        ring.in_kernel.set(ring.in_kernel.get() - 1);
        Buf {
            pool: self.clone(),
            id,
        }
    }

    /// Address and size of the provided ring, for `IORING_REGISTER_PBUF_RING`.
    pub(crate) fn provided_ring_addr(&self) -> Option<(u64, u16)> {
        self.provided
            .as_ref()
            .map(|ring| (ring.entries.ptr.as_ptr() as u64, ring.mask.wrapping_add(1)))
    }

    /// The kernel found the provided ring empty (a receive failed with `ENOBUFS`): offer more
    /// buffers from now on, and refill.
    pub(crate) fn grow_provided(&self) {
        if let Some(ring) = &self.provided {
            ring.target
                .set((ring.target.get() * 2).min(ring.max_target));
        }
        self.refill_provided();
    }

    /// Buffers the kernel holds right now.
    pub fn in_kernel(&self) -> usize {
        self.provided
            .as_ref()
            .map_or(0, |ring| ring.in_kernel.get())
    }

    /// Moves free buffers into the kernel's ring until it holds its target.
    pub(crate) fn refill_provided(&self) {
        let Some(ring) = &self.provided else { return };
        let mut free = self.free.borrow_mut();
        let missing = ring.target.get().saturating_sub(ring.in_kernel.get());
        if missing == 0 || free.is_empty() {
            return;
        }
        let base = ring.entries.ptr.as_ptr() as *mut BufRingEntry;
        let mut tail = ring.tail.get();
        let mut added = 0;
        while added < missing {
            let Some(id) = free.pop() else { break };
            // SAFETY: `tail & mask` indexes inside the mapped ring; the kernel only reads entries
            // between its head and the tail we publish below.
            unsafe {
                let entry = &mut *base.add((tail & ring.mask) as usize);
                entry.set_addr(self.addr_of(id) as u64);
                entry.set_len(self.buf_size as u32);
                entry.set_bid(id);
            }
            tail = tail.wrapping_add(1);
            added += 1;
        }
        ring.tail.set(tail);
        ring.in_kernel.set(ring.in_kernel.get() + added);
        // SAFETY: the tail lives in the first entry's reserved field (the kernel ABI); the
        // release store publishes the entries written above before the new tail.
        unsafe {
            let tail_ptr = BufRingEntry::tail(base) as *const std::sync::atomic::AtomicU16;
            (*tail_ptr).store(tail, std::sync::atomic::Ordering::Release);
        }
        let left = free.len();
        if left < self.low_water.get() {
            self.low_water.set(left);
        }
    }

    fn addr_of(&self, id: u16) -> *mut u8 {
        debug_assert!((id as usize) < self.count);
        // SAFETY: ids are always below `count`, so the offset is inside the region.
        unsafe { self.region.ptr.as_ptr().add(id as usize * self.buf_size) }
    }

    fn release(&self, id: u16) {
        self.free.borrow_mut().push(id);
        // Returned buffers go back to the kernel first when it is short, so receives keep flowing.
        if let Some(ring) = &self.provided
            && ring.in_kernel.get() < ring.target.get() / 2
        {
            self.refill_provided();
        }
    }
}

/// One buffer of the shard's pool. Dropping it gives it back.
///
/// The memory behind a `Buf` never moves and stays mapped for the pool's life, which is what lets
/// an in-flight io_uring operation own one: the operation's slot holds the `Buf` until the kernel
/// reports completion.
pub struct Buf {
    pool: Rc<BufferPool>,
    id: u16,
}

impl Buf {
    pub fn capacity(&self) -> usize {
        self.pool.buf_size
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the buffer is inside the region and owned by this handle alone.
        unsafe { std::slice::from_raw_parts(self.pool.addr_of(self.id), self.pool.buf_size) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.pool.addr_of(self.id), self.pool.buf_size) }
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut u8 {
        self.pool.addr_of(self.id)
    }

    pub(crate) fn as_ptr(&self) -> *const u8 {
        self.pool.addr_of(self.id)
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        self.pool.release(self.id);
    }
}

impl std::fmt::Debug for Buf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Buf#{}", self.id)
    }
}

/// An anonymous private mapping, unmapped on drop. Pages are untouched until written.
struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

impl Region {
    fn map(len: usize) -> io::Result<Region> {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Region {
            ptr: NonNull::new(ptr as *mut u8).expect("mmap returned null"),
            len,
        })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: the mapping was created by `map` with this length and is no longer referenced:
        // every `Buf` holds the pool alive, and the ring is torn down before the pool.
        unsafe {
            libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, self.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_dropped() {
        let pool = BufferPool::new(4096, 4).unwrap();
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert_eq!(pool.free_count(), 2);
        drop(a);
        assert_eq!(pool.free_count(), 3);
        drop(b);
        assert_eq!(pool.free_count(), 4);
        assert_eq!(pool.low_water(), 2);
    }

    #[test]
    fn the_last_freed_buffer_is_reused_first() {
        let pool = BufferPool::new(4096, 8).unwrap();
        let mut a = pool.take().unwrap();
        a.as_mut_slice()[0] = 7;
        let addr = a.as_ptr();
        drop(a);
        let b = pool.take().unwrap();
        assert_eq!(b.as_ptr(), addr);
    }

    #[test]
    fn exhaustion_is_reported_not_panicked() {
        let pool = BufferPool::new(4096, 1).unwrap();
        let _a = pool.take().unwrap();
        assert!(pool.take().is_none());
    }

    #[test]
    fn provided_ring_keeps_its_target() {
        let pool = BufferPool::with_provided_ring(4096, 16, 8).unwrap();
        assert_eq!(pool.in_kernel(), 8);
        assert_eq!(pool.free_count(), 8);
    }

    #[test]
    fn the_provided_offer_starts_small_and_grows_when_the_kernel_runs_out() {
        let pool = BufferPool::with_provided_ring(4096, 1024, 512).unwrap();
        assert_eq!(pool.in_kernel(), INITIAL_PROVIDED);
        pool.grow_provided();
        assert_eq!(pool.in_kernel(), 2 * INITIAL_PROVIDED);
        for _ in 0..10 {
            pool.grow_provided();
        }
        assert_eq!(pool.in_kernel(), 512, "never beyond the ring");
    }
}
