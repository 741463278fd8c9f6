//! The shard's own io_uring: completion-based socket I/O driven from inside its glommio executor.
//!
//! One [`Ring`] per shard, set up `SINGLE_ISSUER | COOP_TASKRUN | DEFER_TASKRUN | TASKRUN_FLAG`:
//! only the shard's thread touches it, and the kernel runs completion work only when that thread
//! asks (no interrupts, no IPIs). Operations are pushed into the submission queue by whichever
//! task needs them; the [driver](Ring::drive) task submits the whole batch and reaps every
//! completion with one `io_uring_enter`, wakes the tasks concerned, yields so they run, and
//! repeats. When a full pass finds no completion and no task ran, the driver sleeps in its own
//! ring (`io_uring_enter` waiting for one completion, bounded by `idle_wait` and the next
//! deadline) instead of letting glommio park: glommio's park re-arms timers, allocates and issues
//! a `membarrier` each time, which is where a naive glommio proxy loses to epoll.
//!
//! Only the driver reaps. A task that finds the submission queue full submits it (one system
//! call, no reaping); if the kernel refuses, the entry waits in a backlog the driver flushes at
//! the start of its next pass. So every task a completion wakes is woken by the driver's own
//! reap, and runs before the driver next decides whether to sleep.
//!
//! Ownership: every in-flight operation has a [`Slot`] in a chunked arena (`slots.rs`) whose memory
//! never moves, so the kernel can be given pointers into it (iovecs, `msghdr`, socket addresses).
//! The one exception is a parked receive ([`Ring::park_receive`]): it points the kernel at no
//! memory of its own (the kernel picks its buffer from the provided ring), so it takes no slot,
//! and its `user_data` carries its owner's key. Buffers an operation reads from or writes into
//! are moved into its slot and handed back on completion. If
//! the future waiting for an operation is dropped (timeout, cancelled connection), the slot is
//! orphaned: a cancel is submitted and the slot, with its buffers, is recycled only when the
//! kernel's final completion arrives. Nothing the kernel may still touch is ever freed early: a
//! ring dropped while the kernel still owns operations (a shard unwinding, completions the kernel
//! dropped) leaks its slot arena and buffer pool rather than free them (see `Drop for Ring`).
//! Descriptors named by queued entries are closed through the ring, after those entries (see
//! `Ring::close`).
//!
//! Completions: the completion queue is sized for the operations a shard may have in flight
//! ([`completion_entries`]). Should it fill anyway, the kernel keeps completions in its overflow
//! list (counted in [`RingStats::cq_overflows`]); if it cannot even do that it drops them,
//! reports `EBADR` and counts them ([`RingStats::dropped`], logged). A stopping ring waits for
//! every operation the kernel owns, except those whose completion it reported dropped.
//!
//! Deadlines are per operation: a timer wheel (`timer.rs`) over slot ids, advanced once per
//! pass; a passed deadline cancels its operation, which then completes as a timeout. Deadlines
//! never fire early (they are rounded up to the wheel's tick and pushed back by however far the
//! pass clock lagged), no timer is allocated per request, and an operation that completes
//! within the wheel's young window (nearly every one of a busy keep-alive exchange) never
//! enters the wheel proper.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::buffer::{Buf, BufferPool, PROVIDED_GROUP};
use super::slots::{Arena, Kind};
use super::timer::{TICK, Wheel};

/// Parts one send may gather: a head and the body pieces behind it (a buffered request body of
/// up to four buffers goes upstream in one write with its head: `proxy/forward.rs`).
pub const MAX_PARTS: usize = 8;

/// `user_data` of operations whose completion nobody waits for.
const TAG_IGNORE: u64 = u64::MAX;

/// `user_data` bit of a parked receive ([`Ring::park_receive`]), whose key is in the low 32
/// bits; every other operation's is its slot id (below 2^32) or [`TAG_IGNORE`].
const TAG_PARKED: u64 = 1 << 32;

/// `IORING_RECVSEND_POLL_FIRST` (linux/io_uring.h): wait for readiness before the first attempt.
const RECVSEND_POLL_FIRST: u16 = 1 << 0;

/// The kernel's largest completion queue (`IORING_MAX_CQ_ENTRIES`, twice its largest submission
/// queue).
pub const MAX_CQ_ENTRIES: u32 = 65536;

/// Completion entries per submission entry, at least: a full batch of submissions plus the
/// completions of operations submitted earlier fit.
const CQ_PER_SQ: u32 = 4;

/// Operations one client connection may have in flight at once (its receive or send, its
/// upstream connection's receive or send, an idle upstream's watch); the completion queue is
/// sized so that every connection's completions fit at once (a drain ends them all together).
pub const OPS_PER_CONNECTION: u32 = 3;

/// How long a stopping ring waits, once the only operations left are those whose completion the
/// kernel reported dropped, before it gives up on them.
const STOP_SETTLE: Duration = Duration::from_millis(100);

/// Times a refused submission is retried at once (`EINTR`, `EBADR`) before the entry waits for
/// the next pass.
const SUBMIT_RETRIES: usize = 3;

/// A receive's `ioprio`: with `poll_first`, the kernel arms readiness at once instead of first
/// trying a receive that would find nothing (a keep-alive wait, a reply not yet sent).
fn recv_priority(poll_first: bool) -> u16 {
    if poll_first { RECVSEND_POLL_FIRST } else { 0 }
}

/// `io_uring_enter` flags (linux/io_uring.h): collect completions, and take an extended argument.
const ENTER_GETEVENTS: u32 = 1 << 0;
const ENTER_EXT_ARG: u32 = 1 << 3;

/// The completion queue for a ring of `ring_entries` serving up to `connections` connections:
/// room for [`OPS_PER_CONNECTION`] completions per connection and at least [`CQ_PER_SQ`] per
/// submission entry, as a power of two, within the kernel's [`MAX_CQ_ENTRIES`].
pub fn completion_entries(ring_entries: u32, connections: usize) -> u32 {
    let per_connection = (connections as u64).saturating_mul(u64::from(OPS_PER_CONNECTION));
    let per_entry = u64::from(ring_entries) * u64::from(CQ_PER_SQ);
    per_connection
        .max(per_entry)
        .checked_next_power_of_two()
        .unwrap_or(u64::MAX)
        .min(u64::from(MAX_CQ_ENTRIES)) as u32
}

/// A buffer piece to send: bytes `start..end` of `buf`. The kernel sends exactly that range, so
/// it is checked when the part is made ([`Part::new`]) and can change only through methods that
/// check it again: `start <= end <= capacity` always holds.
pub struct Part {
    buf: Buf,
    start: u32,
    end: u32,
}

impl Part {
    /// Bytes `start..end` of `buf`.
    ///
    /// # Panics
    /// Unless `start <= end <= buf.capacity()`: a range past the buffer would have the kernel
    /// send the bytes of the buffers next to it.
    pub fn new(buf: Buf, start: u32, end: u32) -> Part {
        check_range(&buf, start, end);
        Part { buf, start, end }
    }

    pub fn start(&self) -> u32 {
        self.start
    }

    pub fn end(&self) -> u32 {
        self.end
    }

    /// Bytes in the part.
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn buf(&self) -> &Buf {
        &self.buf
    }

    /// The bytes the part sends.
    pub fn bytes(&self) -> &[u8] {
        &self.buf.as_slice()[self.start as usize..self.end as usize]
    }

    pub fn into_buf(self) -> Buf {
        self.buf
    }

    /// The buffer, for writing bytes after `end` before [`Part::set_range`] takes them in.
    pub(super) fn buf_mut(&mut self) -> &mut Buf {
        &mut self.buf
    }

    /// Changes the range, with the same check as [`Part::new`].
    pub(super) fn set_range(&mut self, start: u32, end: u32) {
        check_range(&self.buf, start, end);
        self.start = start;
        self.end = end;
    }
}

fn check_range(buf: &Buf, start: u32, end: u32) {
    assert!(
        start <= end && end as usize <= buf.capacity(),
        "a part {start}..{end} outside its {}-byte buffer",
        buf.capacity()
    );
}

/// What an operation left behind: the kernel's result and any buffers it owned.
pub(crate) struct Completion {
    pub res: i32,
    pub timed_out: bool,
    /// The 8 bytes an eventfd read produced.
    pub word: u64,
    /// The buffer of a receive or of a one-part send, and the part it came from.
    buf: Option<Buf>,
    buf_index: u8,
    /// A gathering send's memory with its buffers, back to the spares when dropped.
    gather: Option<Box<Gather>>,
}

