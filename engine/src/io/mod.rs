//! Socket I/O: the only module that accepts, connects, reads, writes or closes sockets.
//!
//! Two mechanisms sit behind one small surface ([`IoShard`], [`Listener`], [`Conn`], [`ReadBuf`],
//! [`Outbound`]), chosen per process by `runtime.io`:
//!
//! - `uring`: the shard's own completion-based io_uring ([`uring::Ring`]): multishot accept,
//!   receives into kernel-picked provided buffers, gathered `sendmsg`, batched submission and
//!   reaping with one `io_uring_enter` per scheduling pass.
//! - `glommio`: glommio's own `TcpStream`/`TcpListener` (readiness through glommio's rings, then
//!   `recv`/`send` system calls), kept as the baseline the benchmarks compare against.
//!
//! The parser, router, pools and pipeline see only bytes in a [`ReadBuf`] and buffers to send in
//! an [`Outbound`]; they never know which mechanism runs. Deadlines are absolute `Instant`s; a
//! passed deadline surfaces as an `io::ErrorKind::TimedOut` error.

pub mod buffer;
mod glommio_net;
pub mod notify;
pub mod socket;
pub mod tunnel;
pub mod uring;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub use buffer::{Buf, BufferPool};
pub use notify::{Notifier, NotifyReceiver};
pub use socket::ListenOptions;
pub use tunnel::Carried;
pub use uring::{MAX_PARTS, Part, Ring, RingStats, Tracked, in_tracked_task, note_local_wake};

/// Which socket mechanism a shard uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Uring,
    Glommio,
}

/// Sizes a shard's I/O is set up with.
#[derive(Clone, Copy, Debug)]
pub struct IoSettings {
    pub mechanism: Mechanism,
    /// Submission queue entries of the shard's ring (`uring` only).
    pub ring_entries: u32,
    pub buffer_size: usize,
    pub buffers: usize,
    /// Longest sleep in the ring before the shard gives its executor a turn (`uring` only).
    pub idle_wait: Duration,
}

/// One shard's I/O state: its ring (with `uring`) and its buffers.
pub struct IoShard {
    ring: Option<Rc<Ring>>,
    pool: Rc<BufferPool>,
}

impl IoShard {
    /// Sets up the shard's I/O. Must run on the shard's own thread, inside its executor.
    pub fn new(settings: &IoSettings) -> io::Result<Rc<IoShard>> {
        match settings.mechanism {
            Mechanism::Uring => {
                let ring = Ring::new(
                    settings.ring_entries,
                    settings.buffer_size,
                    settings.buffers,
                    settings.idle_wait,
                )?;
                Ok(Rc::new(IoShard {
                    pool: ring.pool().clone(),
                    ring: Some(ring),
                }))
            }
            Mechanism::Glommio => Ok(Rc::new(IoShard {
                ring: None,
                pool: BufferPool::new(settings.buffer_size, settings.buffers)?,
            })),
        }
    }

    /// The shard's ring; only called on paths that exist with the `uring` mechanism.
    pub(crate) fn ring(&self) -> &Rc<Ring> {
        self.ring
            .as_ref()
            .expect("a uring connection or listener belongs to a uring shard")
    }

    pub fn mechanism(&self) -> Mechanism {
        if self.ring.is_some() {
            Mechanism::Uring
        } else {
            Mechanism::Glommio
        }
    }

    pub fn pool(&self) -> &Rc<BufferPool> {
        &self.pool
    }

    /// The current time for deadlines and latencies: the ring's per-pass clock with `uring`, a
    /// clock read otherwise.
    pub fn now(&self) -> Instant {
        match &self.ring {
            Some(ring) => ring.now(),
            None => Instant::now(),
        }
    }

    /// Ring counters (all zero with the glommio mechanism).
    /// Operations in flight on the shard's ring (`uring` only).
    pub fn ring_in_flight(&self) -> Option<usize> {
        self.ring.as_ref().map(|ring| ring.in_flight())
    }

    pub fn ring_stats(&self) -> RingStats {
        self.ring
            .as_ref()
            .map(|ring| ring.stats())
            .unwrap_or_default()
    }

