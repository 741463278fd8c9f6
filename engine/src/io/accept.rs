//! A shard's listening socket on its ring: single-shot accepts, never more in flight than the
//! room the caller has below its connection cap, so at the cap nothing is taken from the kernel
//! and clients wait in its backlog.
//!
//! Why not a multishot accept: it takes every connection queued in the backlog at once, and
//! those past the cap could then only be closed (the clients saw resets). A single-shot accept
//! takes one connection, so the shard takes only what it can serve. An accept cancelled by
//! [`Listener::pause`] may still bring a connection (it completed first): such a connection is
//! held, at most [`ACCEPT_DEPTH`] of them, and handed out first when there is room again; a
//! connection is closed only when its listener closes.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::task::Poll;

use super::{Conn, IoShard, socket};

/// Accepts in flight at most, however much room there is: enough to take a burst of new
/// connections in one pass.
pub const ACCEPT_DEPTH: usize = 16;

/// One accept in flight.
struct Accepting {
    /// Its slot on the ring.
    id: u32,
    /// `pause` asked the kernel to cancel it.
    cancelled: bool,
}

/// A shard's listening socket.
pub struct Listener {
    shard: Rc<IoShard>,
    fd: RawFd,
    accepts: Vec<Accepting>,
    /// Connections accepted and not handed out yet (see the module docs).
    held: VecDeque<RawFd>,
    local: SocketAddr,
}

