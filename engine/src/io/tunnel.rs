//! Two connections joined after a protocol switch (`101 Switching Protocols`, a WebSocket):
//! bytes from each are sent to the other as they arrive, in both directions at once, until both
//! sides finished sending, one fails, or neither sent anything for the idle timeout.
//!
//! A side that finishes sending (EOF) has the other side's write half shut down, so a half-close
//! travels through; the other direction carries on. Each direction holds at most one buffer: a
//! receive waits (in the kernel, with no buffer, on the `uring` path) until the previous piece
//! was sent, so a slow reader slows its writer instead of filling memory.
//!
//! When a side speaks TLS (a WebSocket on a TLS listener, or to a TLS upstream), its records
//! are opened and sealed on the way ([`through_tls`]): each direction is a loop of the same
//! receive and gathered send operations every connection uses, its records fed to the side's
//! record layer between them (synchronously: the two directions share the layer, never across
//! an await). A direction's receive goes into a buffer of its own, so a receive that the tunnel's
//! end drops never holds the layer's records.

use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::io;
use std::os::fd::RawFd;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_lite::future;

use super::buffer::{Buf, BufferPool};
use super::conn::{Expect, Layer, receive, send_all};
use super::tls::Read;
use super::uring::{MAX_PARTS, Op, Part, Ring};
use super::{Conn, IoShard, Outbound, ReadBuf};

/// Bytes a tunnel carried, each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Carried {
    /// From the first connection to the second.
    pub forward: u64,
    /// From the second connection to the first.
    pub backward: u64,
}

/// Shuts down the sending side of a socket (the peer reads EOF; its replies still arrive).
fn shutdown_write(fd: RawFd) {
    // SAFETY: shutdown(2) on a descriptor its connection still owns; errors mean it is gone.
    unsafe {
        libc::shutdown(fd, libc::SHUT_WR);
    }
}

/// One direction on the ring: receiving into a provided buffer, then sending that buffer.
enum Leg<'r> {
    Receiving(Op<'r>),
    Sending { op: Op<'r>, start: u32, end: u32 },
    Finished,
}

struct Direction<'r> {
    from: RawFd,
    to: RawFd,
    leg: Leg<'r>,
    carried: u64,
}

/// The direction could not go on: the tunnel ends.
struct Broken;

impl<'r> Direction<'r> {
    fn new(ring: &'r Ring, from: RawFd, to: RawFd) -> Direction<'r> {
        Direction {
            from,
            to,
            leg: Leg::Receiving(ring.recv_provided(from, None, true)),
            carried: 0,
        }
    }

    fn finished(&self) -> bool {
        matches!(self.leg, Leg::Finished)
    }

    /// Moves the direction on as far as completions allow; sets `moved` when bytes arrived.
    fn advance(
        &mut self,
        ring: &'r Ring,
        pool: &std::rc::Rc<BufferPool>,
        cx: &mut Context<'_>,
        moved: &mut bool,
    ) -> Result<(), Broken> {
        loop {
            let next = match &mut self.leg {
                Leg::Finished => return Ok(()),
                Leg::Receiving(op) => {
                    let Poll::Ready(mut done) = Pin::new(op).poll(cx) else {
                        return Ok(());
                    };
                    if done.res == -libc::ENOBUFS {
                        // The kernel's ring ran dry: offer it more, receive into our own.
                        pool.grow_provided();
                        let buf = pool.take().ok_or(Broken)?;
                        Leg::Receiving(ring.recv_into(self.from, buf, 0, None, true))
                    } else if done.res < 0 {
                        return Err(Broken);
                    } else if done.res == 0 {
                        shutdown_write(self.to);
                        Leg::Finished
                    } else {
                        let buf = done.take_buf().ok_or(Broken)?;
                        *moved = true;
                        let end = done.res as u32;
                        Leg::Sending {
                            op: send(ring, self.to, buf, 0, end),
                            start: 0,
                            end,
                        }
                    }
                }
                Leg::Sending { op, start, end } => {
                    let Poll::Ready(mut done) = Pin::new(op).poll(cx) else {
                        return Ok(());
                    };
                    if done.res <= 0 {
                        return Err(Broken);
                    }
                    let buf = done.take_buf().ok_or(Broken)?;
                    let sent = done.res as u32;
                    self.carried += u64::from(sent);
                    let (start, end) = (*start + sent, *end);
                    if start < end {
                        Leg::Sending {
                            op: send(ring, self.to, buf, start, end),
                            start,
                            end,
                        }
                    } else {
                        drop(buf);
                        Leg::Receiving(ring.recv_provided(self.from, None, true))
                    }
                }
            };
            self.leg = next;
        }
    }
}

fn send(ring: &Ring, fd: RawFd, buf: Buf, start: u32, end: u32) -> Op<'_> {
    let mut parts: [Option<Part>; MAX_PARTS] = Default::default();
    parts[0] = Some(Part::new(buf, start, end));
    ring.send_parts(fd, &mut parts, None)
}