    /// Runs the shard's I/O driver until [`IoShard::stop`] and every operation finished. With the
    /// glommio mechanism glommio's reactor does this work and the call returns at once.
    pub async fn drive(self: &Rc<Self>) {
        if let Some(ring) = &self.ring {
            ring.clone().drive().await;
        }
    }

    /// Lets the driver return once nothing is in flight.
    pub fn stop(&self) {
        if let Some(ring) = &self.ring {
            ring.stop();
        }
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
        let kind = match &self.ring {
            Some(_) => ListenerKind::Uring {
                fd,
                multishot: None,
            },
            None => ListenerKind::Glommio(glommio_net::listener(fd)),
        };
        Ok(Listener {
            shard: self.clone(),
            kind,
            local,
        })
    }

    /// Connects to `addr`, giving up at `deadline`.
    pub async fn connect(self: &Rc<Self>, addr: SocketAddr, deadline: Instant) -> io::Result<Conn> {
        let kind = match &self.ring {
            Some(ring) => {
                let fd = socket::upstream_socket(addr)?;
                let target = socket2::SockAddr::from(addr);
                let done = ring.connect(fd.as_raw_fd(), &target, Some(deadline)).await;
                check(done.res, done.timed_out)?;
                ConnKind::Uring {
                    fd: socket::release(fd),
                    watch: None,
                }
            }
            None => ConnKind::Glommio(Box::new(glommio_net::connect(addr, deadline).await?)),
        };
        Ok(Conn {
            shard: self.clone(),
            kind,
            peer: addr,
        })
    }

