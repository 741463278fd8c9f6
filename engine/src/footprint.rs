//! What a client connection and an exchange hold in coregate's memory, from this build's own
//! sizes, so that `coregate check` can tell an operator how to size `max_connections` and
//! `buffers_per_shard`. The kernel's socket buffers (`net.ipv4.tcp_rmem` and `tcp_wmem`) come
//! on top, as they do for every proxy.

use std::fmt;

use crate::config::units::Size;
use crate::config::{Config, RouteAction};
use crate::http1::{CHUNK_END, MAX_CHUNK_HEADER};
use crate::io::{parked_receive_bytes, server_session_bytes, slot_bytes};
use crate::proxy::{PARK_AFTER, connection_future_bytes, exchange_frame_bytes, parked_entry_bytes};
use crate::shard::registry;

/// What glommio adds to each task's future in the same allocation: its header (executor
/// handle, state, reference count, join waker, vtable) and the scheduling closure. Checked
/// against a spawn in the tests below.
pub const EXECUTOR_TASK_OVERHEAD: usize = 64;

/// I/O buffers an exchange holds at most at once without request buffering: the client's
/// receive buffer, the forwarded head, the upstream's receive buffer and the response head.
pub const EXCHANGE_BUFFERS: usize = 4;

/// The memory of one connection and one exchange on a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footprint {
    /// An idle keep-alive connection, parked (after [`PARK_AFTER`] of idling): its entry in
    /// the shard's parked table, the deadline link of its parked receive (which takes no ring
    /// slot) and its entry in the shard's connection table. No task, no I/O buffer.
    pub idle_connection: usize,
    /// The same connection in its first [`PARK_AFTER`] of idling, before it parks: its task
    /// and its receive's ring slot instead.
    pub idle_unparked: usize,
    /// What an idle HTTPS connection adds: the TLS layer and its record keys.
    pub tls_session: usize,
    /// An exchange's frame (the state of a request in progress), allocated once per exchange
    /// the shard ever ran at once and reused.
    pub exchange_frame: usize,
    /// I/O buffers an exchange holds at most, with the largest `request_buffering` of a route.
    pub exchange_buffers: usize,
    pub buffer_size: usize,
    pub buffers_per_shard: usize,
}

impl Footprint {
    pub fn of(config: &Config) -> Footprint {
        let buffer_size = config.runtime.buffer_size;
        let buffered = config
            .routes
            .iter()
            .filter(|route| matches!(route.action, RouteAction::Upstream { .. }))
            .map(|route| route.request_buffering)
            .max()
            .unwrap_or(0);
        // A chunked body is decoded into buffers that keep room to be framed as chunks after
        // all (`proxy/decoded.rs`): it may take one buffer more than its size says.
        let piece = buffer_size
            .saturating_sub(MAX_CHUNK_HEADER + CHUNK_END.len())
            .max(1);
        let buffered_buffers = buffered.div_ceil(piece as u64) as usize;
        let registered = registry::entry_bytes();
        Footprint {
            idle_connection: parked_entry_bytes() + parked_receive_bytes() + registered,
            idle_unparked: heap_block(connection_future_bytes() + EXECUTOR_TASK_OVERHEAD)
                + slot_bytes()
                + registered,
            tls_session: server_session_bytes(),
            exchange_frame: exchange_frame_bytes(),
            exchange_buffers: EXCHANGE_BUFFERS + buffered_buffers,
            buffer_size,
            buffers_per_shard: config.runtime.buffers_per_shard,
        }
    }

    /// Exchanges a shard's buffer pool serves at once before one waits for a buffer (`503`).
    pub fn exchanges_per_pool(&self) -> usize {
        self.buffers_per_shard / self.exchange_buffers.max(1)
    }
}

/// What the system allocator takes for a block of `n` bytes: glibc adds an 8-byte header and
/// rounds to 16 bytes, 32 at least.
fn heap_block(n: usize) -> usize {
    (n + 8).next_multiple_of(16).max(32)
}

impl fmt::Display for Footprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "memory       per idle connection {} B (HTTPS: {} B more; {} B in its first {} s \
             idle), kernel socket buffers apart",
            self.idle_connection,
            self.tls_session,
            self.idle_unparked,
            PARK_AFTER.as_secs()
        )?;
        write!(
            f,
            "             per exchange a {} B frame and up to {} I/O buffers ({}): the {} \
             buffers of a shard serve {} exchanges at once",
            self.exchange_frame,
            self.exchange_buffers,
            Size((self.exchange_buffers * self.buffer_size) as u64),
            self.buffers_per_shard,
            self.exchanges_per_pool()
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{EXECUTOR_TASK_OVERHEAD, heap_block};
    use crate::alloc_count::bytes_allocated_during;
    use crate::io::testing::on_executor;

    /// The task overhead the footprint adds is at least what glommio allocates beyond a
    /// future when it spawns one.
    #[test]
    fn a_spawned_task_costs_its_future_and_the_executor_overhead() {
        on_executor(Duration::from_secs(10), "spawning", || async {
            let padding = [7u8; 200];
            let future = async move {
                std::hint::black_box(&padding);
                futures_lite::future::yield_now().await;
            };
            let size = std::mem::size_of_val(&future);
            let (task, bytes) = bytes_allocated_during(|| glommio::spawn_local(future));
            task.await;
            let overhead = bytes as usize - size;
            assert!(
                overhead <= EXECUTOR_TASK_OVERHEAD,
                "a task of a {size}-byte future took {bytes} bytes"
            );
            assert!(
                overhead + 32 > EXECUTOR_TASK_OVERHEAD,
                "overhead {overhead}: lower it"
            );
        });
    }

    #[test]
    fn blocks_round_as_the_allocator_does() {
        assert_eq!(heap_block(1), 32);
        assert_eq!(heap_block(24), 32);
        assert_eq!(heap_block(25), 48);
        assert_eq!(heap_block(448), 464);
    }
}
