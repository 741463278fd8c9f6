//! `read_head`: waiting for a request (holding no buffer while the connection idles), then
//! receiving until its whole head is in the connection buffer and parsing it. A head that does
//! not parse, or does not arrive in time, is answered and the connection closes: what follows
//! on it cannot be trusted.

use std::io;
use std::time::Duration;

use crate::http1::{self, Parsed, RequestHead};
use crate::io::Expect;
use crate::shard::registry::Waiting;
use crate::snapshot::Snapshot;

use super::park::PARK_AFTER;
use super::record::Outcome;
use super::respond::{BodyState, Refusal};
use super::{Idle, Session, Step};

impl Session {
    /// Waits, holding no buffer, for the first bytes of the next request: up to the header
    /// timeout for a connection's first request, the keep-alive timeout after that. A
    /// keep-alive connection that times out, closes or is shut down by a drain just ends; one
    /// still quiet after [`PARK_AFTER`] parks (`park.rs`). A new connection's first request is
    /// still awaited while the shard drains, for the drain's grace (its client connected before
    /// the drain, and its request may be on the way; the answer then says `connection: close`).
    pub(super) async fn wait_for_request(&mut self) -> Idle {
        let waiting = if self.served == 0 {
            Waiting::FirstRequest
        } else {
            Waiting::NextRequest
        };
        if waiting == Waiting::NextRequest && self.shard.draining() {
            return Idle::Close;
        }
        self.shard.set_waiting(self.key, waiting);
        // Only flags are kept across the wait: it is what every idle connection holds.
        let mut quiet_a_while = false;
        let received = loop {
            let (wait, parks) = self.next_wait(waiting, quiet_a_while);
            let deadline = self.shard.io.now() + wait;
            match self
                .client
                .recv_expecting(&mut self.rb, Some(deadline), Expect::Idle)
                .await
            {
                Err(err) if parks && err.kind() == io::ErrorKind::TimedOut => {
                    let (rest, _) = self.next_wait(waiting, true);
                    if !self.client.tls_holds_buffer() {
                        return Idle::Park(self.shard.io.now() + rest);
                    }
                    // Part of a TLS record is at hand: the rest should follow; no parking.
                    quiet_a_while = true;
                }
                received => break received,
            }
        };
        match received {
            Ok(n) if n > 0 => {
                self.request_began();
                Idle::Request
            }
            _ => Idle::Close,
        }
    }

    /// The first bytes of a request arrived: the connection is busy (a drain lets it finish),
    /// and the request's time counts from now.
    pub(super) fn request_began(&mut self) {
        self.shard.set_waiting(self.key, Waiting::Busy);
        self.first_byte = Some(self.shard.io.now());
    }

    /// How long to wait for a request's first bytes, and whether the connection parks if none
    /// came by then: a keep-alive connection waits [`PARK_AFTER`] in its task, then (parked, or
    /// after `quiet_a_while`) the rest of the keep-alive timeout, counted from about when that
    /// first wait ended.
    fn next_wait(&self, waiting: Waiting, quiet_a_while: bool) -> (Duration, bool) {
        let timeouts = &self.shard.snapshot().timeouts;
        match waiting {
            Waiting::FirstRequest => (timeouts.header, false),
            _ if timeouts.keepalive <= PARK_AFTER => (timeouts.keepalive, false),
            _ if quiet_a_while => (timeouts.keepalive - PARK_AFTER, false),
            _ => (PARK_AFTER, true),
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