    /// Sleeps for `duration` without allocating a timer (a ring timeout with `uring`).
    pub async fn sleep(&self, duration: Duration) {
        match &self.ring {
            Some(ring) => {
                ring.sleep(duration).await;
            }
            None => glommio::timer::sleep(duration).await,
        }
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

/// A shard's listening socket.
pub struct Listener {
    shard: Rc<IoShard>,
    kind: ListenerKind,
    local: SocketAddr,
}

enum ListenerKind {
    /// `multishot` is the slot of the running multishot accept, if one runs.
    Uring {
        fd: std::os::fd::OwnedFd,
        multishot: Option<u32>,
    },
    Glommio(glommio::net::TcpListener),
}

impl Listener {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits for the next client connection.
    pub async fn accept(&mut self) -> io::Result<Conn> {
        match &mut self.kind {
            ListenerKind::Uring { fd, multishot } => {
                let ring = self.shard.ring();
                loop {
                    let id = *multishot.get_or_insert_with(|| ring.accept_multi(fd.as_raw_fd()));
                    let next = std::future::poll_fn(|cx| ring.poll_accepted(id, cx)).await;
                    match next {
                        None => *multishot = None,
                        Some(res) if res < 0 => {
                            // The multishot ends after an error; a new one starts on the next call.
                            return Err(io::Error::from_raw_os_error(-res));
                        }
                        Some(raw) => {
                            // SAFETY: the kernel just created this descriptor for us.
                            let owned = unsafe { socket::own(raw) };
                            let peer = match socket::peer_addr(raw).and_then(|peer| {
                                socket::configure_accepted(raw)?;
                                Ok(peer)
                            }) {
                                Ok(peer) => peer,
                                // The client left already (ENOTCONN): take the next one.
                                Err(_) => continue,
                            };
                            return Ok(Conn {
                                shard: self.shard.clone(),
                                kind: ConnKind::Uring {
                                    fd: socket::release(owned),
                                    watch: None,
                                },
                                peer,
                            });
                        }
                    }
                }
            }
            ListenerKind::Glommio(listener) => {
                let (stream, peer) = glommio_net::accept(listener).await?;
                Ok(Conn {
                    shard: self.shard.clone(),
                    kind: ConnKind::Glommio(Box::new(stream)),
                    peer,
                })
            }
        }
    }

    /// Stops taking connections from the kernel until the next `accept` (used at the connection
    /// cap and when draining; clients then wait in the backlog).
    pub fn pause(&mut self) {
        if let ListenerKind::Uring { multishot, .. } = &mut self.kind
            && let Some(id) = multishot.take()
        {
            let ring = self.shard.ring();
            ring.cancel_accept(id);
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.pause();
    }
}

/// A connected TCP socket (client or upstream).
pub struct Conn {
    shard: Rc<IoShard>,
    kind: ConnKind,
    peer: SocketAddr,
}

enum ConnKind {
    Uring {
        fd: RawFd,
        /// The slot of a watch for input while the connection idles in a pool.
        watch: Option<u32>,
    },
    /// Boxed: glommio's stream is large, and a connection's size is what an idle client costs.
    Glommio(Box<glommio::net::TcpStream>),
}

impl Conn {
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub fn shard(&self) -> &Rc<IoShard> {
        &self.shard
    }

    /// Whether the peer sent bytes not yet received, or closed: a non-blocking peek, one system
    /// call. Used once per streamed request body, to notice an upstream that answered before it
    /// had the whole request.
    pub fn has_unread_input(&self) -> bool {
        let mut byte = 0u8;
        // SAFETY: a one-byte peek into a local on a descriptor this connection owns.
        let n = unsafe {
            libc::recv(
                self.raw_fd(),
                &mut byte as *mut u8 as *mut libc::c_void,
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        // n > 0: bytes wait; n == 0: the peer closed; -1: nothing yet (EAGAIN) or an error the
        // next receive will report.
        n >= 0
    }

    /// Starts noticing anything the peer sends (or a close) while this connection idles in a
    /// pool: on the ring, a poll submitted with the pass's batch; on glommio, nothing until
    /// [`Conn::end_idle_watch`].
    pub fn watch_while_idle(&mut self) {
        if let ConnKind::Uring { fd, watch } = &mut self.kind
            && watch.is_none()
        {
            *watch = Some(self.shard.ring().watch(*fd));
        }
    }

    /// Ends the idle watch; true when the peer stayed quiet, so the connection may carry a new
    /// request. An upstream that sent bytes while idle (a second response, an answer to a body
    /// it took for a request) or closed must not be reused: those bytes would be read as the
    /// next client's response.
    pub fn end_idle_watch(&mut self) -> bool {
        match &mut self.kind {
            ConnKind::Uring { watch, .. } => match watch.take() {
                Some(id) => self.shard.ring().end_watch(id),
                None => true,
            },
            // One peek: the glommio baseline keeps no watch.
            ConnKind::Glommio(_) => !self.has_unread_input(),
        }
    }

    /// The socket's descriptor, for shutting it down from outside its task (draining).
    pub fn raw_fd(&self) -> RawFd {
        match &self.kind {
            ConnKind::Uring { fd, .. } => *fd,
            ConnKind::Glommio(stream) => stream.as_raw_fd(),
        }
    }

    /// Receives more bytes into `rb`, appending after what it holds. Returns the number of new
    /// bytes; 0 means the peer closed its side. With no buffer in `rb`, one is taken only when data
    /// arrives (provided buffers), so waiting costs no memory.
    pub fn recv<'a>(
        &'a mut self,
        rb: &'a mut ReadBuf,
        deadline: Option<Instant>,
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        self.receive(rb, deadline, false)
    }

    /// Like [`Conn::recv`], when the peer is not expected to have sent anything yet: a keep-alive
    /// connection waiting for its next request, an upstream that was just sent a request. The
    /// ring then waits for readiness first instead of trying a receive bound to find nothing.
    pub fn recv_later<'a>(
        &'a mut self,
        rb: &'a mut ReadBuf,
        deadline: Option<Instant>,
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        self.receive(rb, deadline, true)
    }

    /// Not an `async fn`: the mechanism's own future is returned as it is, so a pending receive
    /// (what every idle connection holds) costs only what that mechanism needs, with no
    /// wrapping state machine copying the arguments again.
    fn receive<'a>(
        &'a mut self,
        rb: &'a mut ReadBuf,
        deadline: Option<Instant>,
        poll_first: bool,
    ) -> Either<
        impl Future<Output = io::Result<usize>> + 'a,
        impl Future<Output = io::Result<usize>> + 'a,
    > {
        match &mut self.kind {
            ConnKind::Uring { fd, .. } => {
                Either::Left(receive_uring(&self.shard, *fd, rb, deadline, poll_first))
            }
            ConnKind::Glommio(stream) => {
                Either::Right(receive_glommio(&self.shard.pool, stream, rb, deadline))
            }
        }
    }

    /// Sends every part of `out`, in order, as one gathered write where the mechanism allows.
    /// The parts stay in `out` afterwards, unchanged, whether or not the send succeeded: the
    /// caller may send them again (a retry on a fresh upstream connection) or clear them.
    pub async fn send(&mut self, out: &mut Outbound, deadline: Option<Instant>) -> io::Result<()> {
        match &mut self.kind {
            ConnKind::Uring { fd, .. } => {
                let ring = self.shard.ring();
                let fd = *fd;
                let mut ranges = [(0u32, 0u32); MAX_PARTS];
                for (range, part) in ranges.iter_mut().zip(&out.parts) {
                    if let Some(part) = part {
                        *range = (part.start, part.end);
                    }
                }
                let total: usize = ranges
                    .iter()
                    .map(|(start, end)| (end - start) as usize)
                    .sum();
                let mut sent = 0usize;
                while sent < total {
                    // Skip what earlier (short) sends already delivered.
                    let mut skip = sent;
                    for (part, &(start, end)) in out.parts.iter_mut().zip(&ranges) {
                        let Some(part) = part else { continue };
                        let len = (end - start) as usize;
                        let skipped = skip.min(len);
                        part.start = start + skipped as u32;
                        skip -= skipped;
                    }
                    let mut done = ring.send_parts(fd, &mut out.parts, deadline).await;
                    for (slot, returned) in out.parts.iter_mut().zip(done.bufs.iter_mut()) {
                        if let Some(buf) = returned.take() {
                            *slot = Some(Part {
                                buf,
                                start: 0,
                                end: 0,
                            });
                        }
                    }
                    for (part, &(start, end)) in out.parts.iter_mut().zip(&ranges) {
                        if let Some(part) = part {
                            part.start = start;
                            part.end = end;
                        }
                    }
                    match check(done.res, done.timed_out)? {
                        0 => {
                            return Err(io::Error::new(
                                io::ErrorKind::WriteZero,
                                "peer stopped reading",
                            ));
                        }
                        n => sent += n,
                    }
                }
                Ok(())
            }
            ConnKind::Glommio(stream) => {
                glommio_net::send(stream, out, &self.shard.pool, deadline).await
            }
        }
    }
}

/// [`Conn::recv`] on the shard's ring. Kept apart from the glommio variant so the future of an
/// idle connection's receive is only as large as the mechanism in use needs.
async fn receive_uring(
    shard: &IoShard,
    fd: RawFd,
    rb: &mut ReadBuf,
    deadline: Option<Instant>,
    poll_first: bool,
) -> io::Result<usize> {
    let ring = shard.ring();
    loop {
        let done = match rb.buf.take() {
            Some(buf) => {
                let buf = rb.make_room(buf)?;
                let mut done = ring
                    .recv_into(fd, buf, rb.end as usize, deadline, poll_first)
                    .await;
                rb.buf = done.bufs[0].take();
                done
            }
            None => {
                let mut done = ring.recv_provided(fd, deadline, poll_first).await;
                if let Some(buf) = done.bufs[0].take() {
                    rb.buf = Some(buf);
                    rb.start = 0;
                    rb.end = 0;
                }
                if done.res == -libc::ENOBUFS {
                    // The kernel's ring ran dry: offer it more from now on, and receive this
                    // time into a buffer of our own.
                    shard.pool.grow_provided();
                    let buf = shard.pool.take().ok_or_else(no_buffer)?;
                    rb.buf = Some(buf);
                    rb.start = 0;
                    rb.end = 0;
                    continue;
                }
                done
            }
        };
        let n = match check(done.res, done.timed_out) {
            Ok(n) => n,
            Err(err) => {
                rb.release_if_empty();
                return Err(err);
            }
        };
        rb.end += n as u32;
        rb.release_if_empty();
        return Ok(n);
    }
}

/// [`Conn::recv`] through glommio's stream: a buffer is taken before waiting (readiness and the
/// read are one call there).
async fn receive_glommio(
    pool: &Rc<BufferPool>,
    stream: &mut glommio::net::TcpStream,
    rb: &mut ReadBuf,
    deadline: Option<Instant>,
) -> io::Result<usize> {
    let buf = match rb.buf.take() {
        Some(buf) => buf,
        None => {
            rb.start = 0;
            rb.end = 0;
            pool.take().ok_or_else(no_buffer)?
        }
    };
    let mut buf = rb.make_room(buf)?;
    let result =
        glommio_net::recv(stream, &mut buf.as_mut_slice()[rb.end as usize..], deadline).await;
    rb.buf = Some(buf);
    let n = match result {
        Ok(n) => n,
        Err(err) => {
            rb.release_if_empty();
            return Err(err);
        }
    };
    rb.end += n as u32;
    rb.release_if_empty();
    Ok(n)
}

/// One of two futures, polled in place: what [`Conn`]'s mechanism-dependent operations return.
enum Either<L, R> {
    Left(L),
    Right(R),
}

impl<L: Future, R: Future<Output = L::Output>> Future for Either<L, R> {
    type Output = L::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<L::Output> {
        // SAFETY: structural pinning: the variant's future is never moved out of `self`.
        unsafe {
            match self.get_unchecked_mut() {
                Either::Left(left) => Pin::new_unchecked(left).poll(cx),
                Either::Right(right) => Pin::new_unchecked(right).poll(cx),
            }
        }
    }
}

fn no_buffer() -> io::Error {
    io::Error::new(io::ErrorKind::OutOfMemory, "no I/O buffer free")
}

/// Joins two connections after a protocol switch: what each sends goes to the other, until
/// both finished, one failed, or neither sent anything for `idle` (see [`tunnel`]). Both must
/// belong to the same shard. Returns what was carried whichever way it ended.
pub async fn join(a: &mut Conn, b: &mut Conn, idle: Duration) -> (Carried, io::Result<()>) {
    let pool = a.shard.pool.clone();
    match (&mut a.kind, &mut b.kind) {
        (ConnKind::Uring { fd: fa, .. }, ConnKind::Uring { fd: fb, .. }) => {
            let ring = a.shard.ring();
            tunnel::on_ring(ring, &pool, *fa, *fb, idle).await
        }
        (ConnKind::Glommio(sa), ConnKind::Glommio(sb)) => {
            tunnel::on_glommio(pool.buf_size(), sa, sb, idle).await
        }
        _ => (
            Carried::default(),
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "connections of different I/O mechanisms",
            )),
        ),
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let ConnKind::Uring { fd, watch } = self.kind {
            match &self.shard.ring {
                Some(ring) => {
                    if let Some(id) = watch {
                        ring.end_watch(id);
                    }
                    ring.close(fd)
                }
                // SAFETY: the descriptor is owned by this connection.
                None => unsafe {
                    libc::close(fd);
                },
            }
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({})", self.peer)
    }
}

/// Bytes received and not yet consumed: `buf[start..end]`. Holds no buffer while empty, so an
/// idle connection costs nothing here.
#[derive(Default)]
pub struct ReadBuf {
    buf: Option<Buf>,
    start: u32,
    end: u32,
}

impl ReadBuf {
    pub const fn new() -> ReadBuf {
        ReadBuf {
            buf: None,
            start: 0,
            end: 0,
        }
    }

