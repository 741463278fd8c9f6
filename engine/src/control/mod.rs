//! The only path between cores: one mailbox per shard, from the control plane (main thread,
//! admin thread) to the shard, plus the reply channels some commands carry; and the control
//! plane itself ([`plane`]), which sends every command there is.
//!
//! A mailbox is an unbounded lock-free queue with an eventfd doorbell ([`crate::io::Notifier`]). The
//! control plane pushes a [`Command`] and rings; the shard's control task wakes through its own
//! ring, drains the queue and acts between requests. Nothing here runs per request.
//!
//! Commands:
//! - [`Command::Apply`]: run a new configuration (generation number, validated snapshot, the
//!   listener sockets to start and the listeners to stop); the shard builds its route table,
//!   pools and limits off the hot path, swaps them in at the next request boundary and answers
//!   with an [`Ack`].
//! - [`Command::Collect`]: send back a copy of the shard's counters and histograms
//!   ([`ShardReport`]).
//! - [`Command::TakeDemand`] / [`Command::ApplyShares`]: one round of the rate-limit exchange
//!   (every 100 ms while any route has a limit): each shard reports the keys that used much of
//!   its share, and receives its new shares (see [`crate::ratelimit`]).
//! - [`Command::Health`]: upstream health verdicts from the health thread ([`health`]):
//!   ejections, their ends, refusals, the active checks' findings. Every shard gets the same
//!   ones; the other way, a shard whose own outcomes ejected an endpoint tells the health
//!   thread through its mailbox's report channel ([`Mailbox::health_reports`]).
//! - [`Command::TicketKeys`]: the TLS session-ticket keys from now on (made and rotated by the
//!   control plane, the same for every shard, so a client resumes on any shard).
//! - [`Command::Shutdown`]: stop accepting, finish in-flight requests, close idle connections,
//!   exit by the deadline.

pub mod health;
pub mod plane;
mod probe;
pub mod resolve;

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Instant;

use crossbeam_queue::SegQueue;

use crate::config::{Config, ListenerConfig};
use crate::io::{IoShard, Notifier, NotifyReceiver};
use crate::metrics::ShardReport;
use crate::ratelimit::{DemandReport, ShareUpdate};
use crate::tls::TicketKeys;
use crate::upstream::{Report, Verdict};

/// A message from the control plane to a shard.
#[derive(Debug)]
pub enum Command {
    /// Run a new configuration.
    Apply(Box<Apply>),
    /// Send a copy of the shard's metrics down the channel.
    Collect(Sender<ShardReport>),
    /// Send every limiter's demand since the last round, and start a new interval.
    TakeDemand(Sender<ShardDemand>),
    /// Enforce these shares from now on, per route.
    ApplyShares(Vec<(Box<str>, ShareUpdate)>),
    /// Apply these upstream health verdicts (the same for every shard).
    Health(Arc<[Verdict]>),
    /// Seal and open TLS session tickets with these keys from now on.
    TicketKeys(Arc<TicketKeys>),
    /// Graceful shutdown: stop accepting, let in-flight requests finish (answered with
    /// `Connection: close`), close idle connections; whatever is left at `deadline` is dropped.
    Shutdown { deadline: Instant },
}

/// A configuration for one shard to run, with the listener changes it brings.
#[derive(Debug)]
pub struct Apply {
    /// Increases by one with every configuration the control plane accepts; the first is 1.
    pub generation: u64,
    /// Validated in full by the control plane; the shard only builds from it.
    pub config: Arc<Config>,
    /// This shard's sockets for listeners that are new (or changed) in this generation.
    pub open: Vec<ListenerSocket>,
    /// Listeners this shard stops accepting on: gone, or changed (their replacement is in
    /// `open`). Connections already accepted on them carry on.
    pub close: Vec<ListenerConfig>,
    /// Where the shard reports that it runs the generation.
    pub ack: Sender<Ack>,
}

/// One shard's rate-limit demand, per route.
#[derive(Debug)]
pub struct ShardDemand {
    pub shard: usize,
    pub reports: Vec<(Box<str>, DemandReport)>,
}

/// One shard's own `SO_REUSEPORT` socket for a listener, bound and listening.
#[derive(Debug)]
pub struct ListenerSocket {
    pub config: ListenerConfig,
    pub fd: OwnedFd,
}

/// A shard's answer to [`Command::Apply`] (and to its start-up configuration).
#[derive(Debug)]
pub struct Ack {
    pub shard: usize,
    pub generation: u64,
    /// Why the shard cannot run the configuration, when it cannot (its I/O could not be set
    /// up at start-up, say). Listener sockets it could not use are named here too; the shard
    /// serves on the others.
    pub problem: Option<String>,
}

/// One shard's mailbox, shared by the control plane (sender) and the shard (receiver).
#[derive(Debug)]
pub struct Mailbox {
    /// Unbounded, so a command is never refused: a shutdown or a configuration cannot be lost
    /// behind a stalled shard. The control plane bounds what it queues itself (one collection
    /// at a time per shard, one rate-limit round at a time).
    queue: SegQueue<Command>,
    bell: Notifier,
    /// Where the shard reports the ejections it makes (the health thread).
    health_reports: Sender<Report>,
}

impl Mailbox {
    pub fn new(health_reports: Sender<Report>) -> io::Result<Arc<Mailbox>> {
        Ok(Arc::new(Mailbox {
            queue: SegQueue::new(),
            bell: Notifier::new()?,
            health_reports,
        }))
    }

    /// The channel the shard reports its ejections on.
    pub fn health_reports(&self) -> Sender<Report> {
        self.health_reports.clone()
    }

    /// Queues a command and wakes the shard.
    pub fn send(&self, command: Command) {
        self.queue.push(command);
        self.bell.notify();
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
