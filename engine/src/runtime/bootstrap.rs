//! What runs on each shard's thread, from start to exit: set up its I/O, build its state from
//! the configuration, start the driver, one accept loop per listener and the control loop, and
//! on `Shutdown` drain and stop.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::control::{Command, Mailbox};
use crate::io::{IoSettings, IoShard, Tracked, note_local_wake};
use crate::listener;
use crate::shard::Shard;

use super::BoundListener;

/// How often a draining shard checks whether its connections are gone.
const DRAIN_POLL: Duration = Duration::from_millis(20);

/// Spawns a task on the current shard. The I/O driver is told, so it does not sleep before the
/// new task had its first turn.
pub fn spawn<F: Future<Output = ()> + 'static>(task: F) {
    glommio::spawn_local(Tracked::new(task)).detach();
    note_local_wake();
}

/// The shard's main task.
pub(crate) async fn run_shard(
    index: usize,
    config: Arc<Config>,
    io_settings: IoSettings,
    listeners: Vec<BoundListener>,
    mailbox: Arc<Mailbox>,
) {
    let io = match IoShard::new(&io_settings) {
        Ok(io) => io,
        Err(err) => {
            eprintln!(
                "coregate: shard {index}: cannot set up {:?} I/O: {err}",
                io_settings.mechanism
            );
            return;
        }
    };
    let driver = glommio::spawn_local(Tracked::new({
        let io = io.clone();
        async move { io.drive().await }
    }));
    let shard = Rc::new(Shard::new(index, io.clone(), config));
    for bound in listeners {
        let listener = match io.listener_from(bound.fd) {
            Ok(listener) => listener,
            Err(err) => {
                eprintln!("coregate: shard {index}: listener {:?}: {err}", bound.name);
                continue;
            }
        };
        spawn(listener::accept_loop(shard.clone(), listener));
    }
    let mut inbox = match mailbox.inbox(&io) {
        Ok(inbox) => inbox,
        Err(err) => {
            eprintln!("coregate: shard {index}: cannot open its mailbox: {err}");
            return;
        }
    };
    let deadline = Tracked::new(async {
        loop {
            match inbox.next().await {
                Ok(Command::Shutdown { deadline }) => return deadline,
                Err(err) => {
                    eprintln!("coregate: shard {index}: mailbox failed ({err}); shutting down");
                    return Instant::now();
                }
            }
        }
    })
    .await;

    // Drain: stop accepting, close idle connections, let busy ones finish their response.
    shard.start_drain();
    Tracked::new(async {
        while shard.open_connections() > 0 && Instant::now() < deadline {
            io.sleep(DRAIN_POLL).await;
        }
    })
    .await;
    io.stop();
    driver.await;
}