impl Completion {
    /// The operation's buffer: a receive's, or a send's first.
    pub fn take_buf(&mut self) -> Option<Buf> {
        self.buf.take().or_else(|| {
            let gather = self.gather.as_mut()?;
            gather.bufs.iter_mut().find_map(Option::take)
        })
    }

    /// Hands each buffer a send owned to `put`, with the index of the part it came from.
    pub fn return_bufs(&mut self, mut put: impl FnMut(usize, Buf)) {
        if let Some(buf) = self.buf.take() {
            put(self.buf_index as usize, buf);
        }
        if let Some(gather) = self.gather.as_mut() {
            for (index, buf) in gather.bufs.iter_mut().enumerate() {
                if let Some(buf) = buf.take() {
                    put(index, buf);
                }
            }
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(gather) = self.gather.take() {
            Gather::recycle(gather);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Free,
    /// Submitted (or waiting in the backlog); the kernel owns it until its completion.
    InFlight,
    /// The final completion arrived (or the ring was stopping and nothing was submitted); the
    /// future has not collected it yet.
    Done,
    /// The future was dropped before completion; recycle on the final completion.
    Orphaned,
}

/// One operation's state and the memory the kernel may read or write while it runs.
pub(crate) struct Slot {
    state: State,
    cancel_sent: bool,
    timed_out: bool,
    /// A non-negative result is a new descriptor (accept): closed if nobody takes it.
    creates_fd: bool,
    /// The operation's deadline is in the timer wheel.
    has_deadline: bool,
    res: i32,
    waker: Option<Waker>,
    /// The buffer owned by a receive or a one-part send (a gathering send's are in its
    /// [`Gather`]), and the index of the part it came from.
    buf: Option<Buf>,
    buf_index: u8,
    /// Memory the kernel reads or writes for this kind of operation.
    memory: OpMemory,
}

/// Receives parked by idle connections ([`Ring::park_receive`]): no slot and no task each,
/// only a deadline link, keyed by their owners' keys.
struct ParkedReceives {
    deadlines: Wheel,
    /// Parked receives the kernel owns.
    in_kernel: usize,
    /// Completed ones, by key, for the shard's reviver.
    done: Vec<(u32, Completion)>,
    reviver: Option<Waker>,
}

impl ParkedReceives {
    fn finish(&mut self, key: u32, completion: Completion) {
        self.done.push((key, completion));
        if let Some(reviver) = &self.reviver {
            reviver.wake_by_ref();
        }
    }
}

/// Bytes a parked receive takes in its ring: its deadline link.
pub fn parked_receive_bytes() -> usize {
    super::timer::link_bytes()
}

/// Bytes of one operation's slot, with its link in the deadline wheel (its free bit in the
/// arena is noise): an idle connection's receive holds one until it parks.
pub fn slot_bytes() -> usize {
    std::mem::size_of::<Slot>() + super::timer::link_bytes()
}

/// The per-kind memory of an operation. Its variant is set before submission and not changed
/// until the final completion, so the pointers the kernel holds stay valid.
enum OpMemory {
    None,
    Send(Box<Gather>),
    /// Large enough for IPv4 and IPv6 addresses.
    Connect(libc::sockaddr_in6),
    Timeout(types::Timespec),
    Word(u64),
}

/// A send gathering several parts: their buffers, iovecs and `msghdr`. Kept apart from the
/// slot, which every operation has (an idle connection's receive among them), since only
/// gathering sends need them: boxed once and reused through the thread's spares, so no send
/// allocates in steady state and the address the kernel was given never moves while it sends.
struct Gather {
    iov: [libc::iovec; MAX_PARTS],
    msg: libc::msghdr,
    bufs: [Option<Buf>; MAX_PARTS],
}

thread_local! {
    /// Gathers of finished sends, for the next ones. Per thread, as rings are: a completion
    /// gives its gather back when dropped, without a handle on its ring.
    static SPARE_GATHERS: RefCell<Vec<Box<Gather>>> = const { RefCell::new(Vec::new()) };
}

/// Gathers made at once when none is spare. A shard's concurrent gathering sends (one per
/// connection sending at that moment) reach their peak only now and then; made one at a time,
/// each new peak would allocate again long after the warm-up. 16 cost about 5 KiB per shard.
const GATHER_BATCH: usize = 16;

impl Gather {
    /// A spare gather; when none is left, a batch of new ones, the rest kept as spares.
    fn take() -> Box<Gather> {
        let spare = SPARE_GATHERS
            .try_with(|spares| {
                let mut spares = spares.borrow_mut();
                if spares.is_empty() {
                    spares.reserve(GATHER_BATCH);
                    spares.extend((1..GATHER_BATCH).map(|_| Gather::new()));
                }
                spares.pop()
            })
            .ok()
            .flatten();
        spare.unwrap_or_else(Gather::new)
    }

    fn new() -> Box<Gather> {
        Box::new(Gather {
            // SAFETY: all-zero is a valid value for these plain C structs.
            iov: unsafe { std::mem::zeroed() },
            msg: unsafe { std::mem::zeroed() },
            bufs: Default::default(),
        })
    }

    /// Drops the buffers still in `gather` (back to their pool) and keeps it for the next send.
    fn recycle(mut gather: Box<Gather>) {
        gather.bufs = Default::default();
        // During thread teardown the spares may be gone; the gather is then simply freed.
        let _ = SPARE_GATHERS.try_with(|spares| spares.borrow_mut().push(gather));
    }
}

impl Default for Slot {
    fn default() -> Slot {
        Slot {
            state: State::Free,
            cancel_sent: false,
            timed_out: false,
            creates_fd: false,
            has_deadline: false,
            res: 0,
            waker: None,
            buf: None,
            buf_index: 0,
            memory: OpMemory::None,
        }
    }
}

/// The ring's operation slots (see `io/slots.rs`) and their counts.
struct Slots {
    arena: Arena<Slot>,
    /// Slots allocated (in flight, or done and not yet collected).
    in_use: usize,
    /// Slots the kernel owns: submitted (or in the backlog) and not finally completed. Only
    /// these keep a stopping ring's driver running.
    in_kernel: usize,
}

impl Slots {
    fn get(&mut self, id: u32) -> &mut Slot {
        self.arena.get(id)
    }

    /// Ids below this may be in use.
    fn span(&self) -> usize {
        self.arena.span()
    }

    fn alloc(&mut self, kind: Kind) -> u32 {
        self.in_use += 1;
        self.arena.alloc(kind)
    }

    fn release(&mut self, id: u32) {
        let slot = self.get(id);
        debug_assert!(slot.state != State::Free);
        debug_assert!(
            !slot.has_deadline,
            "a released slot left its deadline behind"
        );
        slot.state = State::Free;
        slot.waker = None;
        slot.cancel_sent = false;
        slot.timed_out = false;
        slot.creates_fd = false;
        slot.buf = None;
        if let OpMemory::Send(gather) = std::mem::replace(&mut slot.memory, OpMemory::None) {
            Gather::recycle(gather);
        }
        self.in_use -= 1;
        self.arena.free(id);
    }
}

/// Counters the shard exposes for profiling and metrics.
#[derive(Default, Clone, Copy, Debug)]
pub struct RingStats {
    /// `io_uring_enter` calls made to submit and reap.
    pub enters: u64,
    /// Entries submitted.
    pub submitted: u64,
    /// Completions reaped.
    pub completions: u64,
    /// Times the driver slept in the ring.
    pub parks: u64,
    /// Operations cancelled because their deadline passed.
    pub timeouts: u64,
    /// Passes that found the completion queue full: the kernel kept completions aside in its
    /// overflow list (nothing lost, but the queue is too small for the load).
    pub cq_overflows: u64,
    /// Completions the kernel dropped because it could not even keep them aside (`EBADR`). Each
    /// leaves an operation that never completes.
    pub dropped: u64,
    /// Operations a stopping ring gave up waiting for because their completion was dropped.
    pub abandoned: u64,
    /// Submissions the kernel refused (other than a full completion queue), left for the next
    /// pass.
    pub submit_errors: u64,
}

/// How an idle watch ended (see [`Ring::end_watch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WatchEnd {
    /// Input or a hang-up arrived.
    Fired,
    /// Nothing arrived.
    Quiet,
    /// The watch has not completed, but completions may be waiting in the kernel (deferred
    /// completion work, or a queue not reaped yet): ask the socket itself.
    Unsure,
}

/// A shard's ring, its operation slots and its buffers.
///
/// Field order is drop order: the io_uring closes before the memory it was given goes.
pub struct Ring {
    uring: RefCell<IoUring>,
    slots: RefCell<Slots>,
    /// Deadlines of operations in flight.
    wheel: RefCell<Wheel>,
    /// Entries the submission queue could not take yet, in order; flushed each pass.
    backlog: RefCell<VecDeque<squeue::Entry>>,
    pool: Rc<BufferPool>,
    idle_wait: Duration,
    /// The time at the start of the current pass (see [`Ring::now`]).
    now: Cell<Instant>,
    stats: Cell<RingStats>,
    stopping: Cell<bool>,
    /// When `stop` was called, or the last completion after it arrived.
    quiet_since: Cell<Instant>,
    /// The kernel's count of dropped completions, as last read.
    dropped_seen: Cell<u32>,
    parked: RefCell<ParkedReceives>,
    /// Tests: the n-th submission from now fails with `EBUSY` (0: none does).
    #[cfg(test)]
    fail_submit_in: Cell<u32>,
}

thread_local! {
    /// Set when a shard task became runnable without a ring completion (see [`note_local_wake`]).
    static LOCAL_WAKE: Cell<bool> = const { Cell::new(false) };
}

/// Tells the driver that a task of this shard became runnable by other means than a ring
/// completion (a task was spawned, a local event fired), so it must not sleep in the ring before
/// that task ran.
///
/// The driver sleeps (submitting and waiting in one `io_uring_enter`) right after a scheduling
/// pass: every task its completions woke has run by then, because the driver yields to the back
/// of the run queue, and only the driver reaps completions. The only tasks that can still be
/// runnable are those woken during the pass by something else, and every such place in coregate
/// calls this. `idle_wait` bounds the delay should one ever be missed.
pub fn note_local_wake() {
    LOCAL_WAKE.with(|flag| flag.set(true));
}

fn take_local_wake() -> bool {
    LOCAL_WAKE.with(|flag| flag.replace(false))
}

impl Ring {
    /// Sets up the shard's ring with `entries` submission slots and a completion queue of
    /// `cq_entries` (see [`completion_entries`]; clamped to the kernel's limits), and registers
    /// its provided-buffer ring.
    pub fn new(
        entries: u32,
        cq_entries: u32,
        pool_buf_size: usize,
        pool_count: usize,
        idle_wait: Duration,
    ) -> io::Result<Rc<Ring>> {
        let uring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_defer_taskrun()
            .setup_clamp()
            .setup_cqsize(cq_entries.clamp(entries, MAX_CQ_ENTRIES))
            .build(entries)?;
        let ring_entries = (pool_count / 2)
            .next_power_of_two()
            .clamp(1, super::buffer::MAX_BUFFERS);
        let pool = BufferPool::with_provided_ring(pool_buf_size, pool_count, ring_entries)?;
        let (addr, count) = pool
            .provided_ring_addr()
            .expect("pool built with a provided ring");
        // SAFETY: the ring memory belongs to `pool`, which the `Ring` keeps alive; the ring is
        // unregistered (by closing the io_uring) before the pool is dropped (field order), and
        // the pool is leaked instead if the kernel may still use it (see `Drop for Ring`).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(addr, count, PROVIDED_GROUP, 0)?;
        }
        let now = Instant::now();
        Ok(Rc::new(Ring {
            uring: RefCell::new(uring),
            slots: RefCell::new(Slots {
                arena: Arena::new(),
                in_use: 0,
                in_kernel: 0,
            }),
            wheel: RefCell::new(Wheel::new(now)),
            backlog: RefCell::new(VecDeque::new()),
            pool,
            idle_wait,
            now: Cell::new(now),
            stats: Cell::new(RingStats::default()),
            stopping: Cell::new(false),
            quiet_since: Cell::new(now),
            dropped_seen: Cell::new(0),
            parked: RefCell::new(ParkedReceives {
                deadlines: Wheel::new(now),
                in_kernel: 0,
                done: Vec::new(),
                reviver: None,
            }),
            #[cfg(test)]
            fail_submit_in: Cell::new(0),
        }))
    }

    pub fn pool(&self) -> &Rc<BufferPool> {
        &self.pool
    }

    /// The clock as read when the current pass began: what deadlines and latencies are measured
    /// with. One clock read per pass instead of several per request; stale by at most the
    /// duration of a pass (the work done since the last wake-up). Deadlines computed from it are
    /// pushed back by that staleness, so they never fire early.
    pub fn now(&self) -> Instant {
        self.now.get()
    }

    pub fn stats(&self) -> RingStats {
        self.stats.get()
    }

    /// Operations the kernel owns: submitted and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.slots.borrow().in_kernel + self.parked.borrow().in_kernel
    }

