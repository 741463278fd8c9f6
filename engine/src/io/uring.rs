//! The shard's own io_uring: completion-based socket I/O driven from inside its glommio executor.
//!
//! One [`Ring`] per shard, set up `SINGLE_ISSUER | COOP_TASKRUN | DEFER_TASKRUN | TASKRUN_FLAG`:
//! only the shard's thread touches it, and the kernel runs completion work only when that thread
//! asks (no interrupts, no IPIs). Operations are pushed into the submission queue by whichever
//! task needs them; the [driver](drive) task submits the whole batch and reaps every completion
//! with one `io_uring_enter`, wakes the tasks concerned, yields so they run, and repeats. When a
//! full pass finds no completion and no task ran, the driver sleeps in its own ring
//! (`io_uring_enter` waiting for one completion, bounded by `idle_wait`) instead of letting glommio
//! park: glommio's park re-arms timers, allocates and issues a `membarrier` each time, which is
//! where a naive glommio proxy loses to epoll.
//!
//! Ownership: every in-flight operation has a [`Slot`] in a chunked arena whose memory never moves,
//! so the kernel can be given pointers into it (iovecs, `msghdr`, socket addresses). Buffers an
//! operation reads from or writes into are moved into its slot and handed back on completion. If
//! the future waiting for an operation is dropped (timeout, cancelled connection), the slot is
//! orphaned: a cancel is submitted and the slot, with its buffers, is recycled only when the
//! kernel's final completion arrives. Nothing the kernel may still touch is ever freed early.
//!
//! Deadlines are per operation and coarse: slots carry an `Instant`, the driver sweeps in-flight
//! slots every [`SWEEP_INTERVAL`] and cancels the late ones, which then complete as timeouts. No
//! timer is allocated per request.

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

/// How often in-flight deadlines are checked. Timeouts fire up to this much late.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(25);

/// Slots per arena chunk. Chunks are allocated when concurrency first exceeds what exists, never
/// in steady state.
const CHUNK: usize = 128;

/// Parts one send may gather (head + body pieces).
pub const MAX_PARTS: usize = 4;

/// `user_data` of operations whose completion nobody waits for.
const TAG_IGNORE: u64 = u64::MAX;

/// `IORING_RECVSEND_POLL_FIRST` (linux/io_uring.h): wait for readiness before the first attempt.
const RECVSEND_POLL_FIRST: u16 = 1 << 0;

/// A receive's `ioprio`: with `poll_first`, the kernel arms readiness at once instead of first
/// trying a receive that would find nothing (a keep-alive wait, a reply not yet sent).
fn recv_priority(poll_first: bool) -> u16 {
    if poll_first { RECVSEND_POLL_FIRST } else { 0 }
}

/// `io_uring_enter` flags (linux/io_uring.h): collect completions, and take an extended argument.
const ENTER_GETEVENTS: u32 = 1 << 0;
const ENTER_EXT_ARG: u32 = 1 << 3;

/// A buffer piece to send: bytes `start..end` of `buf`.
pub struct Part {
    pub buf: Buf,
    pub start: u32,
    pub end: u32,
}

/// What an operation left behind: the kernel's result and any buffers it owned.
pub(crate) struct Completion {
    pub res: i32,
    pub timed_out: bool,
    pub bufs: [Option<Buf>; MAX_PARTS],
    /// The 8 bytes an eventfd read produced.
    pub word: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Free,
    /// Submitted; a future waits for it.
    InFlight,
    /// The final completion arrived; the future has not collected it yet.
    Done,
    /// The future was dropped before completion; recycle on the final completion.
    Orphaned,
}

