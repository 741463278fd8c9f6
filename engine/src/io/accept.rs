//! A shard's listening socket on its ring: one multishot accept while the shard takes
//! connections, cancelled while it does not (clients then wait in the kernel's backlog).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;

use super::{Conn, IoShard, socket};

/// A shard's listening socket.
pub struct Listener {
    shard: Rc<IoShard>,
    fd: OwnedFd,
    /// The slot of the running multishot accept, if one runs.
    multishot: Option<u32>,
    local: SocketAddr,
}

impl Listener {
    pub(super) fn new(shard: Rc<IoShard>, fd: OwnedFd, local: SocketAddr) -> Listener {
        Listener {
            shard,
            fd,
            multishot: None,
            local,
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Waits for the next client connection.
    pub async fn accept(&mut self) -> io::Result<Conn> {
        let ring = self.shard.ring();
        loop {
            let fd = self.fd.as_raw_fd();
            let id = *self.multishot.get_or_insert_with(|| ring.accept_multi(fd));
            let next = std::future::poll_fn(|cx| ring.poll_accepted(id, cx)).await;
            let raw = match next {
                None => {
                    self.multishot = None;
                    continue;
                }
                // The multishot ends after an error; a new one starts on the next call.
                Some(res) if res < 0 => return Err(io::Error::from_raw_os_error(-res)),
                Some(raw) => raw,
            };
            // SAFETY: the kernel just created this descriptor for us.
            let owned = unsafe { socket::own(raw) };
            let peer = socket::peer_addr(raw).and_then(|peer| {
                socket::configure_accepted(raw)?;
                Ok(peer)
            });
            match peer {
                Ok(peer) => return Ok(Conn::new(self.shard.clone(), socket::release(owned), peer)),
                // The client left already (ENOTCONN): take the next one.
                Err(_) => continue,
            }
        }
    }

    /// Stops taking connections from the kernel until the next `accept` (used at the connection
    /// cap and when draining; clients then wait in the backlog).
    pub fn pause(&mut self) {
        if let Some(id) = self.multishot.take() {
            self.shard.ring().cancel_accept(id);
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.pause();
    }
}
