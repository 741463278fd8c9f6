//! `handshake`: the TLS handshake of a connection to a TLS listener, before its first request.
//! Runs over the shard's ring like any receive (see `io/tls.rs`), within the header timeout: a
//! client that connects and stalls costs a socket until then, as a plain one waiting to send
//! its head does. The handshake's facts (SNI, ALPN, version, resumption) go into the
//! connection's context for `x-forwarded-proto`, the access log and rate-limit keys; the
//! outcome is counted (`coregate_tls_handshakes_total`, `..._failures_total` by reason).

use crate::shard::registry::Waiting;

use super::{Session, Step};

impl Session {
    pub(super) async fn handshake(&mut self) -> Step {
        let timeout = self.shard.snapshot().timeouts.header;
        let deadline = self.shard.io.now() + timeout;
        // Like a plain connection waiting for its first request: a drain gives it a short grace.
        self.shard.set_waiting(self.key, Waiting::FirstRequest);
        let handshake = self.client.handshake(Some(deadline)).await;
        self.shard.set_waiting(self.key, Waiting::Busy);
        match handshake {
            Ok(facts) => {
                self.shard.metrics.tls_handshake(&facts);
                self.context.tls = Some(Box::new(facts));
                Step::Continue
            }
            Err(failure) => {
                self.shard.metrics.tls_failure(failure);
                Step::Close
            }
        }
    }
}