/// One operation's state and the memory the kernel may read or write while it runs.
pub(crate) struct Slot {
    state: State,
    cancel_sent: bool,
    timed_out: bool,
    multishot: bool,
    res: i32,
    waker: Option<Waker>,
    deadline: Option<Instant>,
    /// Buffers owned by the operation (receive target, send parts).
    bufs: [Option<Buf>; MAX_PARTS],
    /// Memory the kernel reads or writes for this kind of operation.
    memory: OpMemory,
    /// Results of a multishot operation not yet taken (accepted sockets).
    queue: Option<Box<VecDeque<i32>>>,
}

/// The per-kind memory of an operation. Its variant is set before submission and not changed
/// until the final completion, so the pointers the kernel holds stay valid.
enum OpMemory {
    None,
    Send {
        iov: [libc::iovec; MAX_PARTS],
        msg: libc::msghdr,
    },
    /// Large enough for IPv4 and IPv6 addresses.
    Connect(libc::sockaddr_in6),
    Timeout(types::Timespec),
    Word(u64),
}

impl Slot {
    fn new() -> Slot {
        Slot {
            state: State::Free,
            cancel_sent: false,
            timed_out: false,
            multishot: false,
            res: 0,
            waker: None,
            deadline: None,
            bufs: Default::default(),
            memory: OpMemory::None,
            queue: None,
        }
    }

    fn queue(&mut self) -> &mut VecDeque<i32> {
        self.queue.get_or_insert_with(Default::default)
    }
}

/// Slots in chunks that never move once allocated, plus a free list.
struct Slots {
    chunks: Vec<Box<[Slot]>>,
    free: Vec<u32>,
    in_flight: usize,
    with_deadline: usize,
}

impl Slots {
    fn get(&mut self, id: u32) -> &mut Slot {
        let id = id as usize;
        &mut self.chunks[id / CHUNK][id % CHUNK]
    }

    fn alloc(&mut self) -> u32 {
        if self.free.is_empty() {
            let base = self.chunks.len() * CHUNK;
            self.chunks.push((0..CHUNK).map(|_| Slot::new()).collect());
            self.free
                .extend((base..base + CHUNK).rev().map(|i| i as u32));
        }
        let id = self.free.pop().expect("a chunk was just added");
        self.in_flight += 1;
        id
    }

    fn release(&mut self, id: u32) {
        let slot = self.get(id);
        debug_assert!(slot.state != State::Free);
        if slot.deadline.take().is_some() {
            self.with_deadline -= 1;
        }
        let slot = self.get(id);
        slot.state = State::Free;
        slot.waker = None;
        slot.cancel_sent = false;
        slot.timed_out = false;
        slot.multishot = false;
        slot.bufs = Default::default();
        slot.memory = OpMemory::None;
        self.in_flight -= 1;
        self.free.push(id);
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
}

/// A shard's ring, its operation slots and its buffers.
pub struct Ring {
    uring: RefCell<IoUring>,
    slots: RefCell<Slots>,
    pool: Rc<BufferPool>,
    idle_wait: Duration,
    next_sweep: Cell<Instant>,
    /// The time at the start of the current pass (see [`Ring::now`]).
    now: Cell<Instant>,
    stats: Cell<RingStats>,
    stopping: Cell<bool>,
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
/// of the run queue. The only tasks that can still be runnable are those woken during the pass
/// by something else, and every such place in coregate calls this. `idle_wait` bounds the delay
/// should one ever be missed.
pub fn note_local_wake() {
    LOCAL_WAKE.with(|flag| flag.set(true));
}

fn take_local_wake() -> bool {
    LOCAL_WAKE.with(|flag| flag.replace(false))
}

impl Ring {
    /// Sets up the shard's ring with `entries` submission slots and registers its provided-buffer
    /// ring.
    pub fn new(
        entries: u32,
        pool_buf_size: usize,
        pool_count: usize,
        idle_wait: Duration,
    ) -> io::Result<Rc<Ring>> {
        let uring = IoUring::builder()
            .setup_single_issuer()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .setup_defer_taskrun()
            .setup_cqsize(entries.saturating_mul(4))
            .build(entries)?;
        let ring_entries = (pool_count / 2)
            .next_power_of_two()
            .clamp(1, super::buffer::MAX_BUFFERS);
        let pool = BufferPool::with_provided_ring(pool_buf_size, pool_count, ring_entries)?;
        let (addr, count) = pool
            .provided_ring_addr()
            .expect("pool built with a provided ring");
        // SAFETY: the ring memory belongs to `pool`, which the `Ring` keeps alive; the ring is
        // unregistered (by closing the io_uring) before the pool is dropped (field order).
        unsafe {
            uring
                .submitter()
                .register_buf_ring_with_flags(addr, count, PROVIDED_GROUP, 0)?;
        }
        Ok(Rc::new(Ring {
            uring: RefCell::new(uring),
            slots: RefCell::new(Slots {
                chunks: Vec::new(),
                free: Vec::new(),
                in_flight: 0,
                with_deadline: 0,
            }),
            pool,
            idle_wait,
            next_sweep: Cell::new(Instant::now() + SWEEP_INTERVAL),
            now: Cell::new(Instant::now()),
            stats: Cell::new(RingStats::default()),
            stopping: Cell::new(false),
        }))
    }

