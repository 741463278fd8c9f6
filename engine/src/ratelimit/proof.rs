//! Proofs of the two resource promises of the module: a check allocates nothing, and no number
//! of distinct keys grows a limiter past its memory cap.

use std::net::{IpAddr, Ipv6Addr};

use super::*;
use crate::alloc_count::allocations_during;

const SEED: HashSeed = HashSeed::new(0x5eed, 0xcafe);
const MS: u64 = 1_000_000;

fn limiter(key: &str, keys_per_shard: usize, shards: usize) -> Limiter {
    let quota = Quota::new(Rate::parse("100/s").unwrap(), Some(20)).unwrap();
    let mut settings = LimiterSettings::new(quota, KeySpec::parse(key).unwrap(), shards);
    settings.keys_per_shard = keys_per_shard;
    Limiter::new(&settings, SEED)
}

#[test]
fn checks_allocate_nothing() {
    let mut limiter = limiter("header:x-api-key", DEFAULT_KEYS_PER_SHARD, 2);
    let keys: Vec<Vec<u8>> = (0..5_000)
        .map(|i| format!("key-{i:08}").into_bytes())
        .collect();
    let update = ShareUpdate {
        shares: keys[..100]
            .iter()
            .map(|k| KeyShare {
                key: limiter.hash(LimitKey::Header(k)),
                share: Share::from_ppm(800_000),
            })
            .collect(),
    };
    let mut report = DemandReport {
        keys: Vec::with_capacity(MAX_SHARED_KEYS),
        unlisted: 0,
    };
    let ((), allocations) = allocations_during(|| {
        let mut now = 0;
        for round in 0..20 {
            for (i, key) in keys.iter().enumerate() {
                now += 1_000;
                // Known keys, new keys, refused keys, evictions: every path of check.
                let decision = limiter.check(LimitKey::Header(key), now);
                let _ = limiter.rate_limit_value(&decision);
                let _ = decision.retry_after();
                if i % 7 == 0 {
                    limiter.check(LimitKey::Header(key), now);
                }
            }
            limiter.check(LimitKey::ClientIp(IpAddr::V6(Ipv6Addr::LOCALHOST)), now);
            // The shard's side of a round, with a reused report and a prepared update.
            limiter.take_report_into(&mut report);
            if round % 2 == 0 {
                limiter.apply_shares(&update);
            }
        }
    });
    assert_eq!(allocations, 0, "the check path allocated");
    assert!(limiter.counters().allowed > 0 && limiter.counters().limited > 0);
}

#[test]
fn a_million_distinct_keys_stay_within_the_cap() {
    let mut limiter = limiter("client_ip", DEFAULT_KEYS_PER_SHARD, 1);
    let memory = limiter.memory_bytes();
    assert_eq!(memory, DEFAULT_MEMORY_CAP_BYTES);

    // A client over its limit, refused before the flood starts.
    let abuser = LimitKey::ClientIp("198.51.100.7".parse().unwrap());
    let start = 1_000 * MS;
    while limiter.check(abuser, start).is_allowed() {}

    // A million addresses, one request each, all within 5 ms: none of them idle yet.
    let ((), allocations) = allocations_during(|| {
        for i in 0..1_000_000u64 {
            let address = Ipv6Addr::from((0x2001_0db8u128 << 96) | (u128::from(i) << 64));
            let now = start + i * 5;
            let _ = limiter.check(LimitKey::ClientIp(IpAddr::V6(address)), now);
        }
    });
    assert_eq!(allocations, 0, "a flood must not allocate");
    assert_eq!(limiter.memory_bytes(), memory);
    assert_eq!(limiter.capacity(), DEFAULT_KEYS_PER_SHARD);
    let counters = limiter.counters();
    assert!(
        counters.evictions > 900_000,
        "the flood evicted: {counters:?}"
    );
    assert!(limiter.active_keys(start + 5 * MS) <= limiter.capacity());
    // The refused client's TAT was ahead of every newcomer's, so it was never evicted: 5 ms
    // on, it still waits the 5 ms left of its 10 ms interval.
    assert_eq!(
        limiter.check(abuser, start + 5 * MS),
        Decision::Limited {
            retry_after_nanos: 5 * MS
        }
    );
}