    /// The unconsumed bytes.
    pub fn data(&self) -> &[u8] {
        match &self.buf {
            Some(buf) => &buf.as_slice()[self.start as usize..self.end as usize],
            None => &[],
        }
    }

    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Whether a buffer is held (for tests of idle memory).
    pub fn holds_buffer(&self) -> bool {
        self.buf.is_some()
    }

    /// Marks `n` bytes as used; gives the buffer back once everything is used.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(n <= self.len());
        self.start += n.min(self.len()) as u32;
        self.release_if_empty();
    }

    /// Moves all unconsumed bytes out as a send part, without copying.
    pub fn take_all(&mut self) -> Option<Part> {
        let buf = self.buf.take()?;
        let part = Part {
            buf,
            start: self.start,
            end: self.end,
        };
        self.start = 0;
        self.end = 0;
        Some(part)
    }

    /// Moves the first `n` unconsumed bytes out as a send part. When more bytes follow (a
    /// pipelined request, say), the `n` bytes are copied to a fresh buffer and the rest stays.
    pub fn take_prefix(&mut self, n: usize, pool: &Rc<BufferPool>) -> Option<Part> {
        let n = n.min(self.len());
        if n == self.len() {
            return self.take_all();
        }
        let mut copy = pool.take()?;
        copy.as_mut_slice()[..n].copy_from_slice(&self.data()[..n]);
        self.consume(n);
        Some(Part {
            buf: copy,
            start: 0,
            end: n as u32,
        })
    }