    pub fn pool(&self) -> &Rc<BufferPool> {
        &self.pool
    }

    /// The clock as read when the current pass began: what deadlines and latencies are measured
    /// with. One clock read per pass instead of several per request; stale by at most the
    /// duration of a pass (the work done since the last wake-up).
    pub fn now(&self) -> Instant {
        self.now.get()
    }

    pub fn stats(&self) -> RingStats {
        self.stats.get()
    }

    /// Operations submitted and not yet completed.
    pub fn in_flight(&self) -> usize {
        self.slots.borrow().in_flight
    }

    /// Cancels every operation in flight and refuses new ones (they complete at once with
    /// `ECANCELED`); the driver returns once nothing is in flight any more.
    pub fn stop(&self) {
        if !self.stopping.replace(true) {
            let cancel_all = opcode::AsyncCancel2::new(types::CancelBuilder::any()).build();
            self.fire_and_forget(cancel_all);
        }
    }

    fn bump(&self, f: impl FnOnce(&mut RingStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    /// Queues an entry; submits first if the queue is full.
    fn push(&self, entry: &squeue::Entry) {
        let mut uring = self.uring.borrow_mut();
        loop {
            // SAFETY: every pointer inside `entry` refers to slot or buffer memory that stays
            // valid and untouched until the operation's final completion (see module docs).
            let pushed = unsafe { uring.submission().push(entry) };
            if pushed.is_ok() {
                return;
            }
            match uring.submit() {
                Ok(n) => self.bump(|s| {
                    s.enters += 1;
                    s.submitted += n as u64;
                }),
                Err(err) if err.raw_os_error() == Some(libc::EBUSY) => {
                    // The completion queue is full: reap before we can submit more.
                    drop(uring);
                    self.reap();
                    uring = self.uring.borrow_mut();
                }
                Err(_) => {
                    // EINTR and friends: try again.
                }
            }
        }
    }

    /// Starts an operation: allocates a slot, lets `prepare` fill the slot's memory and build the
    /// entry, and queues it. Returns the future that resolves on its final completion.
    pub(crate) fn start(
        &self,
        deadline: Option<Instant>,
        prepare: impl FnOnce(&mut Slot) -> squeue::Entry,
    ) -> Op<'_> {
        let id = {
            let mut slots = self.slots.borrow_mut();
            let id = slots.alloc();
            if deadline.is_some() {
                slots.with_deadline += 1;
            }
            id
        };
        let entry = {
            let mut slots = self.slots.borrow_mut();
            let slot = slots.get(id);
            slot.state = State::InFlight;
            slot.deadline = deadline;
            slot.res = 0;
            let entry = prepare(slot).user_data(id as u64);
            if self.stopping.get() {
                // Shutting down: nothing new reaches the kernel.
                slot.state = State::Done;
                slot.res = -libc::ECANCELED;
                if slot.multishot {
                    slot.queue().push_back(-libc::ECANCELED);
                }
                None
            } else {
                Some(entry)
            }
        };
        if let Some(entry) = entry {
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

    /// Closes a file descriptor through the ring, batched with the other submissions.
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
    /// `wait` is given, sleeps until `min_complete` completions or the timeout.
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
        let mut stats = self.stats.get();
        stats.enters += 1;
        match result {
            Ok(submitted) => stats.submitted += submitted as u64,
            // ETIME: the wait timed out; EINTR: a signal; EBUSY: completions must be reaped first.
            Err(_) => {}
        }
        self.stats.set(stats);
    }

    /// Moves every available completion into its slot and wakes the waiting tasks.
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
        }
        reaped
    }