impl Listener {
    /// Takes ownership of a listening socket's descriptor.
    pub(super) fn new(shard: Rc<IoShard>, fd: RawFd, local: SocketAddr) -> Listener {
        Listener {
            shard,
            fd,
            accepts: Vec::with_capacity(ACCEPT_DEPTH),
            held: VecDeque::with_capacity(ACCEPT_DEPTH),
            local,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits for the next client connection, with at most `room` accepts in flight (the room
    /// left below the connection cap; at least one).
    pub async fn accept(&mut self, room: usize) -> io::Result<Conn> {
        let want = room.clamp(1, ACCEPT_DEPTH);
        loop {
            if let Some(fd) = self.held.pop_front() {
                match self.adopt(fd) {
                    Some(conn) => return Ok(conn),
                    None => continue,
                }
            }
            let ring = self.shard.ring();
            while self.accepts.iter().filter(|a| !a.cancelled).count() < want {
                let id = ring.accept(self.fd);
                self.accepts.push(Accepting {
                    id,
                    cancelled: false,
                });
            }
            let accepts = &mut self.accepts;
            let (res, cancelled) = std::future::poll_fn(|cx| {
                for index in 0..accepts.len() {
                    if let Poll::Ready(res) = ring.poll_accept(accepts[index].id, cx) {
                        let done = accepts.swap_remove(index);
                        return Poll::Ready((res, done.cancelled));
                    }
                }
                Poll::Pending
            })
            .await;
            if res >= 0 {
                match self.adopt(res) {
                    Some(conn) => return Ok(conn),
                    None => continue,
                }
            }
            if res == -libc::ECANCELED && cancelled && !ring.is_stopping() {
                // Ended by `pause`: nothing was taken.
                continue;
            }
            return Err(io::Error::from_raw_os_error(-res));
        }
    }

    /// Gives back a connection [`Listener::accept`] returned but the caller cannot serve now
    /// (another listener took the last room): it is handed out first next time.
    pub fn hold(&mut self, conn: Conn) {
        self.held.push_front(conn.into_raw_fd());
    }

    /// Stops taking connections from the kernel (at the connection cap; clients then wait in
    /// the backlog): the accepts in flight are cancelled. One that completed first keeps its
    /// connection for the next `accept`.
    pub fn pause(&mut self) {
        let ring = self.shard.ring();
        for accept in self.accepts.iter_mut().filter(|a| !a.cancelled) {
            accept.cancelled = true;
            ring.cancel_awaited(accept.id);
        }
    }

    /// Makes a connection of an accepted descriptor; `None` (closing it) when the client left
    /// already (ENOTCONN).
    /// Stops accepting for good and returns the connections accepts under way had already
    /// taken (an accept can complete with a client in the moment its cancel is sent) and those
    /// held for later. A listener that stops (a drain, a reload removing it, a successor
    /// process taking its socket over) serves them: closing them would fail clients whose
    /// connection the kernel had completed. Every other client stays in the backlog.
    pub async fn finish(&mut self) -> Vec<Conn> {
        self.pause();
        let ring = self.shard.ring().clone();
        let mut taken = Vec::new();
        while let Some(accept) = self.accepts.pop() {
            let res = std::future::poll_fn(|cx| ring.poll_accept(accept.id, cx)).await;
            if res >= 0 {
                taken.extend(self.adopt(res));
            }
        }
        while let Some(fd) = self.held.pop_front() {
            taken.extend(self.adopt(fd));
        }
        taken
    }

    fn adopt(&self, fd: RawFd) -> Option<Conn> {
        let peer = socket::peer_addr(fd).and_then(|peer| {
            socket::configure_accepted(fd)?;
            Ok(peer)
        });
        match peer {
            Ok(peer) => Some(Conn::new(self.shard.clone(), fd, peer)),
            Err(_) => {
                self.shard.ring().close(fd);
                None
            }
        }
    }
}

impl Drop for Listener {
    /// Cancels the accepts in flight (a connection one still brings is closed by the ring),
    /// then closes the held connections and the socket itself through the ring, after the
    /// queued entries that name it.
    fn drop(&mut self) {
        let ring = self.shard.ring();
        for accept in self.accepts.drain(..) {
            ring.abandon(accept.id);
        }
        for fd in self.held.drain(..) {
            ring.close(fd);
        }
        ring.close(self.fd);
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::pin::pin;
    use std::time::{Duration, Instant};

    use super::super::ListenOptions;
    use super::super::testing::{self, poll_once};

    const OPTIONS: ListenOptions = ListenOptions {
        backlog: 16,
        defer_accept: false,
    };

    /// A listener dropped while its accept is still queued must keep its descriptor until the
    /// ring took the queued entries, so a socket that reuses the number never has a client
    /// taken by the orphaned accept. Before: the listener closed at once, the next socket got
    /// its number, and the queued accept took that socket's client.
    /// A client whose connection an accept took in the moment the listener stopped is handed
    /// to the caller, not closed. Before: the listener's accept loop dropped the listener, and
    /// the connection the cancelled accept brought was closed unanswered (seen as one or two
    /// lost connections per binary upgrade).
    #[test]
    fn a_listener_that_finishes_hands_over_what_its_accepts_took() {
        let shard = testing::shard();
        let mut listener = shard
            .listen("127.0.0.1:0".parse().unwrap(), OPTIONS)
            .unwrap();
        let addr = listener.local_addr();
        {
            let mut accept = pin!(listener.accept(4));
            assert!(poll_once(accept.as_mut()).is_pending());
        }
        // The accepts reach the kernel; the client's connection completes into one of them,
        // and the completion is reaped before the accept loop looks again.
        shard.ring().turn(Duration::ZERO);
        let client = TcpStream::connect(addr).unwrap();
        shard.ring().turn(Duration::from_millis(50));
        let taken = testing::run(&shard, listener.finish());
        assert_eq!(taken.len(), 1, "the accepted client is handed over");
        assert_eq!(
            taken[0].peer_addr(),
            client.local_addr().unwrap(),
            "it is that client"
        );
    }

    #[test]
    fn a_dropped_listener_never_accepts_on_a_reused_descriptor() {
        let shard = testing::shard();
        let mut listener = shard
            .listen("127.0.0.1:0".parse().unwrap(), OPTIONS)
            .unwrap();
        let number = listener.fd;
        {
            let mut accept = pin!(listener.accept(1));
            assert!(poll_once(accept.as_mut()).is_pending());
        }
        drop(listener);
        let next = TcpListener::bind("127.0.0.1:0").unwrap();
        let reused = next.as_raw_fd() == number;
        let _client = TcpStream::connect(next.local_addr().unwrap()).unwrap();
        shard.ring().turn(Duration::ZERO);
        shard.ring().turn(Duration::from_millis(20));
        next.set_nonblocking(true).unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match next.accept() {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => {
                    testing::readable(next.as_raw_fd(), Duration::from_millis(50));
                }
                Err(err) => panic!(
                    "the client of the next socket was taken (number reused: {reused}): {err}"
                ),
            }
        }
    }
}
