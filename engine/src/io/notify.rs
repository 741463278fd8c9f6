//! Cross-thread wake-ups for a shard: an eventfd the control plane writes and the shard waits on
//! with a read on its own ring.
//!
//! This is the doorbell of the control mailboxes; the messages themselves travel in a queue next
//! to it (see `control`). Nothing on the request path touches it.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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
        // A fresh duplicate, owned by the receiver from here on.
        Ok(NotifyReceiver {
            io: io.clone(),
            fd: copy,
        })
    }
}

/// The waiting side, owned by one shard. Its descriptor is closed through the shard's ring,
/// after a read that may still be queued.
pub struct NotifyReceiver {
    io: Rc<IoShard>,
    fd: RawFd,
}

impl NotifyReceiver {
    /// Waits until notified at least once since the last wait; returns how many times.
    pub async fn wait(&mut self) -> io::Result<u64> {
        let done = self.io.ring().read_eventfd(self.fd).await;
        super::check(done.res, done.timed_out)?;
        Ok(done.word)
    }
}

impl Drop for NotifyReceiver {
    fn drop(&mut self) {
        self.io.ring().close(self.fd);
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::pin::pin;
    use std::time::Duration;

    use super::super::testing::{self, poll_once};
    use super::Notifier;

    /// A receiver dropped while its read is still queued keeps its descriptor until the ring
    /// took the entry, so an eventfd that reuses the number never loses a count to it. Before:
    /// the queued read consumed the next eventfd's count.
    #[test]
    fn a_dropped_receiver_never_reads_a_reused_descriptor() {
        let shard = testing::shard();
        let notifier = Notifier::new().unwrap();
        let mut receiver = notifier.receiver(&shard).unwrap();
        let number = receiver.fd;
        {
            let mut wait = pin!(receiver.wait());
            assert!(poll_once(wait.as_mut()).is_pending());
        }
        drop(receiver);
        // SAFETY: plain eventfd creation; checked below.
        let raw = unsafe { libc::eventfd(1, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        assert!(raw >= 0);
        // SAFETY: a fresh descriptor owned by nobody else.
        let next = unsafe { OwnedFd::from_raw_fd(raw) };
        let reused = raw == number;
        shard.ring().turn(Duration::ZERO);
        shard.ring().turn(Duration::from_millis(20));
        let mut word = 0u64;
        // SAFETY: reading 8 bytes into a local u64.
        let n = unsafe {
            libc::read(
                next.as_raw_fd(),
                &mut word as *mut u64 as *mut libc::c_void,
                8,
            )
        };
        assert_eq!(n, 8, "the count was taken (number reused: {reused})");
    }
}