    fn complete(&self, user_data: u64, res: i32, flags: u32) {
        if user_data == TAG_IGNORE {
            return;
        }
        let id = user_data as u32;
        let provided = cqueue::buffer_select(flags).map(|bid| self.pool.adopt_provided(bid));
        let mut slots = self.slots.borrow_mut();
        let slot = slots.get(id);
        if slot.multishot {
            let more = cqueue::more(flags);
            match slot.state {
                State::Orphaned => {
                    if res >= 0 {
                        // An accepted socket nobody will take: close it.
                        // SAFETY: the descriptor was just created for us and is owned by no one.
                        unsafe { libc::close(res) };
                    }
                    if !more {
                        slots.release(id);
                    }
                }
                _ => {
                    slot.queue().push_back(res);
                    if !more {
                        slot.state = State::Done;
                        slot.res = res;
                    }
                    if let Some(waker) = slot.waker.take() {
                        waker.wake();
                    }
                }
            }
            return;
        }
        match slot.state {
            State::InFlight => {
                slot.res = res;
                slot.state = State::Done;
                if let Some(buf) = provided {
                    slot.bufs[0] = Some(buf);
                }
                if let Some(waker) = slot.waker.take() {
                    waker.wake();
                }
            }
            State::Orphaned => {
                drop(provided);
                slots.release(id);
            }
            State::Free | State::Done => {
                debug_assert!(false, "completion for slot {id} in state {:?}", slot.state);
            }
        }
    }

    /// Cancels in-flight operations whose deadline passed.
    fn sweep_deadlines(&self, now: Instant) {
        if now < self.next_sweep.get() {
            return;
        }
        self.next_sweep.set(now + SWEEP_INTERVAL);
        let mut late: [u32; 64] = [0; 64];
        let mut found = 0;
        {
            let mut slots = self.slots.borrow_mut();
            if slots.with_deadline == 0 {
                return;
            }
            let count = slots.chunks.len() * CHUNK;
            for id in 0..count as u32 {
                let slot = slots.get(id);
                if slot.state == State::InFlight
                    && !slot.cancel_sent
                    && slot.deadline.is_some_and(|deadline| deadline <= now)
                {
                    slot.cancel_sent = true;
                    slot.timed_out = true;
                    late[found] = id;
                    found += 1;
                    if found == late.len() {
                        break;
                    }
                }
            }
        }
        for &id in &late[..found] {
            self.cancel(id);
        }
        if found > 0 {
            self.bump(|s| s.timeouts += found as u64);
        }
        if found == late.len() {
            // More may be late: look again on the next pass rather than holding a long borrow.
            self.next_sweep.set(now);
        }
    }

    fn park_timeout(&self, now: Instant) -> Duration {
        if self.slots.borrow().with_deadline > 0 {
            self.next_sweep
                .get()
                .saturating_duration_since(now)
                .min(self.idle_wait)
        } else {
            self.idle_wait
        }
    }

