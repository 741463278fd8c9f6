//! The group's pick with health applied: skipping, panic mode, no endpoint, ejection limits,
//! retries going elsewhere, slow start, and a shard's view following the verdicts.

use super::*;

use crate::context::Scheme;
use crate::http1::Method;
use crate::request::{Body, Fields};

pub(crate) fn settings() -> UpstreamSettings {
    UpstreamSettings {
        outlier: OutlierSettings {
            consecutive_failures: 1,
            consecutive_5xx: 5,
            success_rate: None,
            base_ejection_time: Duration::from_secs(10),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 50,
        },
        panic_threshold: 50,
        slow_start: Duration::ZERO,
        breakers: Breakers {
            max_connections: 100,
            max_pending: 100,
            max_requests: 100,
            max_retries: 100,
        },
        retry_budget: RetryBudget {
            percent: 20,
            min_concurrency: 3,
        },
    }
}

pub(crate) fn group(n: usize, balance: Balance, settings: UpstreamSettings) -> UpstreamGroup {
    let mut records = HealthRecords::default();
    let (state, _) = records.upstream("up");
    let pool_settings = PoolSettings {
        max_idle: 4,
        idle_timeout: Duration::from_secs(60),
        max_requests: 0,
    };
    let endpoints = (0..n)
        .map(|i| {
            let addr: SocketAddr = format!("127.0.0.1:{}", 9000 + i).parse().unwrap();
            Endpoint::new(
                EndpointPool::new(addr, pool_settings),
                state.endpoint(addr, None),
                1,
            )
        })
        .collect();
    let timeouts = UpstreamTimeouts {
        connect: Duration::from_secs(1),
        response: Duration::from_secs(1),
        body: Duration::from_secs(1),
    };
    let hashing = Hashing {
        on: hash::HashOn::ClientIp,
        balance_factor: None,
    };
    UpstreamGroup::new(
        "up".into(),
        endpoints,
        timeouts,
        balance,
        Some(&hashing),
        settings,
        state,
        0,
    )
}

fn request() -> RequestView<'static> {
    RequestView {
        method: Method::Get,
        scheme: Scheme::Http,
        authority: b"example.com",
        path: b"/",
        query: None,
        fields: Fields::new(b"", &[]),
        body: Body::None,
        client: "192.0.2.1".parse().unwrap(),
    }
}

fn picks(group: &UpstreamGroup, n: usize, now: Instant) -> Vec<usize> {
    (0..n)
        .map(|_| group.pick(&request(), now).unwrap().index)
        .collect()
}

#[test]
fn round_robin_rotates_and_skips_an_ejected_endpoint() {
    let group = group(3, Balance::RoundRobin, settings());
    let now = Instant::now();
    assert_eq!(picks(&group, 3, now), vec![0, 1, 2]);
    assert_eq!(
        group.observe(1, Observed::GatewayFailure, now),
        Some(Trip::ConsecutiveFailures)
    );
    assert_eq!(picks(&group, 4, now), vec![0, 2, 0, 2]);
    // The ejection ends by itself after the base ejection time.
    let later = now + Duration::from_secs(10);
    assert_eq!(picks(&group, 3, later), vec![0, 1, 2]);
}

#[test]
fn no_more_than_max_ejection_percent_are_ejected() {
    let group = group(3, Balance::RoundRobin, settings());
    let now = Instant::now();
    assert!(group.observe(0, Observed::GatewayFailure, now).is_some());
    assert_eq!(
        group.observe(1, Observed::GatewayFailure, now),
        None,
        "50% of 3 is 1"
    );
    assert!(group.endpoint(1).state().available(now));
}

#[test]
fn below_the_panic_threshold_every_endpoint_takes_requests() {
    let group = group(2, Balance::RoundRobin, settings());
    let now = Instant::now();
    let until = now + Duration::from_secs(10);
    // The control plane's verdicts may eject beyond what one shard would.
    group.endpoint(0).state().eject(until, 1);
    assert_eq!(picks(&group, 2, now), vec![1, 1], "1 of 2 is not below 50%");
    group.endpoint(1).state().eject(until, 1);
    let spread = picks(&group, 4, now);
    assert!(spread.contains(&0) && spread.contains(&1), "{spread:?}");
}

