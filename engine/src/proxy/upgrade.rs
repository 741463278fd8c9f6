//! Protocol switches (`Upgrade`, RFC 9110 sec. 7.8): which requests may ask for one upstream,
//! whether the upstream's `101` names a protocol the client offered, and the tunnel the two
//! connections become after it.
//!
//! A switch is relayed only for requests without a body, and never to `h2c`: RFC 9113 sec. 3.1
//! removed it, and a proxy passing it on lets a client smuggle HTTP/2 past routing.

use crate::http1::Span;
use crate::io::{Outbound, ReadBuf};
use crate::request::Body;
use crate::snapshot::ClientTimeouts;
use crate::upstream::Checkout;

use super::record::Outcome;
use super::response::ResponsePlan;
use super::{Session, Step};

/// The value of a request's `Upgrade` field, kept for checking the upstream's `101` (the head
/// it came from is gone by then). Longer lists than this are not relayed.
#[derive(Clone, Copy)]
pub struct Protocols {
    bytes: [u8; Protocols::MAX],
    len: u8,
}

impl Protocols {
    const MAX: usize = 64;

    fn new(value: &[u8]) -> Option<Protocols> {
        let mut bytes = [0u8; Protocols::MAX];
        bytes.get_mut(..value.len())?.copy_from_slice(value);
        Some(Protocols {
            bytes,
            len: value.len() as u8,
        })
    }

    /// Whether `chosen` (a `101`'s `Upgrade`) is one of these, compared as tokens without
    /// regard to case (RFC 9110 sec. 7.8), and is not `h2c`.
    pub fn offers(&self, chosen: &[u8]) -> bool {
        let chosen = chosen.trim_ascii();
        !names_h2c(chosen)
            && self.bytes[..self.len as usize]
                .split(|&b| b == b',')
                .any(|offered| offered.trim_ascii().eq_ignore_ascii_case(chosen))
    }
}

/// The upgrade a request asks for and coregate relays, if any: the protocols to name upstream
/// and the copy kept for checking the `101`.
pub fn relayed(upgrade: Option<Span>, buf: &[u8], body: Body) -> Option<(&[u8], Protocols)> {
    let protocols = upgrade?.of(buf);
    if body.follows() || names_h2c(protocols) {
        return None;
    }
    Some((protocols, Protocols::new(protocols)?))
}

/// Whether an `Upgrade` value lists `h2c` among its protocols.
pub fn names_h2c(protocols: &[u8]) -> bool {
    protocols.split(|&b| b == b',').any(|protocol| {
        let name = protocol.trim_ascii();
        let name = name.split(|&b| b == b'/').next().unwrap_or(name);
        name.eq_ignore_ascii_case(b"h2c")
    })
}

impl Session {
    /// After a `101`: sends the client the switch (with whatever the upstream already sent of
    /// the new protocol), the upstream whatever the client sent behind its request, then joins
    /// the two connections until both finish or they idle out. Neither connection carries HTTP
    /// again.
    pub(super) async fn tunnel(
        &mut self,
        checkout: &mut Checkout,
        urb: &mut ReadBuf,
        plan: ResponsePlan,
        timeouts: &ClientTimeouts,
        outcome: &mut Outcome,
    ) -> Step {
        let shard = self.shard.clone();
        let pool = shard.io.pool().clone();
        outcome.status = plan.status;
        let plan_interim = plan.interim_bytes;
        let mut out = Outbound::new();
        out.push(plan.head, 0, plan.head_len as u32);
        if !urb.is_empty() && !out.take_from(urb, urb.len(), &pool) {
            return Step::Close;
        }
        let sent_head = out.len_bytes() as u64;
        let deadline = Some(shard.io.now() + timeouts.send);
        if self.client.send(&mut out, deadline).await.is_err() {
            return Step::Close;
        }
        outcome.bytes = plan_interim + sent_head;
        out.clear();
        if !self.rb.is_empty() {
            let early = self.rb.len();
            if !out.take_from(&mut self.rb, early, &pool) {
                return Step::Close;
            }
            let deadline = Some(shard.io.now() + timeouts.send);
            if checkout.conn().send(&mut out, deadline).await.is_err() {
                return Step::Close;
            }
            out.clear();
        }
        // The exchange's latency is the switch itself; the tunnel's life is not a response time.
        outcome.finished = Some(shard.io.now());
        let (carried, _ended) =
            crate::io::tunnel::join(&mut self.client, checkout.conn(), timeouts.tunnel_idle).await;
        outcome.bytes += carried.backward;
        Step::Close
    }
}
