//! Socket I/O: the only module that accepts, connects, reads, writes or closes sockets.
//!
//! Every shard drives its sockets through its own completion-based io_uring ([`uring::Ring`]):
//! multishot accept, receives into kernel-picked provided buffers, gathered `sendmsg`, batched
//! submission and reaping with one `io_uring_enter` per scheduling pass. The rest of the engine
//! sees a small surface and never the ring itself:
//!
//! | type | file | owns |
//! |---|---|---|
//! | [`IoShard`] | this file | a shard's ring, buffer pool and clock; listening and connecting |
//! | [`Listener`] | `accept.rs` | a shard's `SO_REUSEPORT` socket and its accept operation |
//! | [`Conn`] | `conn.rs` | a connected socket (client or upstream): receive, send, idle watch, parked receive, close |
//! | [`TlsLayer`] | `tls.rs` | a TLS session's records on the ring (either end): handshake, decrypt, encrypt |
//! | [`ReadBuf`] | `readbuf.rs` | bytes received and not yet consumed, holding no buffer while empty |
//! | [`Outbound`] | `outbound.rs` | the buffer pieces of one gathered send |
//! | [`tunnel::join`] | `tunnel.rs` | two connections joined after a protocol switch |
//! | [`Ring`] | `uring.rs` | the io_uring itself: operation slots, submission, reaping, closes |
//! | (deadlines) | `timer.rs` | the ring's timer wheel over operation slots |
//!
//! The parser, router, pools and pipeline see only bytes in a [`ReadBuf`] and buffers to send in
//! an [`Outbound`]. A transport that changes the bytes on the wire (TLS) plugs in behind
//! [`Conn::recv`] and [`Conn::send`], the two places every byte passes: `tls.rs` is that
//! record layer, on the same receive and send operations as plain bytes. Deadlines are absolute
//! `Instant`s; a passed deadline surfaces as an `io::ErrorKind::TimedOut` error, never before
//! the deadline. Every descriptor an entry on the ring may name is closed through the ring.
//!
//! glommio's own `TcpStream` was a second mechanism here until it had answered its question: the
//! ring path costs less than half its CPU per request (see bench/RESULTS.md, "glommio's
//! TcpStream retired").

mod accept;
pub mod buffer;
mod conn;
pub mod notify;
mod outbound;
mod readbuf;
mod slots;
pub mod socket;
#[cfg(test)]
pub(crate) mod testing;
mod timer;
mod tls;
pub mod tunnel;
pub mod uring;

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use accept::Listener;
pub use buffer::{Buf, BufferPool};
pub use conn::{Conn, Expect};
pub use notify::{Notifier, NotifyReceiver};
pub use outbound::{COALESCE_LIMIT, Outbound};
pub use readbuf::ReadBuf;
pub use socket::ListenOptions;
pub use tls::{
    ClientTls, HandshakeFailure, Handshaken, Records, ServerTls, TlsLayer, TlsVersion,
    server_session_bytes,
};
pub use tunnel::Carried;
pub(crate) use uring::Completion;
pub use uring::{
    MAX_PARTS, Part, Ring, RingStats, Tracked, completion_entries, in_tracked_task,
    note_local_wake, parked_receive_bytes, slot_bytes,
};

/// Sizes a shard's I/O is set up with.
#[derive(Clone, Copy, Debug)]
pub struct IoSettings {
    /// Submission queue entries of the shard's ring.
    pub ring_entries: u32,
    pub buffer_size: usize,
    pub buffers: usize,
    /// Longest sleep in the ring before the shard gives its executor a turn.
    pub idle_wait: Duration,
}

/// Size of a TLS record buffer: a whole record of the largest size rustls accepts
/// (16 KiB of plaintext, 2 KiB of expansion, 5 of header) with room to spare, for records that
/// do not fit the pool buffer they started in (see `tls.rs`).
pub const RECORD_BUFFER_SIZE: usize = 32 * 1024;

/// TLS record buffers per shard, as a share of its I/O buffers (at least
/// [`MIN_RECORD_BUFFERS`]). Reserved, not touched: a page is resident once a large record used
/// it.
pub const RECORD_BUFFERS_DIVISOR: usize = 8;

/// The fewest TLS record buffers a shard has.
pub const MIN_RECORD_BUFFERS: usize = 16;

/// One shard's I/O state: its ring and its buffers.
pub struct IoShard {
    ring: Rc<Ring>,
    /// Buffers for TLS records longer than a pool buffer.
    records: Rc<BufferPool>,
}

impl IoShard {
    /// Sets up the shard's I/O for up to `connections` client connections (what its completion
    /// queue is sized for, see [`completion_entries`]). Must run on the shard's own thread,
    /// inside its executor.
    pub fn new(settings: &IoSettings, connections: usize) -> io::Result<Rc<IoShard>> {
        let ring = Ring::new(
            settings.ring_entries,
            completion_entries(settings.ring_entries, connections),
            settings.buffer_size,
            settings.buffers,
            settings.idle_wait,
        )?;
        let records = BufferPool::new(
            RECORD_BUFFER_SIZE,
            (settings.buffers / RECORD_BUFFERS_DIVISOR)
                .clamp(MIN_RECORD_BUFFERS, buffer::MAX_BUFFERS),
        )?;
        Ok(Rc::new(IoShard { ring, records }))
    }