    /// The completion queue's size.
    pub fn completion_queue_entries(&self) -> u32 {
        self.uring.borrow().params().cq_entries()
    }

    /// Gives back the memory of operation slots a burst left free (see `io/slots.rs`), and
    /// the deadline links past the arena's end. Not per operation: the arena grows again with
    /// the next burst.
    pub fn release_spare_slots(&self) {
        let span = self.slots.borrow_mut().arena.release_spare();
        self.wheel.borrow_mut().release_beyond(span);
    }

    /// Cancels every operation in flight and refuses new ones (they complete at once with
    /// `ECANCELED`, without reaching the kernel); the driver returns once the kernel owns no
    /// operation any more.
    pub fn stop(&self) {
        if !self.stopping.replace(true) {
            self.quiet_since.set(Instant::now());
            // The reviver ends now: a task left waiting would keep its shard alive.
            if let Some(reviver) = self.parked.borrow_mut().reviver.take() {
                reviver.wake();
                note_local_wake();
            }
            let cancel_all = opcode::AsyncCancel2::new(types::CancelBuilder::any()).build();
            self.fire_and_forget(cancel_all);
        }
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.get()
    }

    fn bump(&self, f: impl FnOnce(&mut RingStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    /// Queues an entry. When the submission queue is full, submits it (one system call, no
    /// reaping) and queues again; if the kernel refuses, the entry waits in the backlog (as does
    /// every entry after it, to keep their order) for the driver's next pass.
    fn push(&self, entry: &squeue::Entry) {
        let mut backlog = self.backlog.borrow_mut();
        if backlog.is_empty() {
            let mut uring = self.uring.borrow_mut();
            // SAFETY: every pointer inside `entry` refers to slot or buffer memory that stays
            // valid and untouched until the operation's final completion (see module docs).
            if unsafe { uring.submission().push(entry) }.is_ok() {
                return;
            }
            if self.submit(&uring).is_ok_and(|n| n > 0)
                // SAFETY: as above.
                && unsafe { uring.submission().push(entry) }.is_ok()
            {
                return;
            }
        }
        backlog.push_back(entry.clone());
    }

    /// Moves backlogged entries into the submission queue, submitting as it fills; stops when the
    /// kernel refuses (the next pass tries again).
    fn flush_backlog(&self) {
        let mut backlog = self.backlog.borrow_mut();
        if backlog.is_empty() {
            return;
        }
        let mut uring = self.uring.borrow_mut();
        while let Some(entry) = backlog.front() {
            // SAFETY: as in `push`; the entry's memory is still owned by its slot.
            if unsafe { uring.submission().push(entry) }.is_ok() {
                backlog.pop_front();
            } else if !self.submit(&uring).is_ok_and(|n| n > 0) {
                return;
            }
        }
    }

    /// Submits the queued entries without waiting or reaping. `EINTR` is retried, `EBADR`
    /// (completions were dropped) is counted, logged and retried; anything else is returned.
    fn submit(&self, uring: &IoUring) -> io::Result<usize> {
        let mut result = Ok(0);
        for _ in 0..SUBMIT_RETRIES {
            #[cfg(test)]
            let submitted = match self.fail_submit_in.get() {
                1 => {
                    self.fail_submit_in.set(0);
                    Err(io::Error::from_raw_os_error(libc::EBUSY))
                }
                0 => uring.submit(),
                n => {
                    self.fail_submit_in.set(n - 1);
                    uring.submit()
                }
            };
            #[cfg(not(test))]
            let submitted = uring.submit();
            self.bump(|s| s.enters += 1);
            match submitted {
                Ok(n) => {
                    self.bump(|s| s.submitted += n as u64);
                    return Ok(n);
                }
                Err(err) if err.raw_os_error() == Some(libc::EINTR) => result = Err(err),
                Err(err) if err.raw_os_error() == Some(libc::EBADR) => {
                    self.account_dropped(uring);
                    result = Err(err);
                }
                Err(err) => {
                    self.bump(|s| s.submit_errors += 1);
                    return Err(err);
                }
            }
        }
        result
    }

    /// Starts an operation: allocates a slot, lets `prepare` fill the slot's memory and build the
    /// entry, and queues it. Returns the future that resolves on its final completion.
    pub(crate) fn start(
        &self,
        deadline: Option<Instant>,
        prepare: impl FnOnce(&mut Slot) -> squeue::Entry,
    ) -> Op<'_> {
        self.start_as(Kind::Busy, deadline, prepare)
    }

    fn start_as(
        &self,
        kind: Kind,
        deadline: Option<Instant>,
        prepare: impl FnOnce(&mut Slot) -> squeue::Entry,
    ) -> Op<'_> {
        let id = {
            let mut slots = self.slots.borrow_mut();
            let id = slots.alloc(kind);
            self.wheel.borrow_mut().reserve(slots.span());
            id
        };
        let entry = {
            let mut slots = self.slots.borrow_mut();
            let slot = slots.get(id);
            slot.state = State::InFlight;
            slot.res = 0;
            let entry = prepare(slot).user_data(id as u64);
            if self.stopping.get() {
                // Shutting down: nothing new reaches the kernel.
                slot.state = State::Done;
                slot.res = -libc::ECANCELED;
                None
            } else {
                slot.has_deadline = deadline.is_some();
                slots.in_kernel += 1;
                Some(entry)
            }
        };
        if let Some(entry) = entry {
            if let Some(deadline) = deadline {
                self.wheel.borrow_mut().add(id, deadline);
            }
            self.push(&entry);
        }
        Op {
            ring: self,
            id,
            finished: false,
        }
    }