    fn release_if_empty(&mut self) {
        if self.start == self.end {
            self.buf = None;
            self.start = 0;
            self.end = 0;
        }
    }

    /// Ensures free space after `end`, moving unconsumed bytes to the front when needed.
    fn make_room(&mut self, mut buf: Buf) -> io::Result<Buf> {
        if (self.end as usize) < buf.capacity() {
            return Ok(buf);
        }
        if self.start == 0 {
            self.buf = Some(buf);
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "read buffer full",
            ));
        }
        let (start, end) = (self.start as usize, self.end as usize);
        buf.as_mut_slice().copy_within(start..end, 0);
        self.end -= self.start;
        self.start = 0;
        Ok(buf)
    }
}

/// Bytes of a body at most copied behind its head rather than sent as a second piece: below
/// this, one contiguous `send` costs less than gathering two buffers.
pub const COALESCE_LIMIT: usize = 2048;

/// Buffers queued for one send: up to [`MAX_PARTS`] pieces, sent in order.
#[derive(Default)]
pub struct Outbound {
    parts: [Option<Part>; MAX_PARTS],
}

impl Outbound {
    pub fn new() -> Outbound {
        Outbound::default()
    }

    /// Queues `buf[start..end]`. Returns false (dropping nothing) when all slots are taken.
    pub fn push(&mut self, buf: Buf, start: u32, end: u32) -> bool {
        self.push_part(Part { buf, start, end })
    }