/// Joins two connections after a protocol switch: what each sends goes to the other, until
/// both finished, one failed, or neither sent anything for `idle`. Both must belong to the same
/// shard. Returns what was carried whichever way it ended.
pub async fn join(a: &mut Conn, b: &mut Conn, idle: Duration) -> (Carried, io::Result<()>) {
    let shard = a.shard().clone();
    if a.is_tls() || b.is_tls() {
        // Boxed: its state is larger than the plain tunnel's, and it is rare.
        return Box::pin(through_tls(&shard, a, b, idle)).await;
    }
    on_ring(shard.ring(), shard.pool(), a.raw_fd(), b.raw_fd(), idle).await
}

/// One side of a tunnel over TLS: its socket and, when it speaks TLS, its record layer.
struct End<'r, 'l> {
    fd: RawFd,
    tls: Option<&'r RefCell<&'l mut Layer>>,
}

impl<'r, 'l> End<'r, 'l> {
    fn new(fd: RawFd, tls: &'r Option<RefCell<&'l mut Layer>>) -> End<'r, 'l> {
        End {
            fd,
            tls: tls.as_ref(),
        }
    }
}

/// [`join`] when a side speaks TLS.
async fn through_tls(
    shard: &IoShard,
    a: &mut Conn,
    b: &mut Conn,
    idle: Duration,
) -> (Carried, io::Result<()>) {
    let (a_fd, b_fd) = (a.raw_fd(), b.raw_fd());
    let a_tls = a.layer_mut().map(RefCell::new);
    let b_tls = b.layer_mut().map(RefCell::new);
    let forward = Cell::new(0u64);
    let backward = Cell::new(0u64);
    let activity = Cell::new(shard.now());
    let directions = future::try_zip(
        pump(
            shard,
            End::new(a_fd, &a_tls),
            End::new(b_fd, &b_tls),
            &forward,
            &activity,
        ),
        pump(
            shard,
            End::new(b_fd, &b_tls),
            End::new(a_fd, &a_tls),
            &backward,
            &activity,
        ),
    );
    let quiet_too_long = async {
        loop {
            let quiet = shard.now().saturating_duration_since(activity.get());
            if quiet >= idle {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the tunnel was idle too long",
                ));
            }
            shard.sleep(idle - quiet).await;
            if shard.ring().is_stopping() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the shard's I/O stopped",
                ));
            }
        }
    };
    let outcome = future::or(async { directions.await.map(|_| ()) }, quiet_too_long).await;
    let carried = Carried {
        forward: forward.get(),
        backward: backward.get(),
    };
    (carried, outcome)
}

/// `from` finished sending: `to` is told so, by `close_notify` when it speaks TLS, then by
/// shutting down its write half (the other direction carries on).
async fn finish(shard: &IoShard, to: &End<'_, '_>) -> io::Result<()> {
    if let Some(tls) = to.tls {
        let mut out = Outbound::new();
        tls.borrow_mut().close_notify(&mut out, shard.pool())?;
        if !out.is_empty() {
            // The peer may be gone already; the write half closes all the same.
            let _ = send_all(shard, to.fd, &mut out, None).await;
        }
    }
    shutdown_write(to.fd);
    Ok(())
}

/// One direction over TLS: plaintext from `from` (its records opened when it speaks TLS) to
/// `to` (sealed when it does), piece by piece, until `from` finishes (its EOF or
/// `close_notify` shuts down `to`'s write half) or a side fails.
async fn pump(
    shard: &IoShard,
    from: End<'_, '_>,
    to: End<'_, '_>,
    carried: &Cell<u64>,
    activity: &Cell<std::time::Instant>,
) -> io::Result<()> {
    let pool = shard.pool();
    // Records received from a TLS `from`, before they join its layer's.
    let mut incoming = ReadBuf::new();
    // Plaintext to pass on.
    let mut plain = ReadBuf::new();
    loop {
        match from.tls {
            Some(tls) => {
                let read = tls.borrow_mut().read(&mut plain, pool)?;
                match read {
                    Read::Bytes(_) => {}
                    Read::Closed => return finish(shard, &to).await,
                    Read::More if !incoming.is_empty() => {
                        tls.borrow_mut().feed(&mut incoming, shard)?;
                        continue;
                    }
                    Read::More => {
                        if receive(shard, from.fd, &mut incoming, None, Expect::Soon).await? == 0 {
                            return finish(shard, &to).await;
                        }
                        activity.set(shard.now());
                        continue;
                    }
                }
            }
            None => {
                if receive(shard, from.fd, &mut plain, None, Expect::Soon).await? == 0 {
                    return finish(shard, &to).await;
                }
                activity.set(shard.now());
            }
        }
        let len = plain.len();
        match to.tls {
            None => {
                let mut out = Outbound::new();
                if let Some(part) = plain.take_all() {
                    out.push_part(part);
                }
                send_all(shard, to.fd, &mut out, None).await?;
            }
            Some(tls) => {
                let mut bytes = plain.data();
                while !bytes.is_empty() {
                    let mut out = Outbound::new();
                    {
                        let mut layer = tls.borrow_mut();
                        while !bytes.is_empty() {
                            match layer.encrypt(bytes, &mut out, pool)? {
                                Some(taken) => bytes = &bytes[taken..],
                                None if out.is_empty() => return Err(super::no_buffer()),
                                None => break,
                            }
                        }
                    }
                    send_all(shard, to.fd, &mut out, None).await?;
                }
                plain.consume(len);
            }
        }
        carried.set(carried.get() + len as u64);
        activity.set(shard.now());
    }
}