    /// Buffers for TLS records longer than a pool buffer.
    pub fn record_pool(&self) -> &Rc<BufferPool> {
        &self.records
    }

    pub(crate) fn ring(&self) -> &Rc<Ring> {
        &self.ring
    }

    pub fn pool(&self) -> &Rc<BufferPool> {
        self.ring.pool()
    }

    /// The current time for deadlines and latencies: the ring's per-pass clock.
    pub fn now(&self) -> Instant {
        self.ring.now()
    }

    /// The key of a parked connection whose receive completed ([`Conn::park`]) and that
    /// receive's completion, for [`Conn::unpark`], waiting for one; `None` once the ring stops.
    /// Only the shard's reviver calls this.
    pub(crate) async fn revived(&self) -> Option<(u32, Completion)> {
        std::future::poll_fn(|cx| self.ring.poll_revived(cx)).await
    }

    /// Gives back the ring's operation slots a burst left free ([`Ring::release_spare_slots`]).
    pub fn release_spare_slots(&self) {
        self.ring.release_spare_slots();
    }

    /// Operations the kernel owns on the shard's ring.
    pub fn ring_in_flight(&self) -> usize {
        self.ring.in_flight()
    }

    pub fn ring_stats(&self) -> RingStats {
        self.ring.stats()
    }

    /// Runs the shard's I/O driver until [`IoShard::stop`] and every operation finished.
    pub async fn drive(self: &Rc<Self>) {
        self.ring.clone().drive().await;
    }

    /// Lets the driver return once nothing is in flight.
    pub fn stop(&self) {
        self.ring.stop();
    }

    /// Opens this shard's `SO_REUSEPORT` socket for `addr`.
    pub fn listen(
        self: &Rc<Self>,
        addr: SocketAddr,
        options: ListenOptions,
    ) -> io::Result<Listener> {
        self.listener_from(socket::bind_unlistened(addr, options)?, options.backlog)
    }

    /// Listens on a socket bound elsewhere and serves it (the runtime binds every shard's
    /// socket up front, so a port in use fails start-up and `:0` resolves to one port for all
    /// shards; listening waits for the shard, so no client queues on a socket nobody serves).
    pub fn listener_from(
        self: &Rc<Self>,
        fd: std::os::fd::OwnedFd,
        backlog: u32,
    ) -> io::Result<Listener> {
        socket::listen(&fd, backlog)?;
        let local = socket::local_addr(fd.as_raw_fd())?;
        Ok(Listener::new(self.clone(), socket::release(fd), local))
    }

    /// Connects to `addr`, giving up at `deadline`. Dropped before it finished, the socket is
    /// closed through the ring (after the queued connect that names it).
    pub async fn connect(self: &Rc<Self>, addr: SocketAddr, deadline: Instant) -> io::Result<Conn> {
        let socket = RingFd {
            shard: self,
            fd: socket::release(socket::upstream_socket(addr)?),
        };
        let target = socket2::SockAddr::from(addr);
        let done = self.ring.connect(socket.fd, &target, Some(deadline)).await;
        check(done.res, done.timed_out)?;
        let fd = socket.fd;
        std::mem::forget(socket);
        Ok(Conn::new(self.clone(), fd, addr))
    }

    /// Sleeps for `duration` without allocating a timer (a ring timeout).
    pub async fn sleep(&self, duration: Duration) {
        self.ring.sleep(duration).await;
    }
}

/// A descriptor entries on the ring may name: closed through the ring when dropped.
struct RingFd<'a> {
    shard: &'a IoShard,
    fd: std::os::fd::RawFd,
}

impl Drop for RingFd<'_> {
    fn drop(&mut self) {
        self.shard.ring.close(self.fd);
    }
}

/// Maps a completion result to `io::Result`, turning a deadline cancellation into `TimedOut`.
fn check(res: i32, timed_out: bool) -> io::Result<usize> {
    if timed_out {
        return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
    }
    if res < 0 {
        return Err(io::Error::from_raw_os_error(-res));
    }
    Ok(res as usize)
}

fn no_buffer() -> io::Error {
    io::Error::new(io::ErrorKind::OutOfMemory, "no I/O buffer free")
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;
    use std::pin::pin;
    use std::time::{Duration, Instant};

    use socket2::{Domain, Socket, Type};

    use super::testing::{self, poll_once};

    /// A connect dropped before its entry reached the kernel keeps its socket until the ring
    /// took the entry, so a socket that reuses the number is never connected by it. Before:
    /// the socket closed with the future, the next socket got its number, and the queued
    /// connect connected that one.
    #[test]
    fn a_dropped_connect_never_lands_on_a_reused_descriptor() {
        let shard = testing::shard();
        let target = TcpListener::bind("127.0.0.1:0").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        {
            let mut connect = pin!(shard.connect(target.local_addr().unwrap(), deadline));
            assert!(poll_once(connect.as_mut()).is_pending());
        }
        let next = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        shard.ring().turn(Duration::ZERO);
        shard.ring().turn(Duration::from_millis(20));
        assert!(
            next.peer_addr().is_err(),
            "a socket nobody connected is connected (fd {})",
            next.as_raw_fd()
        );
    }
}