    /// Queues the first `n` bytes of `rb`. A few bytes (at most [`COALESCE_LIMIT`]) that fit
    /// after the last queued part are copied there, so a small body leaves in one contiguous
    /// buffer with its head; otherwise the buffer itself is queued (no copy). Returns false when
    /// no I/O buffer is free or no part slot is left.
    pub fn take_from(&mut self, rb: &mut ReadBuf, n: usize, pool: &Rc<BufferPool>) -> bool {
        let n = n.min(rb.len());
        if n == 0 {
            return true;
        }
        if n <= COALESCE_LIMIT
            && let Some(last) = self.parts.iter_mut().flatten().last()
            && (last.end as usize) + n <= last.buf.capacity()
        {
            let end = last.end as usize;
            last.buf.as_mut_slice()[end..end + n].copy_from_slice(&rb.data()[..n]);
            last.end += n as u32;
            rb.consume(n);
            return true;
        }
        match rb.take_prefix(n, pool) {
            Some(part) => self.push_part(part),
            None => false,
        }
    }

    pub fn push_part(&mut self, part: Part) -> bool {
        match self.parts.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => {
                *slot = Some(part);
                true
            }
            None => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.parts.iter().all(Option::is_none)
    }

    pub fn is_full(&self) -> bool {
        self.parts.iter().all(Option::is_some)
    }

    pub fn len_bytes(&self) -> usize {
        self.parts
            .iter()
            .flatten()
            .map(|p| (p.end - p.start) as usize)
            .sum()
    }

    pub fn clear(&mut self) {
        self.parts = Default::default();
    }

    fn iter(&self) -> impl Iterator<Item = &Part> {
        self.parts.iter().flatten()
    }
}
