//! Parking: a keep-alive connection that has idled [`PARK_AFTER`] between requests gives up its
//! task. What it needs to go on (the socket with its TLS session, the listener's context, its
//! registry key, its request count) waits in the shard's [`ParkedTable`], and its receive waits
//! in the ring with no task awaiting it and no operation slot, under the entry's key
//! ([`Conn::park`]). When that receive completes (the next request's first bytes, a close, the
//! keep-alive timeout, a drain's shutdown) the shard's reviver takes the connection out of the
//! table, and closes it or spawns a task that serves it on as the first one would have.
//!
//! Why: an idle connection in its task costs the task's future and header and its receive's
//! slot; parked, it costs its entry here and a deadline link instead, about a quarter of that
//! (`check` prints both).
//!
//! Why not at once: a parked connection's next request pays for a cancelled receive, a new one
//! and a task, and spawning allocates. A connection that carries a request at least every
//! [`PARK_AFTER`] never parks, so a busy shard allocates nothing per request.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::context::ConnContext;
use crate::http1::HeadScanner;
use crate::io::{Completion, Conn, ReadBuf};
use crate::shard::Shard;
use crate::task::spawn;

use super::{Idle, Session};

/// How long a keep-alive connection idles in its task before it parks.
pub const PARK_AFTER: Duration = Duration::from_secs(1);

/// A parked connection: a session without its task, buffers or parse state (it holds none while
/// idle).
pub struct Parked {
    client: Conn,
    context: ConnContext,
    /// Key in the shard's connection registry.
    key: usize,
    served: u64,
}

/// How often a shard looks whether parking freed enough memory to give back.
const TRIM_EVERY: Duration = Duration::from_millis(250);

/// Parks since the heap was last trimmed that make trimming worth its walk of the heap while
/// parking goes on: the tasks of 1024 connections are about 450 KiB.
const TRIM_AFTER_PARKS: usize = 1024;

/// Parks that make a trim worth it once parking paused: fewer (a trickle) wait for more.
const TRIM_AFTER_WAVE: usize = 64;

/// A shard's parked connections, by the key their receive was parked with.
#[derive(Default)]
pub struct ParkedTable {
    parked: RefCell<Slab<Parked>>,
    /// Connections parked since the heap was last trimmed.
    parks_since_trim: Cell<usize>,
}

