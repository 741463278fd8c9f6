//! Process shape: one pinned glommio executor ("shard") per planned core, started and stopped
//! from the main thread. The only module that spawns threads.
//!
//! Start-up, in order:
//! 1. bind every listener once per shard with `SO_REUSEPORT` (on the main thread, so a port in
//!    use fails start-up with a clear error, and an ephemeral port `:0` resolves to one port that
//!    every shard then shares);
//! 2. give each shard a mailbox ([`crate::control`]);
//! 3. spawn one `LocalExecutor` per shard, pinned to its core, with the glommio knobs from the
//!    configuration; the shard builds its own routes, pools and buffers ([`shard`]) and serves.
//!
//! The main thread then waits for signals ([`signals`]) and turns them into mailbox commands.

pub mod bootstrap;
pub mod signals;

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};

use crate::config::{Config, IoMode, Plan};
use crate::control::{Command, Mailbox};
use crate::error::{Error, ErrorKind, Side};
use crate::io::{IoSettings, ListenOptions, Mechanism, socket};

/// A running coregate: its shards and the addresses its listeners are bound to.
pub struct Server {
    shards: Vec<ShardHandle>,
    listeners: Vec<(Box<str>, SocketAddr)>,
}

struct ShardHandle {
    mailbox: Arc<Mailbox>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
}

/// One listener's sockets, one per shard.
pub(crate) struct BoundListener {
    pub name: Box<str>,
    pub fd: OwnedFd,
}

impl Server {
    /// Binds the listeners and starts every shard of `plan`.
    pub fn start(config: Arc<Config>, plan: &Plan) -> Result<Server, Error> {
        let shard_count = plan.shards.len();
        let mut per_shard: Vec<Vec<BoundListener>> = (0..shard_count).map(|_| Vec::new()).collect();
        let mut listeners = Vec::new();
        for listener in &config.listeners {
            let options = ListenOptions {
                backlog: listener.backlog,
                defer_accept: listener.defer_accept,
            };
            let mut addr = listener.bind;
            for sockets in per_shard.iter_mut() {
                let fd = socket::bind_listener(addr, options)
                    .map_err(|err| bind_error(&err, &listener.name, addr))?;
                // The first socket fixes the port (`:0` picks one); the others share it.
                addr = socket::local_addr(fd.as_raw_fd())
                    .map_err(|err| bind_error(&err, &listener.name, addr))?;
                sockets.push(BoundListener {
                    name: listener.name.clone(),
                    fd,
                });
            }
            listeners.push((listener.name.clone(), addr));
        }

        let io = io_settings(&config);
        let mut shards = Vec::with_capacity(shard_count);
        for (shard_plan, sockets) in plan.shards.iter().zip(per_shard) {
            let mailbox = Mailbox::new().map_err(|err| {
                Error::from_io(&err, Side::Internal, "cannot create a shard mailbox")
            })?;
            let glommio = &config.runtime.glommio;
            let mut builder = LocalExecutorBuilder::new(Placement::Fixed(shard_plan.cpu))
                .name(&format!("coregate-{}", shard_plan.index))
                .io_memory(glommio.io_memory)
                .ring_depth(glommio.ring_depth as usize)
                .preempt_timer(glommio.preempt_timer);
            if let Some(spin) = glommio.spin_before_park {
                builder = builder.spin_before_park(spin);
            }
            let shard_config = config.clone();
            let shard_mailbox = mailbox.clone();
            let index = shard_plan.index;
            let thread = builder
                .spawn(move || {
                    bootstrap::run_shard(index, shard_config, io, sockets, shard_mailbox)
                })
                .map_err(|_| {
                    Error::new(
                        ErrorKind::Io,
                        Side::Internal,
                        "cannot start a shard executor",
                    )
                })?;
            shards.push(ShardHandle {
                mailbox,
                thread: Some(thread),
            });
        }
        Ok(Server { shards, listeners })
    }

    /// The address a listener is bound to (useful with port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| &**n == name)
            .map(|(_, addr)| *addr)
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Asks every shard to drain: stop accepting, finish in-flight requests, close idle
    /// connections, and exit within `grace`.
    pub fn shutdown(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        for shard in &self.shards {
            // A full mailbox means a shutdown is already queued.
            let _ = shard.mailbox.send(Command::Shutdown { deadline });
        }
    }

    /// Waits for every shard to exit.
    pub fn wait(mut self) {
        for shard in &mut self.shards {
            if let Some(thread) = shard.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.shards.iter().any(|shard| shard.thread.is_some()) {
            self.shutdown(Duration::ZERO);
            for shard in &mut self.shards {
                if let Some(thread) = shard.thread.take() {
                    let _ = thread.join();
                }
            }
        }
    }
}

fn bind_error(err: &std::io::Error, _listener: &str, _addr: SocketAddr) -> Error {
    Error::from_io(err, Side::Config, "cannot bind a listener")
}

/// The shard I/O settings a configuration asks for.
pub(crate) fn io_settings(config: &Config) -> IoSettings {
    let runtime = &config.runtime;
    IoSettings {
        mechanism: match runtime.io {
            IoMode::Uring => Mechanism::Uring,
            IoMode::Glommio => Mechanism::Glommio,
        },
        ring_entries: runtime.ring_entries,
        buffer_size: runtime.buffer_size,
        buffers: runtime.buffers_per_shard,
        idle_wait: runtime.idle_wait,
    }
}