    /// Queues an operation whose result nobody needs (closing a socket, cancelling).
    fn fire_and_forget(&self, entry: squeue::Entry) {
        self.push(&entry.user_data(TAG_IGNORE));
    }

    /// Closes a file descriptor through the ring, batched with the other submissions and after
    /// every entry queued before it, so no queued entry can name a number the kernel already
    /// gave to a new descriptor. A close queued after the driver returned is submitted when the
    /// ring drops.
    pub(crate) fn close(&self, fd: RawFd) {
        self.fire_and_forget(opcode::Close::new(types::Fd(fd)).build());
    }

    fn cancel(&self, id: u32) {
        self.fire_and_forget(opcode::AsyncCancel::new(id as u64).build());
    }

    /// Submits what is queued and runs deferred completion work, without waiting; skips the
    /// system call when there is nothing to do.
    fn enter_if_needed(&self) {
        let needs_enter = {
            let mut uring = self.uring.borrow_mut();
            let sq = uring.submission();
            !sq.is_empty() || sq.taskrun() || sq.cq_overflow()
        };
        if needs_enter {
            self.enter(0, None);
        }
    }

    /// One `io_uring_enter`: submits everything queued, runs deferred completion work and, when
    /// `wait` is given, sleeps until `min_complete` completions or the timeout. Errors other
    /// than the expected ones are counted and logged; `EBADR` accounts the dropped completions.
    fn enter(&self, min_complete: u32, wait: Option<Duration>) {
        let uring = self.uring.borrow();
        let to_submit = {
            // SAFETY: shared access is fine: only this thread uses the ring and no other
            // submission queue handle is alive.
            let sq = unsafe { uring.submission_shared() };
            sq.len() as u32
        };
        let flags = ENTER_GETEVENTS;
        let result = match wait {
            Some(timeout) => {
                let ts = types::Timespec::from(timeout);
                let args = types::SubmitArgs::new().timespec(&ts);
                // SAFETY: `args` lives across the call.
                unsafe {
                    uring.submitter().enter(
                        to_submit,
                        min_complete,
                        flags | ENTER_EXT_ARG,
                        Some(&args),
                    )
                }
            }
            // SAFETY: no argument pointer is passed.
            None => unsafe {
                uring
                    .submitter()
                    .enter::<libc::sigset_t>(to_submit, min_complete, flags, None)
            },
        };
        self.bump(|s| s.enters += 1);
        match result {
            Ok(submitted) => self.bump(|s| s.submitted += submitted as u64),
            Err(err) => match err.raw_os_error() {
                // The wait timed out; a signal; the kernel is short of memory for a moment, or
                // (older kernels) completions must be reaped first: the next pass tries again.
                Some(libc::ETIME | libc::EINTR | libc::EAGAIN | libc::EBUSY) => {}
                Some(libc::EBADR) => self.account_dropped(&uring),
                _ => {
                    self.bump(|s| s.submit_errors += 1);
                    let errors = self.stats.get().submit_errors;
                    if errors.is_power_of_two() {
                        eprintln!("coregate: io_uring_enter failed ({err}); {errors} times so far");
                    }
                }
            },
        }
        // SAFETY: as above; only the flags are read.
        if unsafe { uring.submission_shared() }.cq_overflow() {
            self.bump(|s| s.cq_overflows += 1);
        }
    }

    /// Reads the kernel's count of dropped completions; counts and logs any new ones.
    fn account_dropped(&self, uring: &IoUring) {
        // SAFETY: only the overflow counter is read; no other completion queue handle is alive.
        let seen = unsafe { uring.completion_shared() }.overflow();
        let new = seen.wrapping_sub(self.dropped_seen.replace(seen));
        if new > 0 {
            self.bump(|s| s.dropped += u64::from(new));
            eprintln!(
                "coregate: the kernel dropped {new} io_uring completions (completion queue of {} \
                 full and no memory to keep them aside); their operations never complete",
                uring.params().cq_entries()
            );
        }
    }

    /// Moves every available completion into its slot and wakes the waiting tasks. Only the
    /// driver (and the ring's own teardown) calls this.
    fn reap(&self) -> usize {
        let mut reaped = 0;
        loop {
            // Take completions in small batches so no borrow of the ring is held while slots
            // (and the buffer pool, which may refill the kernel ring) are updated.
            let mut batch: [(u64, i32, u32); 32] = [(0, 0, 0); 32];
            let n = {
                let mut uring = self.uring.borrow_mut();
                let mut cq = uring.completion();
                let mut n = 0;
                for cqe in &mut cq {
                    batch[n] = (cqe.user_data(), cqe.result(), cqe.flags());
                    n += 1;
                    if n == batch.len() {
                        break;
                    }
                }
                n
            };
            for &(user_data, res, flags) in &batch[..n] {
                self.complete(user_data, res, flags);
            }
            reaped += n;
            if n < batch.len() {
                break;
            }
        }
        if reaped > 0 {
            self.bump(|s| s.completions += reaped as u64);
            self.pool.refill_provided();
            if self.stopping.get() {
                self.quiet_since.set(Instant::now());
            }
        }
        self.account_dropped(&self.uring.borrow());
        reaped
    }

    fn complete(&self, user_data: u64, res: i32, flags: u32) {
        if user_data == TAG_IGNORE {
            return;
        }
        let provided = cqueue::buffer_select(flags).map(|bid| self.pool.adopt_provided(bid));
        if user_data & TAG_PARKED != 0 {
            self.complete_parked(user_data as u32, res, provided);
            return;
        }
        let id = user_data as u32;
        let mut close = None;
        {
            let mut slots = self.slots.borrow_mut();
            let slot = slots.get(id);
            self.forget_deadline(slot, id);
            match slot.state {
                State::InFlight => {
                    slot.res = res;
                    slot.state = State::Done;
                    if let Some(buf) = provided {
                        slot.buf = Some(buf);
                    }
                    if let Some(waker) = slot.waker.take() {
                        waker.wake();
                    }
                    slots.in_kernel -= 1;
                }
                State::Orphaned => {
                    if slot.creates_fd && res >= 0 {
                        // A connection nobody will take.
                        close = Some(res);
                    }
                    drop(provided);
                    slots.release(id);
                    slots.in_kernel -= 1;
                }
                State::Free | State::Done => {
                    debug_assert!(false, "completion for slot {id} in state {:?}", slot.state);
                }
            }
        }
        if let Some(fd) = close {
            self.close(fd);
        }
    }

    /// A parked receive's completion goes to the reviver's list.
    fn complete_parked(&self, key: u32, res: i32, buf: Option<Buf>) {
        let completion = self.parked_completion(res, buf);
        let mut parked = self.parked.borrow_mut();
        parked.deadlines.remove(key);
        parked.in_kernel -= 1;
        parked.finish(key, completion);
    }

    /// Only its deadline, the ring's stop and its owner going away cancel a parked receive,
    /// and an owner gone takes no completion: so a cancelled one of a running ring timed out.
    fn parked_completion(&self, res: i32, buf: Option<Buf>) -> Completion {
        Completion {
            res,
            timed_out: res == -libc::ECANCELED && !self.stopping.get(),
            word: 0,
            buf,
            buf_index: 0,
            gather: None,
        }
    }