    /// Sleeps in the ring until a completion arrives or the timeout passes.
    fn park(&self, now: Instant) {
        let timeout = self.park_timeout(now);
        self.bump(|s| s.parks += 1);
        self.enter(1, Some(timeout));
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
        let completion = Completion {
            res: slot.res,
            timed_out: slot.timed_out && slot.res == -libc::ECANCELED,
            bufs: std::mem::take(&mut slot.bufs),
            word: match slot.memory {
                OpMemory::Word(word) => word,
                _ => 0,
            },
        };
        slots.release(id);
        Poll::Ready(completion)
    }

    fn orphan(&self, id: u32) {
        let send_cancel = {
            let mut slots = self.slots.borrow_mut();
            let slot = slots.get(id);
            match slot.state {
                State::Done => {
                    // Completed but never collected: nothing in the kernel any more.
                    if slot.multishot {
                        for fd in slot.queue().drain(..) {
                            if fd >= 0 {
                                // SAFETY: accepted descriptors nobody took.
                                unsafe { libc::close(fd) };
                            }
                        }
                    }
                    slots.release(id);
                    false
                }
                State::InFlight => {
                    slot.state = State::Orphaned;
                    slot.waker = None;
                    if slot.multishot {
                        for fd in slot.queue().drain(..) {
                            if fd >= 0 {
                                // SAFETY: as above.
                                unsafe { libc::close(fd) };
                            }
                        }
                    }
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
    }

    // ---- the operations the io module builds on ----

    /// Receives into the free tail of `buf` (which the operation owns until it completes).
    pub(crate) fn recv_into(
        &self,
        fd: RawFd,
        mut buf: Buf,
        offset: usize,
        deadline: Option<Instant>,
        poll_first: bool,
    ) -> Op<'_> {
        let len = buf.capacity() - offset;
        // SAFETY: offset < capacity, checked by the caller's contract (debug-asserted).
        debug_assert!(offset < buf.capacity());
        let ptr = unsafe { buf.as_mut_ptr().add(offset) };
        self.start(deadline, move |slot| {
            slot.bufs[0] = Some(buf);
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
        let len = self.pool.buf_size() as u32;
        self.start(deadline, move |_| {
            opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), len)
                .ioprio(recv_priority(poll_first))
                .buf_group(PROVIDED_GROUP)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT)
        })
    }

    /// Sends the non-empty parts, in order, in one operation: `send` for a single part,
    /// `sendmsg` gathering several. The operation owns their buffers until done; they come back
    /// in `Completion::bufs` at the same indices.
    pub(crate) fn send_parts(
        &self,
        fd: RawFd,
        parts: &mut [Option<Part>; MAX_PARTS],
        deadline: Option<Instant>,
    ) -> Op<'_> {
        const FLAGS: i32 = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;
        self.start(deadline, move |slot| {
            let non_empty = parts
                .iter()
                .flatten()
                .filter(|part| part.end > part.start)
                .count();
            if non_empty == 1 {
                let index = parts
                    .iter()
                    .position(|p| p.as_ref().is_some_and(|part| part.end > part.start))
                    .expect("one part is not empty");
                let part = parts[index].take().expect("just found");
                // SAFETY: start < end <= capacity, so the range is inside the buffer.
                let ptr = unsafe { part.buf.as_ptr().add(part.start as usize) };
                let len = part.end - part.start;
                slot.bufs[index] = Some(part.buf);
                return opcode::Send::new(types::Fd(fd), ptr, len)
                    .flags(FLAGS)
                    .build();
            }
            // SAFETY: all-zero is a valid value for these plain C structs.
            slot.memory = OpMemory::Send {
                iov: unsafe { std::mem::zeroed() },
                msg: unsafe { std::mem::zeroed() },
            };
            let OpMemory::Send { iov, msg } = &mut slot.memory else {
                unreachable!("just set")
            };
            let mut count = 0;
            for (index, entry) in parts.iter_mut().enumerate() {
                let Some(part) = entry.take_if(|part| part.end > part.start) else {
                    continue;
                };
                iov[count] = libc::iovec {
                    // SAFETY: start < end <= capacity, so the range is inside the buffer.
                    iov_base: unsafe { part.buf.as_ptr().add(part.start as usize) }
                        as *mut libc::c_void,
                    iov_len: (part.end - part.start) as usize,
                };
                slot.bufs[index] = Some(part.buf);
                count += 1;
            }
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = count as _;
            opcode::SendMsg::new(types::Fd(fd), msg as *const libc::msghdr)
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

    /// Sleeps for `duration` (a ring timeout; no timer allocation).
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
    /// arrives. Returns its slot, for [`Ring::end_watch`]. Costs a submission, no system call
    /// of its own (it goes out with the pass's batch).
    pub(crate) fn watch(&self, fd: RawFd) -> u32 {
        let op = self.start(None, move |_| {
            opcode::PollAdd::new(types::Fd(fd), (libc::POLLIN | libc::POLLRDHUP) as u32).build()
        });
        let id = op.id;
        // The watch is ended by `end_watch`, never awaited.
        std::mem::forget(op);
        id
    }

    /// Ends a watch; true when the socket stayed quiet (nothing arrived, no hang-up).
    pub(crate) fn end_watch(&self, id: u32) -> bool {
        let fired = matches!(self.slots.borrow_mut().get(id).state, State::Done);
        // A completed watch is released; one still in the kernel is cancelled.
        self.orphan(id);
        !fired
    }

    /// Starts a multishot accept on a listening socket.
    pub(crate) fn accept_multi(&self, fd: RawFd) -> u32 {
        let op = self.start(None, move |slot| {
            slot.multishot = true;
            slot.queue().clear();
            opcode::AcceptMulti::new(types::Fd(fd))
                .flags(libc::SOCK_CLOEXEC)
                .build()
        });
        let id = op.id;
        std::mem::forget(op);
        id
    }

    /// Takes the next accepted socket (or error) of a multishot accept, or `None` when the
    /// multishot ended (the caller starts a new one). Registers the waker otherwise.
    pub(crate) fn poll_accepted(&self, id: u32, cx: &mut Context<'_>) -> Poll<Option<i32>> {
        let mut slots = self.slots.borrow_mut();
        let slot = slots.get(id);
        if let Some(res) = slot.queue().pop_front() {
            return Poll::Ready(Some(res));
        }
        if slot.state == State::Done {
            slots.release(id);
            return Poll::Ready(None);
        }
        match &slot.waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            _ => slot.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Stops a multishot accept (its slot is recycled when the kernel confirms).
    pub(crate) fn cancel_accept(&self, id: u32) {
        self.orphan(id);
    }
}

impl Ring {
    /// Runs the ring until [`Ring::stop`] was called and every operation completed.
    ///
    /// Each pass: submit what the tasks queued and, unless a task is known to be runnable, wait
    /// in the same `io_uring_enter` for at least one completion (or `idle_wait`); reap every
    /// completion, waking its task; yield so the woken tasks run and queue their next
    /// operations. Under load the wait returns at once with a batch of completions, so a pass
    /// costs one system call for many requests.
    pub async fn drive(self: Rc<Self>) {
        loop {
            let now = Instant::now();
            self.sweep_deadlines(now);
            if self.stopping.get() && self.in_flight() == 0 {
                // Flush the closes the last tasks queued.
                self.enter(0, None);
                return;
            }
            if take_local_wake() {
                self.enter_if_needed();
            } else {
                self.park(now);
            }
            self.now.set(Instant::now());
            self.reap();
            yield_now().await;
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
mod tests {
    /// Every idle connection keeps one receive in flight, so a slot is part of what an idle
    /// connection costs (see the idle-memory figures in bench/RESULTS.md).
    #[test]
    fn a_slot_stays_small() {
        assert!(
            std::mem::size_of::<super::Slot>() <= 256,
            "{}",
            std::mem::size_of::<super::Slot>()
        );
    }
}