/// Joins the sockets `a` and `b` on the shard's ring.
async fn on_ring(
    ring: &Ring,
    pool: &std::rc::Rc<BufferPool>,
    a: RawFd,
    b: RawFd,
    idle: Duration,
) -> (Carried, io::Result<()>) {
    let mut forward = Direction::new(ring, a, b);
    let mut backward = Direction::new(ring, b, a);
    let mut last_activity = ring.now();
    let mut timer = ring.sleep(idle);
    let outcome = poll_fn(|cx| {
        let mut moved = false;
        if forward.advance(ring, pool, cx, &mut moved).is_err()
            || backward.advance(ring, pool, cx, &mut moved).is_err()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "a side of the tunnel failed",
            )));
        }
        if forward.finished() && backward.finished() {
            return Poll::Ready(Ok(()));
        }
        let now = ring.now();
        if moved {
            last_activity = now;
        }
        while let Poll::Ready(done) = Pin::new(&mut timer).poll(cx) {
            if done.res == -libc::ECANCELED {
                // The ring stops: every new timer would complete at once, so this is the end.
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the shard's I/O stopped",
                )));
            }
            let quiet = now.saturating_duration_since(last_activity);
            if quiet >= idle {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the tunnel was idle too long",
                )));
            }
            timer = ring.sleep(idle - quiet);
        }
        Poll::Pending
    })
    .await;
    // Operations still pending are cancelled as their futures drop here.
    let carried = Carried {
        forward: forward.carried,
        backward: backward.carried,
    };
    (carried, outcome)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    use std::pin::pin;
    use std::time::Duration;

    use super::super::testing::{self, poll_once, tcp_pair, within};
    use super::on_ring;

    /// A tunnel whose idle timer completes in the pass in which the ring stops must end, not
    /// spin: every operation started after `stop()` completes at once. Before: its poll never
    /// returned ("the tunnel did not finish within 5s").
    #[test]
    fn a_tunnel_ends_when_the_ring_stops() {
        within(Duration::from_secs(5), "the tunnel", || {
            let shard = testing::shard();
            let ring = shard.ring();
            let (a, mut a_peer) = tcp_pair();
            let (b, mut b_peer) = tcp_pair();
            let (waker, wakes) = testing::waker();
            let mut cx = std::task::Context::from_waker(&waker);
            ring.turn(Duration::ZERO);
            let tunnel = on_ring(
                ring,
                shard.pool(),
                a.as_raw_fd(),
                b.as_raw_fd(),
                Duration::from_millis(100),
            );
            let mut tunnel = pin!(tunnel);
            assert!(tunnel.as_mut().poll(&mut cx).is_pending());
            // Some quiet, then one byte through: the tunnel is active, not idle.
            ring.turn(Duration::from_millis(30));
            a_peer.write_all(b"x").unwrap();
            let mut byte = [0u8; 1];
            loop {
                ring.turn(Duration::from_millis(5));
                assert!(tunnel.as_mut().poll(&mut cx).is_pending());
                if testing::readable(b_peer.as_raw_fd(), Duration::ZERO) {
                    break;
                }
            }
            b_peer.read_exact(&mut byte).unwrap();
            ring.turn(Duration::ZERO);
            assert!(tunnel.as_mut().poll(&mut cx).is_pending());
            // The idle timer completes; before the tunnel runs again, the ring stops.
            let before = wakes.get();
            while wakes.get() == before {
                ring.turn(Duration::from_millis(20));
            }
            ring.stop();
            match poll_once(tunnel.as_mut()) {
                std::task::Poll::Ready((_, Err(err))) => {
                    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted, "{err}");
                }
                other => panic!(
                    "the tunnel went on: {:?}",
                    other.map(|(c, r)| (c, r.is_ok()))
                ),
            }
        });
    }
}