    /// Advances the timer wheel to `now` and cancels in-flight operations whose deadline
    /// passed. The deadlines added during the pass that just ended were computed from its
    /// clock: the wheel pushes them back by how far that clock lagged behind `now`.
    fn expire_deadlines(&self, now: Instant) {
        let lag = now.saturating_duration_since(self.now.get());
        let mut found = 0u64;
        {
            let mut wheel = self.wheel.borrow_mut();
            let mut slots = self.slots.borrow_mut();
            wheel.advance(now, lag, |id| {
                let slot = slots.get(id);
                slot.has_deadline = false;
                if slot.state == State::InFlight && !slot.cancel_sent {
                    slot.cancel_sent = true;
                    slot.timed_out = true;
                    // Queueing the cancel touches neither the slots nor the wheel.
                    self.cancel(id);
                    found += 1;
                }
            });
        }
        self.parked.borrow_mut().deadlines.advance(now, lag, |key| {
            // Queueing the cancel touches neither the parked receives nor the wheel.
            self.fire_and_forget(opcode::AsyncCancel::new(TAG_PARKED | u64::from(key)).build());
            found += 1;
        });
        if found > 0 {
            self.bump(|s| s.timeouts += found);
        }
    }

    /// How long the driver may sleep: until the next deadline, at most `idle_wait`; briefly
    /// when entries wait in the backlog or a stopping ring waits on dropped completions.
    fn park_timeout(&self, now: Instant) -> Duration {
        let mut timeout = self.idle_wait;
        let parked_due = self.parked.borrow().deadlines.next_due();
        for due in [self.wheel.borrow().next_due(), parked_due]
            .into_iter()
            .flatten()
        {
            timeout = timeout.min(due.saturating_duration_since(now));
        }
        if !self.backlog.borrow().is_empty() {
            timeout = timeout.min(TICK);
        }
        if self.stopping.get() {
            timeout = timeout.min(STOP_SETTLE);
        }
        timeout
    }

    /// One pass of the driver: deadlines, the backlog, one `io_uring_enter` (sleeping up to
    /// `wait` for a completion, or not at all), the pass clock, reaping.
    fn pass(&self, wait: Option<Duration>) {
        let now = Instant::now();
        self.expire_deadlines(now);
        self.flush_backlog();
        match wait {
            Some(wait) => {
                self.bump(|s| s.parks += 1);
                self.enter(1, Some(wait));
            }
            None => self.enter_if_needed(),
        }
        self.now.set(Instant::now());
        self.reap();
    }

    /// Whether a stopping ring is done: the kernel owns no operation, or only operations whose
    /// completion it reported dropped and nothing arrived for [`STOP_SETTLE`]. Those are given
    /// up on (counted in [`RingStats::abandoned`]); their memory is leaked when the ring drops.
    fn finished(&self) -> bool {
        let in_kernel = self.in_flight() as u64;
        if in_kernel == 0 {
            return true;
        }
        let stats = self.stats.get();
        let unaccounted = stats.dropped.saturating_sub(stats.abandoned);
        if in_kernel <= unaccounted && self.quiet_since.get().elapsed() >= STOP_SETTLE {
            self.bump(|s| s.abandoned += in_kernel);
            eprintln!(
                "coregate: {in_kernel} io_uring operations never completed (their completions \
                 were dropped); their memory is left allocated"
            );
            return true;
        }
        false
    }

    fn poll_op(&self, id: u32, cx: &mut Context<'_>) -> Poll<Completion> {
        let mut slots = self.slots.borrow_mut();
        let slot = slots.get(id);
        if slot.state != State::Done {
            debug_assert_eq!(slot.state, State::InFlight);
            match &slot.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => slot.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        }
        Poll::Ready(Self::collect(&mut slots, id))
    }

    /// The completion of a finished operation; its slot is released.
    fn collect(slots: &mut Slots, id: u32) -> Completion {
        let slot = slots.get(id);
        let completion = Completion {
            res: slot.res,
            timed_out: slot.timed_out && slot.res == -libc::ECANCELED,
            word: match slot.memory {
                OpMemory::Word(word) => word,
                _ => 0,
            },
            buf: slot.buf.take(),
            buf_index: slot.buf_index,
            gather: match std::mem::replace(&mut slot.memory, OpMemory::None) {
                OpMemory::Send(gather) => Some(gather),
                _ => None,
            },
        };
        slots.release(id);
        completion
    }

    /// Takes a finished or orphaned operation's deadline off the timer wheel.
    fn forget_deadline(&self, slot: &mut Slot, id: u32) {
        if slot.has_deadline {
            slot.has_deadline = false;
            self.wheel.borrow_mut().remove(id);
        }
    }

    /// Gives up on an operation: a completed one is released; one still in the kernel is
    /// cancelled and released when its final completion arrives.
    fn orphan(&self, id: u32) {
        let mut close = None;
        let send_cancel = {
            let mut slots = self.slots.borrow_mut();
            let slot = slots.get(id);
            self.forget_deadline(slot, id);
            match slot.state {
                State::Done => {
                    // Completed but never collected: nothing in the kernel any more.
                    if slot.creates_fd && slot.res >= 0 {
                        close = Some(slot.res);
                    }
                    slots.release(id);
                    false
                }
                State::InFlight => {
                    slot.state = State::Orphaned;
                    slot.waker = None;
                    let send = !slot.cancel_sent;
                    slot.cancel_sent = true;
                    send
                }
                State::Free | State::Orphaned => false,
            }
        };
        if send_cancel {
            self.cancel(id);
        }
        if let Some(fd) = close {
            self.close(fd);
        }
    }

    // ---- the operations the io module builds on ----

