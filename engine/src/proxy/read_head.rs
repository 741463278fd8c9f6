//! `read_head`: waiting for a request (holding no buffer while the connection idles), then
//! receiving until its whole head is in the connection buffer and parsing it. A head that does
//! not parse, or does not arrive in time, is answered and the connection closes: what follows
//! on it cannot be trusted.

use std::io;

use crate::http1::{self, Parsed, RequestHead};
use crate::shard::registry::Waiting;
use crate::snapshot::Snapshot;

use super::record::Outcome;
use super::respond::{BodyState, Refusal};
use super::{Session, Step};

impl Session {
    /// Waits, holding no buffer, for the first bytes of the next request: up to the header
    /// timeout for a connection's first request, the keep-alive timeout after that. A
    /// keep-alive connection that times out, closes or is shut down by a drain just ends; a new
    /// connection's first request is still awaited while the shard drains, for the drain's
    /// grace (its client connected before the drain, and its request may be on the way; the
    /// answer then says `connection: close`).
    pub(super) async fn wait_for_request(&mut self) -> Step {
        let waiting = if self.served == 0 {
            Waiting::FirstRequest
        } else {
            Waiting::NextRequest
        };
        if waiting == Waiting::NextRequest && self.shard.draining() {
            return Step::Close;
        }
        // A block, so the copied timeouts are not kept in the future across the wait.
        let wait = {
            let timeouts = &self.shard.snapshot().timeouts;
            match waiting {
                Waiting::FirstRequest => timeouts.header,
                _ => timeouts.keepalive,
            }
        };
        self.shard.set_waiting(self.key, waiting);
        let received = self
            .client
            .recv_later(&mut self.rb, Some(self.shard.io.now() + wait))
            .await;
        self.shard.set_waiting(self.key, Waiting::Busy);
        match received {
            Ok(n) if n > 0 => {
                self.first_byte = Some(self.shard.io.now());
                Step::Continue
            }
            _ => Step::Close,
        }
    }

    /// Receives until a whole head is buffered (within the header timeout counted from its first
    /// byte) and parses it; its fields are in the shard's scratch until the next await.
    pub(super) async fn read_head(
        &mut self,
        snapshot: &Snapshot,
        outcome: &mut Outcome,
    ) -> Result<RequestHead, Step> {
        let deadline = outcome.started + snapshot.timeouts.header;
        loop {
            let parsed = http1::parse_request(
                self.rb.data(),
                &mut self.scanner,
                &snapshot.limits,
                &mut self.shard.scratch().fields,
            );
            let refusal = match parsed {
                Ok(Parsed::Complete(head)) => return Ok(head),
                Ok(Parsed::Partial) => match self.client.recv(&mut self.rb, Some(deadline)).await {
                    Ok(0) => return Err(Step::Close),
                    Ok(_) => continue,
                    Err(err) => match err.kind() {
                        io::ErrorKind::TimedOut => Refusal::HEAD_TIMEOUT,
                        io::ErrorKind::OutOfMemory => Refusal::NO_BUFFER,
                        _ => return Err(Step::Close),
                    },
                },
                Err(err) => Refusal::of_head(err),
            };
            // A refused head counts as a request: those are what an attack sends.
            self.shard.metrics.request();
            return Err(self
                .refuse(&refusal, None, BodyState::Unread, outcome)
                .await);
        }
    }
}
