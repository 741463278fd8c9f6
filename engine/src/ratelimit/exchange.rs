//! The messages of the node-wide share exchange, and the share itself.
//!
//! Owns the plain data that crosses cores: a shard's [`DemandReport`] to the control plane and
//! the control plane's [`ShareUpdate`] back. They are `Send` values (vectors of integers, no
//! `Rc`, no references into a shard), built and consumed in the background, never on the
//! request path. This module carries nothing itself: `control` moves the messages, the
//! [`super::Limiter`] produces and applies them, [`super::SharePlan`] computes them.

use super::key::KeyHash;

/// The most keys one [`DemandReport`] lists and one [`ShareUpdate`] carries, per limiter and
/// shard. Bounds both messages and the per-shard share table (24 bytes a key). Hot keys beyond
/// it keep the even split, which never admits more than the node-wide rate in total; the report
/// counts them in [`DemandReport::unlisted`].
pub const MAX_SHARED_KEYS: usize = 1_024;

/// A fraction of a key's node-wide rate, in parts per million.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Share(u32);

impl Share {
    /// Parts in a whole share.
    pub const SCALE: u32 = 1_000_000;
    /// The whole rate.
    pub const ONE: Share = Share(Share::SCALE);

    /// A share from parts per million, at least one part and at most [`Share::ONE`].
    pub const fn from_ppm(ppm: u32) -> Share {
        Share(if ppm == 0 {
            1
        } else if ppm > Share::SCALE {
            Share::SCALE
        } else {
            ppm
        })
    }

    pub const fn ppm(self) -> u32 {
        self.0
    }

    /// Each shard's share before any exchange: `1 / shards`.
    pub const fn even(shards: usize) -> Share {
        let shards = if shards == 0 { 1 } else { shards };
        Share::from_ppm(Share::SCALE / shards as u32)
    }

    /// The emission interval of this share of a rate whose interval is `node_interval`:
    /// `node_interval / share`, rounded up (never looser than the share).
    pub const fn interval(self, node_interval: u64) -> u64 {
        let scaled = node_interval as u128 * Share::SCALE as u128;
        let interval = scaled.div_ceil(self.0 as u128);
        if interval > u64::MAX as u128 {
            u64::MAX
        } else {
            interval as u64
        }
    }
}

/// One key's traffic on one shard during one report interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyDemand {
    pub key: KeyHash,
    /// Requests checked, admitted or not: the demand.
    pub attempts: u32,
    /// Requests admitted.
    pub admitted: u32,
}

/// What one shard saw of one limiter's keys since its previous report: every key that was
/// refused at least once or used a large part of its local share
/// ([`super::REPORT_USAGE_PERCENT`]). Keys not listed had little traffic on this shard.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DemandReport {
    /// At most [`MAX_SHARED_KEYS`] keys.
    pub keys: Vec<KeyDemand>,
    /// Hot keys left out because the list was full.
    pub unlisted: u32,
}

/// One key's share on the shard receiving the update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyShare {
    pub key: KeyHash,
    pub share: Share,
}

/// The shares one shard enforces from now on, for one limiter. Keys not listed get the even
/// split; a key listed in the previous update and not in this one returns to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShareUpdate {
    /// At most [`MAX_SHARED_KEYS`] keys; more are ignored.
    pub shares: Vec<KeyShare>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send + 'static>() {}

    #[test]
    fn messages_can_cross_threads() {
        assert_send::<DemandReport>();
        assert_send::<ShareUpdate>();
    }

    #[test]
    fn shares_scale_intervals() {
        assert_eq!(Share::even(4).ppm(), 250_000);
        assert_eq!(Share::even(0), Share::ONE);
        assert_eq!(Share::from_ppm(0).ppm(), 1);
        assert_eq!(Share::from_ppm(2_000_000), Share::ONE);
        assert_eq!(Share::ONE.interval(10_000_000), 10_000_000);
        assert_eq!(Share::even(4).interval(10_000_000), 40_000_000);
        assert_eq!(Share::from_ppm(3).interval(1), 333_334);
        assert_eq!(Share::from_ppm(1).interval(u64::MAX), u64::MAX);
    }
}