    /// Receives into `buf[offset..]` (the operation owns `buf` until it completes).
    ///
    /// # Panics
    /// Unless `offset < buf.capacity()`: the kernel writes wherever the range says.
    pub(crate) fn recv_into(
        &self,
        fd: RawFd,
        mut buf: Buf,
        offset: usize,
        deadline: Option<Instant>,
        poll_first: bool,
    ) -> Op<'_> {
        assert!(
            offset < buf.capacity(),
            "a receive at {offset} in a {}-byte buffer",
            buf.capacity()
        );
        let len = buf.capacity() - offset;
        // SAFETY: offset < capacity (asserted above), so the pointer and the `len` bytes after
        // it are inside the buffer, which the slot owns until the final completion.
        let ptr = unsafe { buf.as_mut_ptr().add(offset) };
        self.start(deadline, move |slot| {
            slot.buf = Some(buf);
            opcode::Recv::new(types::Fd(fd), ptr, len as u32)
                .ioprio(recv_priority(poll_first))
                .build()
        })
    }

    /// Receives into a buffer the kernel picks from the provided ring when data arrives.
    pub(crate) fn recv_provided(
        &self,
        fd: RawFd,
        deadline: Option<Instant>,
        poll_first: bool,
    ) -> Op<'_> {
        let entry = self.provided_receive(fd, poll_first);
        self.start(deadline, move |_| entry)
    }

    /// Like [`Ring::recv_provided`] waiting for readiness first, for a connection idle between
    /// requests: its slot is one of the kind a burst leaves free together (`io/slots.rs`).
    pub(crate) fn recv_idle(&self, fd: RawFd, deadline: Option<Instant>) -> Op<'_> {
        let entry = self.provided_receive(fd, true);
        self.start_as(Kind::Idle, deadline, move |_| entry)
    }

    /// A receive into a buffer the kernel picks from the provided ring.
    fn provided_receive(&self, fd: RawFd, poll_first: bool) -> squeue::Entry {
        let len = self.pool.buf_size() as u32;
        opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), len)
            .ioprio(recv_priority(poll_first))
            .buf_group(PROVIDED_GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
    }

    /// Parks a receive on `fd` under `key`: no slot and no task; when bytes arrive (or the
    /// peer's end, an error, `deadline`, the ring's stop) its completion goes to the list the
    /// shard's reviver takes from ([`Ring::poll_revived`]), with the buffer the kernel picked.
    /// What an idle connection waits with, so it costs the ring only a deadline link.
    ///
    /// The owner parks `key` once until its completion was taken, and ends it with
    /// [`Ring::cancel_parked`] if it goes away first (its completion then still comes, under
    /// the same key: the owner must not give the key to another receive before).
    pub(crate) fn park_receive(&self, fd: RawFd, key: u32, deadline: Option<Instant>) {
        if self.stopping.get() {
            // Shutting down: nothing new reaches the kernel. The reviver wakes outside a
            // completion, so the driver must not sleep first.
            self.complete_parked_now(key);
            return;
        }
        let entry = self
            .provided_receive(fd, true)
            .user_data(TAG_PARKED | u64::from(key));
        {
            let mut parked = self.parked.borrow_mut();
            parked.in_kernel += 1;
            if let Some(deadline) = deadline {
                // Grows only when more connections are parked than ever before.
                parked.deadlines.reserve(key as usize + 1);
                parked.deadlines.add(key, deadline);
            }
        }
        self.push(&entry);
    }

    /// A parked receive that never reached the kernel ends cancelled.
    fn complete_parked_now(&self, key: u32) {
        let completion = self.parked_completion(-libc::ECANCELED, None);
        self.parked.borrow_mut().finish(key, completion);
        note_local_wake();
    }

    /// Ends the parked receive under `key`, whose owner goes away.
    pub(crate) fn cancel_parked(&self, key: u32) {
        self.parked.borrow_mut().deadlines.remove(key);
        self.fire_and_forget(opcode::AsyncCancel::new(TAG_PARKED | u64::from(key)).build());
    }

    /// Sends the non-empty parts, in order, in one operation: `send` for a single part,
    /// `sendmsg` gathering several. The operation owns their buffers until done; they come back
    /// through [`Completion::return_bufs`] with the same indices.
    pub(crate) fn send_parts(
        &self,
        fd: RawFd,
        parts: &mut [Option<Part>; MAX_PARTS],
        deadline: Option<Instant>,
    ) -> Op<'_> {
        const FLAGS: i32 = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;
        for part in parts.iter().flatten() {
            // Parts are checked when made; the kernel trusts this range, so check it again.
            check_range(&part.buf, part.start, part.end);
        }
        let non_empty = parts
            .iter()
            .flatten()
            .filter(|part| !part.is_empty())
            .count();
        let gather = (non_empty > 1).then(Gather::take);
        self.start(deadline, move |slot| {
            let Some(mut gather) = gather else {
                let index = parts
                    .iter()
                    .position(|p| p.as_ref().is_some_and(|part| !part.is_empty()))
                    .expect("one part is not empty");
                let part = parts[index].take().expect("just found");
                // SAFETY: start < end <= capacity (checked above), so the range is inside the
                // buffer, which the slot owns until the final completion.
                let ptr = unsafe { part.buf.as_ptr().add(part.start as usize) };
                let len = part.end - part.start;
                slot.buf = Some(part.buf);
                slot.buf_index = index as u8;
                return opcode::Send::new(types::Fd(fd), ptr, len)
                    .flags(FLAGS)
                    .build();
            };
            let mut count = 0;
            for (index, entry) in parts.iter_mut().enumerate() {
                let Some(part) = entry.take_if(|part| !part.is_empty()) else {
                    continue;
                };
                gather.iov[count] = libc::iovec {
                    // SAFETY: start < end <= capacity (checked above), so the range is inside
                    // the buffer, which the slot owns until the final completion.
                    iov_base: unsafe { part.buf.as_ptr().add(part.start as usize) }
                        as *mut libc::c_void,
                    iov_len: part.len(),
                };
                gather.bufs[index] = Some(part.buf);
                count += 1;
            }
            gather.msg.msg_iov = gather.iov.as_mut_ptr();
            gather.msg.msg_iovlen = count as _;
            // The box's heap memory stays where it is when the box moves into the slot, which
            // keeps it until the final completion.
            let msg = &gather.msg as *const libc::msghdr;
            slot.memory = OpMemory::Send(gather);
            opcode::SendMsg::new(types::Fd(fd), msg)
                .flags(FLAGS as u32)
                .build()
        })
    }

    /// Connects `fd` to `addr`.
    pub(crate) fn connect(
        &self,
        fd: RawFd,
        addr: &socket2::SockAddr,
        deadline: Option<Instant>,
    ) -> Op<'_> {
        self.start(deadline, move |slot| {
            // SAFETY: all-zero is a valid sockaddr_in6.
            slot.memory = OpMemory::Connect(unsafe { std::mem::zeroed() });
            let OpMemory::Connect(storage) = &mut slot.memory else {
                unreachable!("just set")
            };
            let len = (addr.len() as usize).min(std::mem::size_of::<libc::sockaddr_in6>());
            // SAFETY: copying at most the storage's size of a valid IPv4 or IPv6 sockaddr.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    addr.as_ptr() as *const u8,
                    storage as *mut libc::sockaddr_in6 as *mut u8,
                    len,
                );
            }
            opcode::Connect::new(
                types::Fd(fd),
                storage as *const _ as *const libc::sockaddr,
                len as u32,
            )
            .build()
        })
    }

    /// Sleeps for `duration` (a ring timeout; no timer allocation). Completes with `-ETIME`, or
    /// `-ECANCELED` when the ring stops.
    pub(crate) fn sleep(&self, duration: Duration) -> Op<'_> {
        self.start(None, move |slot| {
            slot.memory = OpMemory::Timeout(types::Timespec::from(duration));
            let OpMemory::Timeout(timespec) = &slot.memory else {
                unreachable!("just set")
            };
            opcode::Timeout::new(timespec as *const types::Timespec).build()
        })
    }

    /// Reads one 8-byte counter from an eventfd.
    pub(crate) fn read_eventfd(&self, fd: RawFd) -> Op<'_> {
        self.start(None, move |slot| {
            slot.memory = OpMemory::Word(0);
            let OpMemory::Word(word) = &mut slot.memory else {
                unreachable!("just set")
            };
            opcode::Read::new(types::Fd(fd), word as *mut u64 as *mut u8, 8).build()
        })
    }

    /// Starts watching an idle socket: a one-shot poll that completes when input or a hang-up
    /// arrives. Returns its slot, for [`Ring::end_watch`], or `None` while the ring stops (the
    /// connection will not be reused). Costs a submission, no system call of its own (it goes
    /// out with the pass's batch).
    pub(crate) fn watch(&self, fd: RawFd) -> Option<u32> {
        if self.stopping.get() {
            return None;
        }
        let op = self.start(None, move |_| {
            opcode::PollAdd::new(types::Fd(fd), (libc::POLLIN | libc::POLLRDHUP) as u32).build()
        });
        let id = op.id;
        // The watch is ended by `end_watch`, never awaited.
        std::mem::forget(op);
        Some(id)
    }

    /// Ends a watch and says what it saw. A watch that has not completed is [`WatchEnd::Quiet`]
    /// only when no completion can be waiting: none deferred in the kernel (the `TASKRUN`
    /// flag), none in the queue unreaped, none aside in the overflow list.
    pub(crate) fn end_watch(&self, id: u32) -> WatchEnd {
        let fired = matches!(self.slots.borrow_mut().get(id).state, State::Done);
        // A completed watch is released; one still in the kernel is cancelled.
        self.orphan(id);
        if fired {
            return WatchEnd::Fired;
        }
        let mut uring = self.uring.borrow_mut();
        let pending = {
            let sq = uring.submission();
            sq.taskrun() || sq.cq_overflow()
        };
        if pending || !uring.completion().is_empty() {
            WatchEnd::Unsure
        } else {
            WatchEnd::Quiet
        }
    }

    /// Starts one accept on a listening socket; its result is the new connection's descriptor.
    /// Collect it with [`Ring::poll_accept`]; give up on it with [`Ring::abandon`] (a connection
    /// it brings later is closed).
    pub(crate) fn accept(&self, fd: RawFd) -> u32 {
        let op = self.start(None, move |slot| {
            slot.creates_fd = true;
            opcode::Accept::new(types::Fd(fd), std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC)
                .build()
        });
        let id = op.id;
        std::mem::forget(op);
        id
    }

    /// The result of an accept once it completed (a descriptor the caller now owns, or
    /// `-errno`); registers the waker otherwise.
    pub(crate) fn poll_accept(&self, id: u32, cx: &mut Context<'_>) -> Poll<i32> {
        self.poll_op(id, cx).map(|done| done.res)
    }

    /// Asks the kernel to cancel an operation that is still awaited: it completes (with
    /// `-ECANCELED`, or its result if it finished first) and is collected as usual.
    pub(crate) fn cancel_awaited(&self, id: u32) {
        let send = {
            let mut slots = self.slots.borrow_mut();
            let slot = slots.get(id);
            let send = slot.state == State::InFlight && !slot.cancel_sent;
            slot.cancel_sent |= send;
            send
        };
        if send {
            self.cancel(id);
        }
    }

    /// Gives up on an operation started without a future ([`Ring::accept`]).
    pub(crate) fn abandon(&self, id: u32) {
        self.orphan(id);
    }

    /// A parked receive that completed, with its key, waiting until one did; `None` once the
    /// ring stops and none is left. One task per ring takes them (the shard's reviver): a
    /// second would replace the first's waker.
    pub(crate) fn poll_revived(&self, cx: &mut Context<'_>) -> Poll<Option<(u32, Completion)>> {
        let mut parked = self.parked.borrow_mut();
        if let Some(done) = parked.done.pop() {
            return Poll::Ready(Some(done));
        }
        if self.stopping.get() {
            return Poll::Ready(None);
        }
        match &parked.reviver {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => parked.reviver = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Ring {
    /// Runs the ring until [`Ring::stop`] was called and the kernel owns no operation.
    ///
    /// Each pass: submit what the tasks queued and, unless a task is known to be runnable, wait
    /// in the same `io_uring_enter` for at least one completion (or the next deadline, or
    /// `idle_wait`); reap every completion, waking its task; yield so the woken tasks run and
    /// queue their next operations. Under load the wait returns at once with a batch of
    /// completions, so a pass costs one system call for many requests.
    pub async fn drive(self: Rc<Self>) {
        loop {
            if self.stopping.get() && self.finished() {
                // Flush the closes the last tasks queued.
                self.flush_backlog();
                self.enter(0, None);
                return;
            }
            if take_local_wake() {
                self.pass(None);
            } else {
                self.pass(Some(self.park_timeout(Instant::now())));
            }
            yield_now().await;
        }
    }
}

impl Drop for Ring {
    /// Submits what is still queued (closes made after the driver returned), then, if the
    /// kernel still owns operations (a shard unwinding, completions the kernel dropped), leaks
    /// the slot arena and the buffer pool: closing the io_uring cancels those operations only
    /// asynchronously, and until then the kernel may still write into that memory.
    fn drop(&mut self) {
        self.flush_backlog();
        self.enter(0, None);
        let in_kernel = self.slots.get_mut().in_kernel + self.parked.get_mut().in_kernel;
        let slots = self.slots.get_mut();
        if in_kernel > 0 {
            std::mem::forget(std::mem::replace(&mut slots.arena, Arena::new()));
            std::mem::forget(self.pool.clone());
        }
    }
}

/// The future of one operation. Dropping it before completion orphans the operation (it is
/// cancelled, and its memory recycled when the kernel is done with it).
pub(crate) struct Op<'r> {
    ring: &'r Ring,
    id: u32,
    finished: bool,
}

impl Future for Op<'_> {
    type Output = Completion;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Completion> {
        debug_assert!(!self.finished, "operation polled after completion");
        let ready = self.ring.poll_op(self.id, cx);
        if ready.is_ready() {
            self.finished = true;
        }
        ready
    }
}

