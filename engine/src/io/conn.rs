//! A connected TCP socket on the shard's ring, client or upstream: receiving into a
//! [`ReadBuf`], sending an [`Outbound`], watching for input while idle in a pool, and closing
//! through the ring.
//!
//! [`Conn::recv`] and [`Conn::send`] are the two places every byte of a connection passes; a
//! transport that transforms those bytes belongs behind them and nowhere else. A client
//! connection of a TLS listener carries its record layer here ([`TlsLayer`](super::TlsLayer), `tls.rs`): after
//! [`Conn::handshake`], `recv` hands out decrypted bytes and `send` encrypts.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use rustls::server::ServerConfig;

use rustls::client::ClientConfig;
use rustls::pki_types::ServerName;

use super::buffer::BufferPool;
use super::tls::{ClientTls, HandshakeFailure, Handshaken, Read, ServerTls};
use super::uring::{Completion, WatchEnd};
use super::{IoShard, Outbound, ReadBuf, check, no_buffer};

/// A connected TCP socket (client or upstream).
pub struct Conn {
    shard: Rc<IoShard>,
    /// Owned; closed through the ring on drop. -1 once handed back ([`Conn::into_raw_fd`]).
    fd: RawFd,
    /// The operation watching the socket while the connection idles, if any.
    idle_op: Option<IdleOp>,
    peer: SocketAddr,
    /// The TLS record layer: of a client's connection to a TLS listener, or of a connection
    /// to a TLS upstream.
    tls: Option<Layer>,
}

/// What watches an idle connection's socket, by its operation's slot.
#[derive(Clone, Copy)]
enum IdleOp {
    /// A poll for input while the connection idles in an upstream pool.
    Watch(u32),
    /// A parked receive ([`Conn::park`]), by its key.
    Parked(u32),
}

/// A connection's TLS session, by which end coregate is.
pub(super) enum Layer {
    Server(Box<ServerTls>),
    Client(Box<ClientTls>),
}

impl Conn {
    /// Takes ownership of a connected socket's descriptor.
    pub(super) fn new(shard: Rc<IoShard>, fd: RawFd, peer: SocketAddr) -> Conn {
        Conn {
            shard,
            fd,
            idle_op: None,
            peer,
            tls: None,
        }
    }

    /// Makes this a TLS server connection: from now on its bytes pass through the record
    /// layer. [`Conn::handshake`] must run before the first `recv` or `send`.
    pub fn start_tls(&mut self, config: Arc<ServerConfig>) -> io::Result<()> {
        self.tls = Some(Layer::Server(Box::new(ServerTls::new(config)?)));
        Ok(())
    }

