//! Cross-thread wake-ups for a shard: an eventfd the control plane writes and the shard waits on
//! with a read on its own ring.
//!
//! This is the doorbell of the control mailboxes; the messages themselves travel in a queue next
//! to it (see `control`). Nothing on the request path touches it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;

use super::IoShard;

/// The sending side: any thread may ring.
#[derive(Debug)]
pub struct Notifier {
    fd: OwnedFd,
}

impl Notifier {
    pub fn new() -> io::Result<Notifier> {
        // SAFETY: plain eventfd creation; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor owned by nobody else.
        Ok(Notifier {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Wakes the waiting shard (or makes its next wait return at once).
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writing 8 bytes from a valid u64 to our eventfd. It can only fail if the
        // counter would overflow, which needs 2^64 unread notifications.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            );
        }
    }

    /// The receiving side, for the shard that owns `io`.
    pub fn receiver(&self, io: &Rc<IoShard>) -> io::Result<NotifyReceiver> {
        // SAFETY: dup of a descriptor we own; the copy is owned by the receiver.
        let copy = unsafe { libc::dup(self.fd.as_raw_fd()) };
        if copy < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NotifyReceiver {
            io: io.clone(),
            // SAFETY: a fresh duplicate, owned by the receiver from here on.
            fd: unsafe { OwnedFd::from_raw_fd(copy) },
        })
    }
}

/// The waiting side, owned by one shard.
pub struct NotifyReceiver {
    io: Rc<IoShard>,
    fd: OwnedFd,
}

impl NotifyReceiver {
    /// Waits until notified at least once since the last wait; returns how many times.
    pub async fn wait(&mut self) -> io::Result<u64> {
        let done = self.io.ring().read_eventfd(self.fd.as_raw_fd()).await;
        super::check(done.res, done.timed_out)?;
        Ok(done.word)
    }
}