impl Drop for Op<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.ring.orphan(self.id);
        }
    }
}

/// Yields once to the executor so other runnable tasks go first.
pub(crate) fn yield_now() -> YieldNow {
    YieldNow { yielded: false }
}

pub(crate) struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Wraps a shard task to mark the time spent polling it as shard work (what the allocation tests
/// count).
pub struct Tracked<F> {
    inner: F,
}

impl<F> Tracked<F> {
    pub fn new(inner: F) -> Tracked<F> {
        Tracked { inner }
    }
}

thread_local! {
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
}

/// True while a tracked shard task is being polled on this thread.
pub fn in_tracked_task() -> bool {
    IN_TASK.with(|flag| flag.get())
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let outer = IN_TASK.with(|flag| flag.replace(true));
        // SAFETY: structural pinning of the only field; it is never moved out.
        let inner = unsafe { self.map_unchecked_mut(|tracked| &mut tracked.inner) };
        let result = inner.poll(cx);
        IN_TASK.with(|flag| flag.set(outer));
        result
    }
}

#[cfg(test)]
impl Ring {
    /// One pass of the driver, by hand: deadlines, submit and wait up to `wait` for a
    /// completion, reap.
    pub(super) fn turn(&self, wait: Duration) {
        self.pass(Some(wait));
    }

