//! What runs on each shard's thread, from start to exit: set up its I/O, build its state from
//! the first configuration, start the driver, the accept loops and the access-log flush timer,
//! acknowledge, then serve the mailbox: apply new configurations, answer collections, and on
//! `Shutdown` drain and stop.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use crate::access_log::LogSink;
use crate::config::{Config, ListenerConfig};
use crate::context::{ListenerInfo, Scheme};
use crate::control::{Ack, Apply, Command, Inbox, ListenerSocket, Mailbox, ShardDemand};
use crate::event::LocalEvent;
use crate::io::{IoSettings, IoShard, Tracked};
use crate::listener;
use crate::proxy::{revive_parked, trim_after_parking};
use crate::ratelimit::LimitClock;
use crate::shard::registry::FIRST_REQUEST_GRACE;
use crate::shard::{Shard, ShardSeat};
use crate::task::spawn;
use crate::tls::TicketKeys;

/// How often a draining shard checks whether its connections are gone.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// How often the flush timer looks again while the access log is off.
const LOG_OFF_POLL: Duration = Duration::from_secs(1);

/// Everything a shard starts from, sent to its thread.
pub(crate) struct ShardStart {
    pub index: usize,
    pub cpu: usize,
    pub config: Arc<Config>,
    pub generation: u64,
    pub io: IoSettings,
    pub listeners: Vec<ListenerSocket>,
    pub mailbox: Arc<Mailbox>,
    pub ack: Sender<Ack>,
    pub log_sink: Arc<LogSink>,
    pub shard_count: usize,
    pub limit_clock: LimitClock,
    /// The TLS session-ticket keys in force when the shard starts.
    pub ticket_keys: Arc<TicketKeys>,
}

/// The listeners a shard accepts on, each with the event that stops its accept loop.
#[derive(Default)]
struct Accepting {
    loops: RefCell<Vec<(ListenerConfig, Rc<LocalEvent>)>>,
}

impl Accepting {
    /// Starts an accept loop per socket; returns what could not be started.
    fn open(&self, shard: &Rc<Shard>, sockets: Vec<ListenerSocket>) -> Vec<String> {
        let mut problems = Vec::new();
        for socket in sockets {
            match shard.io.listener_from(socket.fd, socket.config.backlog) {
                Ok(listener) => {
                    let stop = Rc::new(LocalEvent::default());
                    let info = Rc::new(ListenerInfo {
                        name: socket.config.name.clone(),
                        local: listener.local_addr(),
                        scheme: match socket.config.tls {
                            Some(_) => Scheme::Https,
                            None => Scheme::Http,
                        },
                    });
                    self.loops.borrow_mut().push((socket.config, stop.clone()));
                    spawn(listener::accept_loop(shard.clone(), listener, info, stop));
                }
                Err(err) => problems.push(format!("listener {:?}: {err}", socket.config.name)),
            }
        }
        problems
    }

    /// Stops the accept loops of these listeners (their sockets close when the loops end).
    fn close(&self, listeners: &[ListenerConfig]) {
        self.loops.borrow_mut().retain(|(config, stop)| {
            let closing = listeners.contains(config);
            if closing {
                stop.fire();
            }
            !closing
        });
    }
}

/// The shard's main task: set up, serve the mailbox until told to shut down, drain, stop.
pub(crate) async fn run_shard(start: ShardStart) {
    let Some(mut running) = set_up(start) else {
        return;
    };
    let deadline = running.serve_mailbox().await;
    running.drain(deadline).await;
    running.stop().await;
}

/// A shard set up and serving.
struct Running {
    shard: Rc<Shard>,
    io: Rc<IoShard>,
    inbox: Inbox,
    driver: glommio::task::JoinHandle<()>,
    accepting: Accepting,
}

/// Sets up the shard's I/O, mailbox, driver, state and listeners, and acknowledges its first
/// configuration; `None` (after saying why in the acknowledgement) when it cannot start.
fn set_up(start: ShardStart) -> Option<Running> {
    let ShardStart {
        index,
        cpu,
        config,
        generation,
        io: io_settings,
        listeners,
        mailbox,
        ack,
        log_sink,
        shard_count,
        limit_clock,
        ticket_keys,
    } = start;
    let acknowledge = |generation: u64, problems: Vec<String>| {
        let problem = (!problems.is_empty()).then(|| problems.join("; "));
        // The control plane stopped waiting only if it is gone: nothing left to tell.
        let _ = ack.send(Ack {
            shard: index,
            generation,
            problem,
        });
    };
    let io = match IoShard::new(&io_settings, config.runtime.max_connections) {
        Ok(io) => io,
        Err(err) => {
            acknowledge(
                0,
                vec![format!(
                    "cannot set up its io_uring ({err}); coregate needs Linux 6.1 or later \
                     with io_uring enabled (kernel.io_uring_disabled = 0)"
                )],
            );
            return None;
        }
    };
    let inbox = match mailbox.inbox(&io) {
        Ok(inbox) => inbox,
        Err(err) => {
            acknowledge(0, vec![format!("cannot open its mailbox: {err}")]);
            return None;
        }
    };
    let driver = glommio::spawn_local(Tracked::new({
        let io = io.clone();
        async move { io.drive().await }
    }))
    .detach();
    let seat = ShardSeat {
        index,
        cpu,
        count: shard_count,
    };
    let shard = Rc::new(Shard::new(
        seat,
        io.clone(),
        config,
        generation,
        log_sink,
        limit_clock,
    ));
    shard.report_health_to(mailbox.health_reports());
    // Before the first accept: every handshake can issue a ticket any shard accepts.
    shard.tls.ticketer.set(ticket_keys);
    let accepting = Accepting::default();
    let problems = accepting.open(&shard, listeners);
    spawn(flush_access_log(shard.clone()));
    spawn(revive_parked(shard.clone()));
    spawn(trim_after_parking(shard.clone()));
    acknowledge(generation, problems);
    Some(Running {
        shard,
        io,
        inbox,
        driver,
        accepting,
    })
}