impl ParkedTable {
    pub fn len(&self) -> usize {
        self.parked.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Takes the connection parked under `key` out, with its receive's result (`done`, its
    /// bytes put into `rb`). A connection leaves the table only here, once its receive
    /// completed, so the ring never completes a receive under a key given to another.
    fn take_woken(
        &self,
        key: u32,
        done: Completion,
        rb: &mut ReadBuf,
    ) -> Option<(Parked, io::Result<usize>)> {
        let mut parked = self.parked.borrow_mut().try_remove(key as usize)?;
        let received = parked.client.unpark(done, rb);
        Some((parked, received))
    }
}

/// Bytes a parked connection takes in its shard's table: its entry and the slab's tag.
pub fn parked_entry_bytes() -> usize {
    std::mem::size_of::<Parked>() + std::mem::size_of::<usize>()
}

impl Session {
    /// Files the connection in the shard's parked table, its receive parked in the ring until
    /// `deadline` (the keep-alive timeout); the task that ran it may end.
    pub(super) fn park(self, deadline: Instant) {
        let Session {
            shard,
            mut client,
            context,
            rb,
            key,
            served,
            ..
        } = self;
        debug_assert!(rb.is_empty(), "a connection parked with bytes at hand");
        let mut parked = shard.parked.parked.borrow_mut();
        let entry = parked.vacant_entry();
        let ring_key = u32::try_from(entry.key()).expect("fewer than 2^32 parked connections");
        client.park(Some(deadline), ring_key);
        entry.insert(Parked {
            client,
            context,
            key,
            served,
        });
        let parks = &shard.parked.parks_since_trim;
        parks.set(parks.get() + 1);
    }
}

/// What a parked connection's completed receive means: the next request's first bytes, the
/// connection's end (the client closed, the keep-alive timeout, a drain's shutdown), or a wait
/// in a task: on a TLS connection the records received are opened there, and may carry no
/// request (a key update, an alert); with no buffer for the kernel, nothing was received.
fn what_woke(received: &io::Result<usize>, tls: bool) -> Idle {
    match received {
        Ok(0) => Idle::Close,
        Ok(_) if tls => Idle::Wait,
        Ok(_) => Idle::Request,
        Err(err) if err.kind() == io::ErrorKind::WouldBlock => Idle::Wait,
        Err(_) => Idle::Close,
    }
}

/// The shard's reviver: closes each parked connection whose receive ended it, and spawns a task
/// for each one that goes on. Runs until the shard's ring stops (the drain has revived and
/// closed every parked connection by then; any left are closed with the shard's table).
pub async fn revive_parked(shard: Rc<Shard>) {
    while let Some((key, done)) = shard.io.revived().await {
        let mut rb = ReadBuf::new();
        let Some((parked, received)) = shard.parked.take_woken(key, done, &mut rb) else {
            continue;
        };
        match what_woke(&received, parked.client.is_tls()) {
            // Dropped: its socket closes through the ring.
            Idle::Close => shard.unregister(parked.key),
            woke => spawn(serve_woken(shard.clone(), parked, rb, woke)),
        }
    }
}

/// Gives the memory of the tasks parked connections ended, and of exchange frames and ring
/// slots no longer needed, back to the system after parking.
///
/// The allocator keeps freed memory for reuse and returns little of it on its own, so without
/// this a shard's resident memory would stay at its peak of connections in tasks (all of them,
/// for a burst of new connections) instead of falling to what parked ones cost. A trim walks
/// the heap, every thread's arena with it (glibc has no trim of one arena), so it is kept rare:
/// once a wave of [`TRIM_AFTER_WAVE`] parks or more is over (a [`TRIM_EVERY`] with none), or
/// every [`TRIM_EVERY`] while one goes on past [`TRIM_AFTER_PARKS`]. Runs until the shard
/// drains.
pub async fn trim_after_parking(shard: Rc<Shard>) {
    let parks = &shard.parked.parks_since_trim;
    let mut seen = 0;
    while !shard.draining() {
        shard.io.sleep(TRIM_EVERY).await;
        let busiest = shard.frames().restart_busiest();
        let wave_over = parks.get() >= TRIM_AFTER_WAVE && parks.get() == seen;
        if wave_over || parks.get() >= TRIM_AFTER_PARKS {
            parks.set(0);
            // The exchanges of the burst that opened these connections are over: their frames
            // go too, all but as many as ran at once in the last period, and the ring slots
            // their receives took while the connections still had tasks.
            shard.frames().release_spare(busiest);
            shard.io.release_spare_slots();
            // SAFETY: malloc_trim only hands whole free pages of the heap back to the kernel.
            unsafe { libc::malloc_trim(0) };
        }
        seen = parks.get();
    }
}

/// Serves a revived connection on: its request, whose first bytes are in `rb`
/// ([`Idle::Request`]), or a wait for one ([`Idle::Wait`]).
fn serve_woken(
    shard: Rc<Shard>,
    parked: Parked,
    rb: ReadBuf,
    woke: Idle,
) -> impl Future<Output = ()> {
    let Parked {
        client,
        context,
        key,
        served,
    } = parked;
    let mut session = Session {
        shard,
        client,
        context,
        rb,
        scanner: HeadScanner::new(),
        key,
        served,
        first_byte: None,
    };
    // Decided before the future: what it keeps is what the connection's next idle wait holds.
    let arrived = matches!(woke, Idle::Request);
    if arrived {
        session.request_began();
    }
    async move {
        let ended = session.serve_requests(arrived).await;
        session.end(ended);
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::rc::Rc;

    use super::{Idle, Parked};
    use crate::io::ReadBuf;
    use crate::shard::Shard;

    fn future_size<F, Fut>(_: F) -> usize
    where
        F: Fn(Rc<Shard>, Parked, ReadBuf, Idle) -> Fut,
        Fut: Future<Output = ()>,
    {
        std::mem::size_of::<Fut>()
    }

    /// A revived connection idles in this task until it parks again, as a new one does in
    /// `serve`'s: held to the same bound (`an_idle_connection_task_stays_small`).
    #[test]
    fn a_revived_connection_task_stays_small() {
        let size = future_size(super::serve_woken);
        assert!(size <= 400, "a revived connection's task is {size} bytes");
    }
}