    /// Makes this a TLS client connection to `name` (a connection to a TLS upstream);
    /// [`Conn::handshake`] must run before the first `send`.
    pub fn start_tls_client(
        &mut self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
    ) -> io::Result<()> {
        self.tls = Some(Layer::Client(Box::new(ClientTls::client(config, name)?)));
        Ok(())
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The TLS session, for a tunnel that carries its records itself.
    pub(super) fn layer_mut(&mut self) -> Option<&mut Layer> {
        self.tls.as_mut()
    }

    /// Whether the TLS layer holds a buffer (never while the connection idles).
    pub fn tls_holds_buffer(&self) -> bool {
        match &self.tls {
            Some(Layer::Server(tls)) => tls.holds_buffer(),
            Some(Layer::Client(tls)) => tls.holds_buffer(),
            None => false,
        }
    }

    /// Whether the TLS session's records are sealed and opened by coregate (rustls ran the
    /// handshake and handed the keys over).
    #[cfg(test)]
    pub(super) fn tls_on_own_records(&self) -> bool {
        match &self.tls {
            Some(Layer::Server(tls)) => tls.on_own_records(),
            Some(Layer::Client(tls)) => tls.on_own_records(),
            None => false,
        }
    }

    /// Runs the TLS handshake to its end (see [`Conn::start_tls`]).
    pub async fn handshake(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Handshaken, HandshakeFailure> {
        self.handshake_with_error(deadline)
            .await
            .map_err(|(failure, _)| failure)
    }

    /// [`Conn::handshake`], with rustls's own words for a failure (for a log line).
    pub async fn handshake_with_error(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Handshaken, (HandshakeFailure, String)> {
        match &mut self.tls {
            Some(Layer::Server(tls)) => tls.handshake(&self.shard, self.fd, deadline).await,
            Some(Layer::Client(tls)) => tls.handshake(&self.shard, self.fd, deadline).await,
            None => Err((HandshakeFailure::Protocol, "not a TLS connection".into())),
        }
    }

    /// Gives the descriptor back without closing it (a connection accepted beyond the cap goes
    /// back to its listener).
    pub(super) fn into_raw_fd(mut self) -> RawFd {
        self.end_idle_op();
        std::mem::replace(&mut self.fd, -1)
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub fn shard(&self) -> &Rc<IoShard> {
        &self.shard
    }

    /// The socket's descriptor, for shutting it down from outside its task (draining).
    pub fn raw_fd(&self) -> RawFd {
        self.fd
    }

    /// Whether the peer sent bytes not yet received, or closed: a non-blocking peek, one system
    /// call. Used once per streamed request body, to notice an upstream that answered before it
    /// had the whole request.
    pub fn has_unread_input(&self) -> bool {
        let buffered = match &self.tls {
            Some(Layer::Server(tls)) => tls.has_buffered_input(),
            Some(Layer::Client(tls)) => tls.has_buffered_input(),
            None => false,
        };
        if buffered {
            return true;
        }
        let mut byte = 0u8;
        // SAFETY: a one-byte peek into a local on a descriptor this connection owns.
        let n = unsafe {
            libc::recv(
                self.fd,
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
    /// pool: a poll submitted with the pass's batch.
    pub fn watch_while_idle(&mut self) {
        if self.idle_op.is_none() {
            self.idle_op = self.shard.ring().watch(self.fd).map(IdleOp::Watch);
        }
    }

    /// Ends the idle watch; true when the peer stayed quiet, so the connection may carry a new
    /// request. An upstream that sent bytes while idle (a second response, an answer to a body
    /// it took for a request) or closed must not be reused: those bytes would be read as the
    /// next client's response. When the watch's completion may still be on its way (the kernel
    /// had completion work pending), the socket itself is asked (a peek).
    pub fn end_idle_watch(&mut self) -> bool {
        match self.idle_op.take() {
            Some(IdleOp::Watch(id)) => match self.shard.ring().end_watch(id) {
                WatchEnd::Fired => false,
                WatchEnd::Quiet => true,
                WatchEnd::Unsure => !self.has_unread_input(),
            },
            Some(IdleOp::Parked(_)) => unreachable!("a parked connection in an upstream pool"),
            None => true,
        }
    }

    /// Parks the wait for the peer's next bytes: a receive no task awaits, which takes a buffer
    /// only when data arrives. When it completes (bytes, a close, `deadline`, a drain's
    /// shutdown) `key` and its completion come out of [`IoShard::revived`], for
    /// [`Conn::unpark`]. A parked connection needs no task: its owner files it under `key`
    /// meanwhile, and must not reuse the key before that completion came out. Dropping it
    /// cancels the receive.
    ///
    /// # Panics
    /// If the connection is parked or watched already, or its TLS layer holds bytes (a parked
    /// connection holds no buffer).
    pub fn park(&mut self, deadline: Option<Instant>, key: u32) {
        assert!(self.idle_op.is_none(), "a connection parked twice");
        assert!(
            !self.tls_holds_buffer(),
            "a TLS connection parked with records at hand"
        );
        self.shard.ring().park_receive(self.fd, key, deadline);
        self.idle_op = Some(IdleOp::Parked(key));
    }

    /// Takes the parked receive's completion ([`IoShard::revived`]): its bytes are put where
    /// [`Conn::recv`] would put them (into `rb`, or the TLS layer's records still to be
    /// opened: then the count is of record bytes, which may hold no plaintext). `WouldBlock`:
    /// the kernel's buffer ring ran dry, nothing was received, wait again.
    ///
    /// # Panics
    /// If the connection is not parked.
    pub(crate) fn unpark(&mut self, mut done: Completion, rb: &mut ReadBuf) -> io::Result<usize> {
        assert!(
            matches!(self.idle_op.take(), Some(IdleOp::Parked(_))),
            "a connection unparked that was not parked"
        );
        let into = match self.tls.as_mut() {
            None => rb,
            Some(layer) => layer.records_in(),
        };
        if let Some(buf) = done.take_buf() {
            into.start_with(buf);
        }
        if done.res == -libc::ENOBUFS {
            self.shard.pool().grow_provided();
            return Err(io::ErrorKind::WouldBlock.into());
        }
        count_received(into, &done)
    }

    /// Ends the watch or parked receive of an idle connection that goes away.
    fn end_idle_op(&mut self) {
        match self.idle_op.take() {
            Some(IdleOp::Watch(id)) => {
                self.shard.ring().end_watch(id);
            }
            Some(IdleOp::Parked(key)) => self.shard.ring().cancel_parked(key),
            None => {}
        }
    }

    /// Receives more bytes into `rb`, appending after what it holds. Returns the number of new
    /// bytes; 0 means the peer closed its side. With no buffer in `rb`, one is taken only when
    /// data arrives (provided buffers), so waiting costs no memory.
    pub fn recv<'a>(
        &'a mut self,
        rb: &'a mut ReadBuf,
        deadline: Option<Instant>,
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        self.recv_expecting(rb, deadline, Expect::Now)
    }

    /// Like [`Conn::recv`], saying when bytes are expected ([`Expect`]).
    pub fn recv_expecting<'a>(
        &'a mut self,
        rb: &'a mut ReadBuf,
        deadline: Option<Instant>,
        expect: Expect,
    ) -> impl Future<Output = io::Result<usize>> + 'a {
        receive_any(
            &self.shard,
            self.fd,
            self.tls.as_mut(),
            rb,
            deadline,
            expect,
        )
    }

    /// Sends every part of `out`, in order, as one gathered write. The parts stay in `out`
    /// afterwards, unchanged, whether or not the send succeeded: the caller may send them again
    /// (a retry on a fresh upstream connection) or clear them.
    pub async fn send(&mut self, out: &mut Outbound, deadline: Option<Instant>) -> io::Result<()> {
        match &mut self.tls {
            None => send_all(&self.shard, self.fd, out, deadline).await,
            Some(Layer::Server(tls)) => tls.send(&self.shard, self.fd, out, deadline).await,
            Some(Layer::Client(tls)) => tls.send(&self.shard, self.fd, out, deadline).await,
        }
    }
}

impl Layer {
    fn read_at_hand(&mut self, rb: &mut ReadBuf, shard: &IoShard) -> io::Result<Option<usize>> {
        match self {
            Layer::Server(tls) => tls.read_at_hand(rb, shard),
            Layer::Client(tls) => tls.read_at_hand(rb, shard),
        }
    }

    fn records_in(&mut self) -> &mut ReadBuf {
        match self {
            Layer::Server(tls) => tls.records_in(),
            Layer::Client(tls) => tls.records_in(),
        }
    }

    pub(super) fn read(&mut self, rb: &mut ReadBuf, pool: &Rc<BufferPool>) -> io::Result<Read> {
        match self {
            Layer::Server(tls) => tls.read(rb, pool),
            Layer::Client(tls) => tls.read(rb, pool),
        }
    }

    pub(super) fn feed(&mut self, incoming: &mut ReadBuf, shard: &IoShard) -> io::Result<()> {
        match self {
            Layer::Server(tls) => tls.feed(incoming, shard),
            Layer::Client(tls) => tls.feed(incoming, shard),
        }
    }

    pub(super) fn encrypt(
        &mut self,
        bytes: &[u8],
        out: &mut Outbound,
        pool: &Rc<BufferPool>,
    ) -> io::Result<Option<usize>> {
        match self {
            Layer::Server(tls) => tls.encrypt(bytes, out, pool),
            Layer::Client(tls) => tls.encrypt(bytes, out, pool),
        }
    }

    pub(super) fn close_notify(
        &mut self,
        out: &mut Outbound,
        pool: &Rc<BufferPool>,
    ) -> io::Result<()> {
        match self {
            Layer::Server(tls) => tls.close_notify(out, pool),
            Layer::Client(tls) => tls.close_notify(out, pool),
        }
    }
}

/// Sends every part of `out`, in order, as one gathered write (more when the socket takes
/// only some of the bytes at a time); the parts are left in `out` unchanged.
pub(super) async fn send_all(
    shard: &IoShard,
    fd: RawFd,
    out: &mut Outbound,
    deadline: Option<Instant>,
) -> io::Result<()> {
    let ring = shard.ring();
    let ranges = out.ranges();
    let total: usize = ranges
        .iter()
        .map(|(start, end)| (end - start) as usize)
        .sum();
    let mut sent = 0usize;
    while sent < total {
        // Skip what earlier (short) sends already delivered.
        out.skip(&ranges, sent);
        let mut done = ring.send_parts(fd, out.parts_mut(), deadline).await;
        out.restore(&ranges, &mut done);
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

/// A plain receive into `rb` (records for a TLS layer, bytes of a tunnel).
pub(super) fn receive<'a>(
    shard: &'a IoShard,
    fd: RawFd,
    rb: &'a mut ReadBuf,
    deadline: Option<Instant>,
    expect: Expect,
) -> impl Future<Output = io::Result<usize>> + 'a {
    receive_any(shard, fd, None, rb, deadline, expect)
}

/// When a receive expects bytes: whether the ring waits for readiness first, and what kind of
/// operation slot it takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    /// At once (the rest of a head or a body).
    Now,
    /// Not yet (an upstream that was just sent a request): the ring waits for readiness first
    /// instead of trying a receive bound to find nothing.
    Soon,
    /// Not for a while (a keep-alive client between requests): readiness first, in a slot of
    /// the kind a burst of new connections leaves free together when they park
    /// (`io/slots.rs`).
    Idle,
}

/// The receive behind [`Conn::recv`] and every other: through the TLS layer when there is one
/// (records at hand opened, else more records received), plain otherwise. One `async fn` with
/// no wrapping future, so a pending receive (what every idle connection holds) costs only what
/// it needs, and a TLS one (which allocates nothing) one word more than a plain one.
async fn receive_any(
    shard: &IoShard,
    fd: RawFd,
    mut tls: Option<&mut Layer>,
    rb: &mut ReadBuf,
    deadline: Option<Instant>,
    mut expect: Expect,
) -> io::Result<usize> {
    let ring = shard.ring();
    loop {
        let into = match tls.as_deref_mut() {
            None => &mut *rb,
            Some(layer) => match layer.read_at_hand(rb, shard)? {
                Some(plaintext) => return Ok(plaintext),
                None => layer.records_in(),
            },
        };
        let done = loop {
            match into.make_room()? {
                Some(offset) => {
                    // While the kernel holds the buffer, `into` is empty: should this future be
                    // dropped now, the bytes go with the buffer and `into` stays consistent.
                    let lent = into.lend().expect("make_room found a buffer");
                    let buf = lent.buf;
                    let poll_first = expect != Expect::Now;
                    let mut done = ring.recv_into(fd, buf, offset, deadline, poll_first).await;
                    if let Some(buf) = done.take_buf() {
                        into.restore(buf, lent.start, lent.end);
                    }
                    break done;
                }
                None => {
                    let mut done = match expect {
                        Expect::Idle => ring.recv_idle(fd, deadline).await,
                        _ => {
                            ring.recv_provided(fd, deadline, expect == Expect::Soon)
                                .await
                        }
                    };
                    if let Some(buf) = done.take_buf() {
                        into.start_with(buf);
                    }
                    if done.res == -libc::ENOBUFS {
                        // The kernel's ring ran dry: offer it more from now on, and receive
                        // this time into a buffer of our own.
                        shard.pool().grow_provided();
                        let buf = shard.pool().take().ok_or_else(no_buffer)?;
                        into.start_with(buf);
                        continue;
                    }
                    break done;
                }
            }
        };
        let received = count_received(into, &done)?;
        if tls.is_none() || received == 0 {
            return Ok(received);
        }
        expect = Expect::Now;
    }
}

/// Counts what a finished receive appended to `into` (nothing when it failed, which gives an
/// empty buffer back) and returns its result.
fn count_received(into: &mut ReadBuf, done: &Completion) -> io::Result<usize> {
    let received = check(done.res, done.timed_out);
    into.received(*received.as_ref().unwrap_or(&0));
    received
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.end_idle_op();
        if self.fd >= 0 {
            self.shard.ring().close(self.fd);
        }
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conn({})", self.peer)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::net::TcpStream;
    use std::os::fd::{AsRawFd, IntoRawFd};
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    use super::super::testing::{self, poll_once, tcp_pair};
    use super::super::{Completion, IoShard, Outbound, ReadBuf};
    use super::Conn;

    /// Bytes that reached an idle pooled connection but whose watch completion the kernel has
    /// not posted yet (deferred task work) must still make the connection unfit for reuse.
    /// Before: the watch looked quiet.
    #[test]
    fn a_watch_whose_completion_is_pending_is_not_quiet() {
        let shard = testing::shard();
        let (near, mut far) = tcp_pair();
        let peer = near.peer_addr().unwrap();
        let fd = near.as_raw_fd();
        let mut conn = Conn::new(shard.clone(), near.into_raw_fd(), peer);
        conn.watch_while_idle();
        shard.ring().turn(Duration::ZERO);
        far.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        assert!(testing::readable(fd, Duration::from_secs(5)));
        assert!(
            !conn.end_idle_watch(),
            "unsolicited bytes were taken for a quiet connection"
        );
    }

    /// Dropping a receive while the kernel holds the read buffer leaves the `ReadBuf`
    /// consistent. Before: it claimed 3 bytes while holding no buffer ("left: 3, right: 0"),
    /// and taking them panicked.
    #[test]
    fn a_receive_dropped_in_flight_leaves_the_read_buffer_consistent() {
        let shard = testing::shard();
        let (near, mut far) = tcp_pair();
        let peer = near.peer_addr().unwrap();
        let mut conn = Conn::new(shard.clone(), near.into_raw_fd(), peer);
        let mut rb = ReadBuf::new();
        far.write_all(b"GET").unwrap();
        let n = testing::run(&shard, conn.recv(&mut rb, None)).unwrap();
        assert_eq!(n, 3);
        {
            let mut more = std::pin::pin!(conn.recv(&mut rb, None));
            assert!(poll_once(more.as_mut()).is_pending());
            shard.ring().turn(Duration::ZERO);
        }
        assert_eq!(rb.len(), rb.data().len());
        let mut out = Outbound::new();
        let len = rb.len();
        assert!(out.take_from(&mut rb, len, shard.pool()));
    }

    /// The next parked receive that completed, after turning the ring (at most 5 s).
    fn next_revived(shard: &IoShard) -> (u32, Completion) {
        testing::run(shard, shard.revived()).expect("a completion before the ring stops")
    }

    fn parked_pair(key: u32, deadline: Option<Duration>) -> (Rc<IoShard>, Conn, TcpStream) {
        let shard = testing::shard();
        let (near, far) = tcp_pair();
        let peer = near.peer_addr().unwrap();
        let mut conn = Conn::new(shard.clone(), near.into_raw_fd(), peer);
        conn.park(deadline.map(|after| shard.now() + after), key);
        (shard, conn, far)
    }

    /// A parked receive completes with nobody awaiting it: its key and completion come out of
    /// the ring, and its bytes land in the caller's buffer as a receive's would. It takes no
    /// slot, and its buffer is given back after.
    #[test]
    fn a_parked_receive_hands_its_key_and_then_its_bytes() {
        let (shard, mut conn, mut far) = parked_pair(7, None);
        let mut rb = ReadBuf::new();
        shard.ring().turn(Duration::ZERO);
        assert_eq!(shard.ring_in_flight(), 1);
        assert_eq!(
            shard.ring().slots_in_use(),
            0,
            "a parked receive takes no slot"
        );
        far.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        let (key, done) = next_revived(&shard);
        assert_eq!(key, 7);
        assert_eq!(conn.unpark(done, &mut rb).unwrap(), 16);
        assert_eq!(rb.data(), b"GET / HTTP/1.1\r\n");
        assert_eq!(shard.ring_in_flight(), 0);
        let len = rb.len();
        rb.consume(len);
        assert_eq!(held(&shard), 0);
    }

    /// Buffers in use: neither free nor offered to the kernel for receives.
    fn held(shard: &IoShard) -> usize {
        let pool = shard.pool();
        pool.count() - pool.free_count() - pool.in_kernel()
    }

    /// The peer's close and the deadline end a parked receive as they end an awaited one.
    #[test]
    fn a_parked_receive_ends_on_a_close_and_at_its_deadline() {
        let (shard, mut conn, far) = parked_pair(1, None);
        drop(far);
        let (key, done) = next_revived(&shard);
        assert_eq!(key, 1);
        let mut rb = ReadBuf::new();
        assert_eq!(conn.unpark(done, &mut rb).unwrap(), 0);
        assert!(rb.is_empty());

        let (shard, mut conn, _far) = parked_pair(2, Some(Duration::from_millis(30)));
        let parked_at = Instant::now();
        let (key, done) = next_revived(&shard);
        assert_eq!(key, 2);
        assert!(
            parked_at.elapsed() >= Duration::from_millis(30),
            "not before its deadline"
        );
        let err = conn.unpark(done, &mut rb).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(shard.ring_in_flight(), 0);
        assert_eq!(shard.ring().stats().timeouts, 1);
    }

    /// A parked connection dropped while the kernel owns its receive, dropped after the receive
    /// completed with bytes but before anyone took them, left parked when the ring stops, or
    /// parked on a stopping ring: each time the receive ends, its completion still comes out
    /// under its key, and its buffer goes back to the pool.
    #[test]
    fn a_parked_connection_dropped_or_stopped_midway_gives_everything_back() {
        // Dropped in flight: cancelled.
        let (shard, conn, _far) = parked_pair(3, None);
        shard.ring().turn(Duration::ZERO);
        drop(conn);
        let (key, done) = next_revived(&shard);
        assert_eq!((key, done.res), (3, -libc::ECANCELED));
        assert_eq!(shard.ring_in_flight(), 0);
        assert_eq!(held(&shard), 0);

        // Dropped with its bytes unclaimed: the buffer the kernel filled comes back.
        let (shard, conn, mut far) = parked_pair(4, None);
        far.write_all(b"bytes nobody takes").unwrap();
        testing::run(&shard, wait_until_idle(&shard));
        assert_eq!(held(&shard), 1, "the received bytes wait in their buffer");
        drop(conn);
        let (key, done) = next_revived(&shard);
        assert_eq!((key, done.res), (4, 18));
        drop(done);
        assert_eq!(shard.ring_in_flight(), 0);
        assert_eq!(held(&shard), 0);

        // The ring stops: the receive is cancelled, its completion still comes out, then the
        // end; one parked after the stop never reaches the kernel.
        let (shard, mut conn, _far) = parked_pair(5, None);
        shard.ring().turn(Duration::ZERO);
        shard.stop();
        testing::run(&shard, wait_until_idle(&shard));
        let (late, _late_far) = tcp_pair();
        let peer = late.peer_addr().unwrap();
        let mut late = Conn::new(shard.clone(), late.into_raw_fd(), peer);
        late.park(None, 6);
        let mut rb = ReadBuf::new();
        for expected in [6, 5] {
            let (key, done) = testing::run(&shard, shard.revived()).expect("a completion");
            assert_eq!(key, expected);
            let parked = if key == 5 { &mut conn } else { &mut late };
            let err = parked.unpark(done, &mut rb).unwrap_err();
            assert_ne!(
                err.kind(),
                std::io::ErrorKind::TimedOut,
                "stopped, not timed out"
            );
        }
        assert!(
            testing::run(&shard, shard.revived()).is_none(),
            "the reviver's end"
        );
        assert_eq!(shard.ring_in_flight(), 0);
        assert_eq!(held(&shard), 0);
    }

    /// Ready once the kernel owns no operation of the shard's ring.
    fn wait_until_idle(shard: &IoShard) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(|_| match shard.ring_in_flight() {
            0 => std::task::Poll::Ready(()),
            _ => std::task::Poll::Pending,
        })
    }

    /// What every idle connection holds while it waits: a receive, the same future for plain
    /// and TLS connections (the TLS one allocating nothing). 168 bytes when this was written
    /// (152 while TLS receives were boxed apart); the bound catches growth nobody meant.
    #[test]
    fn a_pending_receive_stays_small() {
        let shard = testing::shard();
        let (socket, _far) = tcp_pair();
        let mut rb = ReadBuf::new();
        let any = super::receive_any(
            &shard,
            socket.as_raw_fd(),
            None,
            &mut rb,
            None,
            super::Expect::Idle,
        );
        let size = std::mem::size_of_val(&any);
        assert!(size <= 176, "a pending receive is {size} bytes");
    }
}