#[test]
fn without_panic_mode_no_endpoint_is_unavailable_until_the_first_return() {
    let group = group(
        2,
        Balance::Random,
        UpstreamSettings {
            panic_threshold: 0,
            ..settings()
        },
    );
    let now = Instant::now();
    let first = now + Duration::from_secs(3);
    group
        .endpoint(0)
        .state()
        .eject(now + Duration::from_secs(8), 1);
    group.endpoint(1).state().eject(first, 1);
    let unavailable = group.pick(&request(), now).unwrap_err();
    assert_eq!(unavailable.until, Some(first));
    assert_eq!(group.pick(&request(), first).unwrap().index, 1);
}

#[test]
fn a_retry_goes_to_an_endpoint_not_yet_tried() {
    for balance in Balance::ALL {
        let group = group(3, balance, settings());
        let now = Instant::now();
        let choice = group.pick(&request(), now).unwrap();
        let mut tried = Tried::default();
        tried.add(choice.index);
        let second = group.pick_again(&choice, &tried, now).unwrap();
        assert_ne!(second, choice.index, "{balance:?}");
        tried.add(second);
        let third = group.pick_again(&choice, &tried, now).unwrap();
        assert!(third != choice.index && third != second, "{balance:?}");
        tried.add(third);
        assert_eq!(group.pick_again(&choice, &tried, now), None, "{balance:?}");
    }
}

#[test]
fn hashing_policies_send_a_client_to_the_same_endpoint() {
    for balance in [Balance::RingHash, Balance::Maglev] {
        let group = group(5, balance, settings());
        let now = Instant::now();
        let first = group.pick(&request(), now).unwrap().index;
        assert!(picks(&group, 20, now).iter().all(|&i| i == first));
        // Ejected: the client moves; back: it returns.
        group
            .endpoint(first)
            .state()
            .eject(now + Duration::from_secs(5), 1);
        group.refresh(now);
        let moved = group.pick(&request(), now).unwrap().index;
        assert_ne!(moved, first, "{balance:?}");
        let later = now + Duration::from_secs(5);
        group.endpoint(first).state().end_ejection();
        group.refresh(later);
        assert_eq!(group.pick(&request(), later).unwrap().index, first);
    }
}

#[test]
fn slow_start_ramps_a_returning_endpoints_share() {
    let group = group(
        2,
        Balance::RoundRobin,
        UpstreamSettings {
            slow_start: Duration::from_secs(10),
            ..settings()
        },
    );
    let now = Instant::now();
    let back = now + Duration::from_secs(1);
    group.endpoint(0).state().eject(back, 1);
    let count = |at: Instant| {
        (0..4_000)
            .filter(|_| group.pick(&request(), at).unwrap().index == 0)
            .count()
    };
    // Just back: about 10% of its weight; halfway: about half; then all of it.
    let share = |n: usize| n as f64 / 4_000.0;
    let just_back = share(count(back));
    assert!(just_back < 0.2, "{just_back}");
    let halfway = share(count(back + Duration::from_secs(5)));
    assert!((0.25..0.42).contains(&halfway), "{halfway}");
    let done = share(count(back + Duration::from_secs(10)));
    assert!((0.48..0.52).contains(&done), "{done}");
}

#[test]
fn least_request_avoids_the_busy_endpoint() {
    let group = group(3, Balance::LeastRequest, settings());
    let now = Instant::now();
    let load = group.load().clone();
    let busy: Vec<InFlight> = (0..5).map(|_| group.endpoint(2).start(&load)).collect();
    let chosen = picks(&group, 300, now);
    assert!(
        chosen.iter().all(|&i| i != 2),
        "P2C never picks the busier of two"
    );
    drop(busy);
    assert_eq!(load.requests(), 0);
}
