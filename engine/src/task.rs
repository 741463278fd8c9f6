//! Shard-local tasks. Spawning one tells the shard's ring driver, so it does not sleep in the
//! ring before the new task had its first turn (see [`crate::io::note_local_wake`]); every task
//! is wrapped so the allocation tests can count what shard work allocates.

use std::future::Future;

use crate::io::{Tracked, note_local_wake};

/// Spawns a task on the current shard, detached: it runs until it returns.
pub fn spawn<F: Future<Output = ()> + 'static>(task: F) {
    glommio::spawn_local(Tracked::new(task)).detach();
    note_local_wake();
}