    /// Slots allocated: operations in flight or done and not collected.
    pub(super) fn slots_in_use(&self) -> usize {
        self.slots.borrow().in_use
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::pin::pin;
    use std::rc::Rc;
    use std::task::Poll;
    use std::time::{Duration, Instant};

    use io_uring::{opcode, types};

    use super::super::slots::{CHUNK, Kind};
    use super::super::testing::{on_executor, poll_once, tcp_pair};
    use super::{OpMemory, Ring, State, completion_entries};

    fn ring(entries: u32) -> Rc<Ring> {
        Ring::new(
            entries,
            completion_entries(entries, 0),
            4096,
            64,
            Duration::from_millis(5),
        )
        .expect("a test ring")
    }

    fn eventfd(count: u32) -> OwnedFd {
        // SAFETY: plain eventfd creation; checked below.
        let fd = unsafe { libc::eventfd(count, libc::EFD_CLOEXEC) };
        assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor owned by nobody else.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    /// `check` and `run` agree: every size the configuration accepts (powers of two from 32 to
    /// 32768) sets up a ring. Before: 32768 failed with EINVAL (a completion queue of 4 x 32768
    /// is beyond the kernel's 65536).
    #[test]
    fn every_ring_size_the_configuration_accepts_starts() {
        for shift in 5..=15 {
            let entries = 1u32 << shift;
            let cq = completion_entries(entries, 16384);
            if let Err(err) = Ring::new(entries, cq, 4096, 64, Duration::from_millis(5)) {
                panic!("ring_entries = {entries}: {err}");
            }
        }
    }

    /// A chunk of slots all free is given back, never one holding a slot the kernel still owns
    /// (a receive awaited, or orphaned: cancelled but not yet completed); once the arena's last
    /// chunks are gone, the deadline links past its end go too.
    #[test]
    fn spare_slot_chunks_are_given_back_but_not_one_the_kernel_owns() {
        let ring = ring(64);
        let (near, _far) = tcp_pair();
        let burst: Vec<_> = (0..2 * CHUNK)
            .map(|_| ring.sleep(Duration::from_secs(60)))
            .collect();
        let slow = ring.recv_provided(near.as_raw_fd(), None, false);
        assert_eq!(slow.id as usize, 2 * CHUNK, "the lowest free slot");
        let mut slow = Some(slow);
        ring.turn(Duration::ZERO);
        drop(burst);
        while ring.in_flight() > 1 {
            ring.turn(Duration::from_millis(10));
        }
        let held = |ring: &Ring| ring.slots.borrow().arena.chunks_held();
        for awaited in [true, false] {
            if !awaited {
                // Dropped with the kernel still owning it: orphaned until its cancel completes.
                drop(slow.take());
            }
            ring.release_spare_slots();
            assert_eq!(
                held(&ring),
                2,
                "the first chunk, and the one with a receive the kernel owns (awaited: {awaited})"
            );
            assert_eq!(ring.slots.borrow().span(), 3 * CHUNK);
        }
        while ring.in_flight() > 0 {
            ring.turn(Duration::from_millis(10));
        }
        ring.release_spare_slots();
        assert_eq!(held(&ring), 1);
        assert_eq!(ring.slots.borrow().span(), CHUNK);
        assert_eq!(
            ring.wheel.borrow().capacity(),
            CHUNK,
            "the deadline links follow"
        );
        let again = ring.sleep(Duration::from_millis(1));
        assert_eq!(again.id, 0);
    }

    /// A connection given back to a pool after `stop()` starts a watch; the driver must still
    /// finish. Before: the watch's slot was counted in flight for ever and the driver never
    /// returned ("the driver did not finish within 5s").
    #[test]
    fn a_watch_started_after_stop_does_not_keep_the_driver_running() {
        on_executor(Duration::from_secs(5), "the driver", || async {
            let ring = ring(64);
            let (near, _far) = tcp_pair();
            let driver = glommio::spawn_local(ring.clone().drive());
            ring.stop();
            let _ = ring.watch(near.as_raw_fd());
            driver.await;
        });
    }

    /// A mass completion (a drain closing ten thousand idle connections at once) fits the
    /// completion queue: nothing waits in the kernel's overflow list. Before: the queue held
    /// 4 x 1024 and the kernel had to keep the rest aside.
    #[test]
    fn ten_thousand_completions_at_once_fit_the_completion_queue() {
        let ring = Ring::new(
            1024,
            completion_entries(1024, 10_000),
            4096,
            64,
            Duration::from_millis(5),
        )
        .expect("a test ring");
        let ops: Vec<_> = (0..10_000)
            .map(|_| ring.sleep(Duration::from_millis(20)))
            .collect();
        // Wait in the ring until every timer fired (or a second passed).
        ring.enter(10_000, Some(Duration::from_secs(1)));
        let overflowed = ring.uring.borrow_mut().submission().cq_overflow();
        assert!(
            !overflowed,
            "the kernel kept completions in its overflow list"
        );
        assert_eq!(ring.stats().cq_overflows, 0);
        let deadline = Instant::now() + Duration::from_secs(5);
        for op in ops {
            let mut op = pin!(op);
            loop {
                if poll_once(op.as_mut()).is_ready() {
                    break;
                }
                assert!(Instant::now() < deadline, "a completion was lost");
                ring.turn(Duration::from_millis(10));
            }
        }
    }

    /// A task woken by completions reaped while another task's submission found the queue full
    /// must run before the driver sleeps. Before: it waited the whole `idle_wait` (2 s).
    #[test]
    fn a_task_woken_while_the_submission_queue_is_full_runs_before_the_driver_sleeps() {
        on_executor(Duration::from_secs(10), "the test", || async {
            let ring = Ring::new(32, 128, 4096, 64, Duration::from_secs(2)).expect("a test ring");
            let ready = eventfd(1);
            let started = Instant::now();
            let woken = glommio::spawn_local({
                let ring = ring.clone();
                let fd = ready.as_raw_fd();
                async move {
                    // Completes as soon as it is submitted: the eventfd counts 1.
                    ring.read_eventfd(fd).await;
                    started.elapsed()
                }
            });
            let filler = glommio::spawn_local({
                let ring = ring.clone();
                async move {
                    // The second submission a full queue forces fails with EBUSY.
                    ring.fail_submit_in.set(2);
                    let mut sleeps: Vec<_> = (0..70)
                        .map(|_| ring.sleep(Duration::from_secs(10)))
                        .collect();
                    std::future::poll_fn(|cx| {
                        let _ = std::future::Future::poll(std::pin::Pin::new(&mut sleeps[0]), cx);
                        Poll::<()>::Pending
                    })
                    .await;
                }
            })
            .detach();
            let driver = glommio::spawn_local(ring.clone().drive());
            let waited = woken.await;
            assert!(
                waited < Duration::from_millis(500),
                "the woken task waited {waited:?}"
            );
            filler.cancel();
            ring.stop();
            driver.await;
        });
    }

    /// A deadline computed late in a pass (from the pass's clock) must not cut the operation's
    /// time short. Before: a 40 ms deadline set 30 ms into a pass fired after about 10-35 ms.
    #[test]
    fn a_deadline_set_late_in_a_pass_never_fires_early() {
        let ring = ring(64);
        ring.turn(Duration::ZERO);
        // The pass began 30 ms ago: its tasks have been running since.
        ring.now.set(Instant::now() - Duration::from_millis(30));
        let asked = Instant::now();
        let op = ring.start(Some(ring.now() + Duration::from_millis(40)), |slot| {
            slot.memory = OpMemory::Timeout(types::Timespec::from(Duration::from_secs(10)));
            let OpMemory::Timeout(timespec) = &slot.memory else {
                unreachable!("just set")
            };
            opcode::Timeout::new(timespec as *const types::Timespec).build()
        });
        let mut op = pin!(op);
        let done = loop {
            if let Poll::Ready(done) = poll_once(op.as_mut()) {
                break done;
            }
            assert!(asked.elapsed() < Duration::from_secs(5), "never timed out");
            ring.turn(Duration::from_millis(2));
        };
        let waited = asked.elapsed();
        assert!(done.timed_out, "{}", done.res);
        assert!(
            waited >= Duration::from_millis(40),
            "fired after {waited:?} of 40 ms"
        );
    }

    /// A close queued after the driver returned is still made when the ring goes. Before: it
    /// was never submitted and the descriptor leaked.
    #[test]
    fn a_close_queued_before_the_ring_is_dropped_is_made() {
        let ring = ring(64);
        let (near, mut far) = tcp_pair();
        ring.close(std::os::fd::IntoRawFd::into_raw_fd(near));
        drop(ring);
        let mut byte = [0u8; 1];
        let read = loop {
            match std::io::Read::read(&mut far, &mut byte) {
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        assert!(matches!(read, Ok(0)), "the peer sees no close: {read:?}");
    }

    /// A ring dropped with operations in flight (a shard unwinding) must not free memory the
    /// kernel may still write: its slots and buffer pool are leaked instead. Without operations
    /// in flight nothing is leaked. Before: the pool was freed either way.
    #[test]
    fn a_ring_dropped_with_operations_in_flight_leaks_what_the_kernel_may_touch() {
        let (near, _far) = tcp_pair();
        let ring = ring(64);
        let pool = Rc::downgrade(ring.pool());
        let buf = ring.pool().take().expect("a buffer");
        let op = ring.recv_into(near.as_raw_fd(), buf, 0, None, false);
        std::mem::forget(op);
        ring.turn(Duration::ZERO);
        drop(ring);
        assert!(pool.upgrade().is_some(), "the pool was freed");

        let ring = self::ring(64);
        let pool = Rc::downgrade(ring.pool());
        drop(ring);
        assert!(pool.upgrade().is_none(), "a clean ring leaked its pool");
    }

    /// The kernel writes wherever a receive's range says: an offset at the end of the buffer
    /// (or past it) is refused in every build. Before: only a `debug_assert!` checked it (a
    /// different panic in test builds, none in release).
    #[test]
    #[should_panic(expected = "a receive at 4096 in a 4096-byte buffer")]
    fn a_receive_at_the_end_of_its_buffer_is_refused() {
        let ring = ring(64);
        let (near, _far) = tcp_pair();
        let buf = ring.pool().take().expect("a buffer");
        let _op = ring.recv_into(near.as_raw_fd(), buf, 4096, None, false);
    }

    /// A stopping ring whose only operations left are those whose completions the kernel
    /// reported dropped gives up on them after a short settle, and leaks their memory rather
    /// than free it. Before: the driver waited for them for ever.
    #[test]
    fn a_stopping_ring_gives_up_on_completions_the_kernel_dropped() {
        on_executor(Duration::from_secs(5), "the driver", || async {
            let ring = ring(64);
            {
                // An operation the kernel owns but will never complete: its completion was
                // dropped, and the kernel said so (as `account_dropped` records it).
                let mut slots = ring.slots.borrow_mut();
                let id = slots.alloc(Kind::Busy);
                slots.get(id).state = State::InFlight;
                slots.in_kernel += 1;
            }
            ring.bump(|s| s.dropped += 1);
            let pool = Rc::downgrade(ring.pool());
            let driver = glommio::spawn_local(ring.clone().drive());
            ring.stop();
            driver.await;
            assert_eq!(ring.stats().abandoned, 1);
            drop(ring);
            assert!(
                pool.upgrade().is_some(),
                "memory the kernel may own was freed"
            );
        });
    }

    /// The deadline sweep's cost with 10,000 idle connections, each with a receive whose
    /// deadline is a minute away (see bench/RESULTS.md, "Deadline sweep"). Run by hand:
    /// `cargo test --release -p coregate-engine --lib sweep_cost -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn sweep_cost_with_ten_thousand_idle_connections() {
        const IDLE: usize = 10_000;
        const PASSES: u32 = 2_400;
        let ring = Ring::new(
            1024,
            completion_entries(1024, IDLE),
            4096,
            64,
            Duration::from_millis(5),
        )
        .expect("a test ring");
        let start = Instant::now();
        let ops: Vec<_> = (0..IDLE)
            .map(|_| {
                ring.start(Some(start + Duration::from_secs(60)), |slot| {
                    slot.memory =
                        OpMemory::Timeout(types::Timespec::from(Duration::from_secs(600)));
                    let OpMemory::Timeout(timespec) = &slot.memory else {
                        unreachable!("just set")
                    };
                    opcode::Timeout::new(timespec as *const types::Timespec).build()
                })
            })
            .collect();
        ring.turn(Duration::ZERO);
        // One sweep per 25 ms of (simulated) time for 60 s, up to just before the deadlines:
        // nothing expires, so this is what idle connections cost the sweep, moving the
        // deadlines down the wheel's levels (twice each on the way) included.
        let began = Instant::now();
        for pass in 0..PASSES {
            ring.expire_deadlines(start + Duration::from_millis(25) * pass);
        }
        let per_pass = began.elapsed() / PASSES;
        assert_eq!(ring.stats().timeouts, 0);
        println!("sweep with {IDLE} idle deadlines: {per_pass:?} per 25 ms sweep");
        drop(ops);
    }

    /// Every idle connection keeps one receive in flight, so a slot is part of what an idle
    /// connection costs (see the idle-memory figures in bench/RESULTS.md). 224 bytes while a
    /// send's iovecs, `msghdr` and four buffers lived in every slot; 80 since a gathering send
    /// keeps them (eight parts) in a box of its own.
    #[test]
    fn a_slot_stays_small() {
        assert!(
            std::mem::size_of::<super::Slot>() <= 80,
            "{}",
            std::mem::size_of::<super::Slot>()
        );
    }
}
