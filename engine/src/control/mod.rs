//! The only path between cores: one mailbox per shard, from the control plane (main thread) to
//! the shard, plus the reply channels some commands carry.
//!
//! A mailbox is a bounded lock-free queue with an eventfd doorbell ([`crate::io::Notifier`]). The
//! control plane pushes a [`Command`] and rings; the shard's control task wakes through its own
//! I/O mechanism, drains the queue and acts between requests. Nothing here runs per request.
//!
//! Commands:
//! - [`Command::Shutdown`]: stop accepting, finish in-flight requests, close idle connections,
//!   exit by the deadline.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_queue::ArrayQueue;

use crate::io::{IoShard, Notifier, NotifyReceiver};

/// Commands waiting in one mailbox at most; the control plane never needs more in flight.
pub const MAILBOX_CAPACITY: usize = 64;

/// A message from the control plane to a shard.
#[derive(Debug)]
pub enum Command {
    /// Graceful shutdown: stop accepting, let in-flight requests finish (answered with
    /// `Connection: close`), close idle connections; whatever is left at `deadline` is dropped.
    Shutdown { deadline: Instant },
}

/// One shard's mailbox, shared by the control plane (sender) and the shard (receiver).
#[derive(Debug)]
pub struct Mailbox {
    queue: ArrayQueue<Command>,
    bell: Notifier,
}

impl Mailbox {
    pub fn new() -> io::Result<Arc<Mailbox>> {
        Ok(Arc::new(Mailbox {
            queue: ArrayQueue::new(MAILBOX_CAPACITY),
            bell: Notifier::new()?,
        }))
    }

    /// Queues a command and wakes the shard. Gives the command back if the mailbox is full.
    pub fn send(&self, command: Command) -> Result<(), Command> {
        self.queue.push(command)?;
        self.bell.notify();
        Ok(())
    }

    /// The shard's receiving end; call on the shard's thread.
    pub fn inbox(self: &Arc<Self>, io: &std::rc::Rc<IoShard>) -> io::Result<Inbox> {
        Ok(Inbox {
            mailbox: self.clone(),
            doorbell: self.bell.receiver(io)?,
        })
    }
}

/// The receiving end of a mailbox, owned by its shard.
pub struct Inbox {
    mailbox: Arc<Mailbox>,
    doorbell: NotifyReceiver,
}

impl Inbox {
    /// The next command, waiting for one if none is queued.
    pub async fn next(&mut self) -> io::Result<Command> {
        loop {
            if let Some(command) = self.mailbox.queue.pop() {
                return Ok(command);
            }
            self.doorbell.wait().await?;
        }
    }
}