impl Running {
    /// Serves the mailbox until `Shutdown`; returns the drain's deadline.
    async fn serve_mailbox(&mut self) -> Instant {
        let shard = &self.shard;
        loop {
            match self.inbox.next().await {
                Ok(Command::Apply(apply)) => self.apply(*apply),
                Ok(Command::Collect(reply)) => {
                    let _ = reply.send(shard.report());
                }
                Ok(Command::TakeDemand(reply)) => {
                    let _ = reply.send(ShardDemand {
                        shard: shard.index,
                        reports: shard.take_demand(),
                    });
                }
                Ok(Command::ApplyShares(updates)) => shard.apply_shares(&updates),
                Ok(Command::Health(verdicts)) => shard.apply_health(&verdicts),
                Ok(Command::TicketKeys(keys)) => shard.tls.ticketer.set(keys),
                Ok(Command::Shutdown { deadline }) => return deadline,
                Err(err) => {
                    eprintln!(
                        "coregate: shard {}: mailbox failed ({err}); shutting down",
                        shard.index
                    );
                    return Instant::now();
                }
            }
        }
    }

    /// Runs a new configuration: the snapshot swapped in, listeners closed and opened.
    fn apply(&self, apply: Apply) {
        let Apply {
            generation,
            config,
            open,
            close,
            ack,
        } = apply;
        self.shard.apply(config, generation);
        self.accepting.close(&close);
        let problems = self.accepting.open(&self.shard, open);
        let problem = (!problems.is_empty()).then(|| problems.join("; "));
        let _ = ack.send(Ack {
            shard: self.shard.index,
            generation,
            problem,
        });
    }

    /// Drains: stops accepting, closes keep-alive connections between requests, gives new
    /// ones a short grace for their first request, and lets busy ones finish their response,
    /// until none is left or `deadline`.
    async fn drain(&self, deadline: Instant) {
        let shard = &self.shard;
        shard.start_drain();
        // Upstream connections given back from now on are closed, not pooled: a pooled one
        // holds a watch, and a draining shard reuses nothing.
        for pool in shard.pools().iter() {
            pool.stop_pooling();
        }
        Tracked::new(async {
            // A quarter of a short drain at most, so the shutdowns still fit before its
            // deadline.
            let now = Instant::now();
            let grace = FIRST_REQUEST_GRACE.min(deadline.saturating_duration_since(now) / 4);
            let grace_ends = now + grace;
            let mut in_grace = true;
            while shard.open_connections() > 0 && Instant::now() < deadline {
                if in_grace && Instant::now() >= grace_ends {
                    shard.connections.end_first_request_grace();
                    in_grace = false;
                }
                self.io.sleep(DRAIN_POLL).await;
            }
        })
        .await;
        shard.log.hand_off();
        // Connections that went back to a pool during the drain are closed now: each holds a
        // watch on the ring that would otherwise keep the driver from finishing.
        shard.pools().clear_idle();
    }

    /// Stops the ring and waits for its driver; says so if completions were lost.
    async fn stop(self) {
        self.io.stop();
        self.driver.await;
        let stats = self.io.ring_stats();
        if stats.dropped > 0 || stats.abandoned > 0 {
            eprintln!(
                "coregate: shard {}: its ring lost {} completions and stopped with {} \
                 operations unfinished",
                self.shard.index, stats.dropped, stats.abandoned
            );
        }
    }
}

/// Hands the shard's access-log lines to the writer every flush interval, so lines reach the
/// file within that time even when traffic is too light to fill a buffer.
async fn flush_access_log(shard: Rc<Shard>) {
    while !shard.draining() {
        let wait = shard.log.flush_interval().unwrap_or(LOG_OFF_POLL);
        shard.io.sleep(wait).await;
        shard.log.hand_off();
    }
}
