//! Criterion benchmark: what does choosing an endpoint cost, per policy, at 100 endpoints?
//!
//! Question: is `UpstreamGroup::pick` (health applied, the request's key read) under 50 ns for
//! every policy with 100 endpoints, and allocation-free? Measured with equal weights and with
//! weights 1 to 8, all endpoints healthy, for a GET with six header fields (the hashing
//! policies hash a header or the client's address, so the field lookup is part of the cost).
//!
//! Baselines: `naive/rotation` is the structure this replaced (a counter modulo the endpoint
//! count, no health); `naive/smooth_wrr` is NGINX's smooth weighted round-robin computed per
//! pick (a pass over every endpoint), which `round_robin` lays out once per snapshot instead.
//!
//! Before measuring, the bench checks with a counting allocator that picks allocate nothing.
//!
//! Run: `cargo bench -p coregate-bench --bench balance -- --warm-up-time 1 --measurement-time 2`
//!
//! Measured on a 2-core VM shared with other builds (load average 2-5): criterion means, each
//! carrying 2-3x of contention (the bare rotation took 3.5 ns here, about 1.2 ns on an idle
//! core). See bench/RESULTS.md, "Endpoint choice", for the analysis.
//!
//! | policy (100 endpoints) | equal weights | weights 1-8 |
//! |---|---|---|
//! | `round_robin` | 23-29 ns | 23-32 ns |
//! | `least_request` | 34 ns | 32-54 ns |
//! | `random` | 21-23 ns | 39-62 ns (noisy) |
//! | `ring_hash` on `header:x-user` | 48-51 ns | 47-51 ns |
//! | `ring_hash` on `client_ip` | 25 ns | 25 ns |
//! | `maglev` on `header:x-user` | 47-51 ns | 46-50 ns |
//! | `naive/rotation` (no health) | 3.5 ns | |
//! | `naive/smooth_wrr` (per pick, O(n)) | | 106 ns |

use std::cell::Cell;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coregate_bench::{CountingAllocator, allocations};
use coregate_engine::context::Scheme;
use coregate_engine::http1::{Field, HeadScanner, Limits, Parsed, parse_request};
use coregate_engine::request::{Body, Fields, RequestView};
use coregate_engine::upstream::hash::HashOn;
use coregate_engine::upstream::{
    Balance, Breakers, Endpoint, EndpointPool, Hashing, HealthRecords, OutlierSettings,
    PoolSettings, RetryBudget, UpstreamGroup, UpstreamSettings, UpstreamTimeouts,
};
use criterion::{Criterion, criterion_group, criterion_main};

/// Counts allocations so the bench can prove the hot path makes none.
#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const ENDPOINTS: usize = 100;

fn settings() -> UpstreamSettings {
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
            max_connections: 8192,
            max_pending: 8192,
            max_requests: 8192,
            max_retries: 1024,
        },
        retry_budget: RetryBudget {
            percent: 20,
            min_concurrency: 3,
        },
    }
}

/// A group of 100 endpoints balanced by `balance`, hashing `on`.
fn group(balance: Balance, weighted: bool, on: HashOn) -> UpstreamGroup {
    let mut records = HealthRecords::default();
    let (state, _) = records.upstream("bench");
    let pool = PoolSettings {
        max_idle: 16,
        idle_timeout: Duration::from_secs(60),
        max_requests: 0,
    };
    let endpoints = (0..ENDPOINTS)
        .map(|i| {
            let addr: SocketAddr = format!("10.0.{}.{}:8080", i / 200, i % 200 + 1)
                .parse()
                .expect("address");
            let weight = if weighted { (i % 8 + 1) as u32 } else { 1 };
            Endpoint::new(
                EndpointPool::new(addr, pool),
                state.endpoint(addr, None),
                weight,
            )
        })
        .collect();
    let timeouts = UpstreamTimeouts {
        connect: Duration::from_secs(5),
        response: Duration::from_secs(60),
        body: Duration::from_secs(60),
    };
    let hashing = Hashing {
        on,
        balance_factor: None,
    };
    UpstreamGroup::new(
        "bench".into(),
        endpoints,
        timeouts,
        balance,
        Some(&hashing),
        settings(),
        state,
        0,
    )
}

/// A GET as a browser-ish client sends it, with the header a hashing policy reads.
const REQUEST: &[u8] = b"GET /api/v1/items?page=2 HTTP/1.1\r\nHost: api.example.com\r\n\
User-Agent: bench/1.0\r\nAccept: application/json\r\nX-User: user-4711\r\n\
Cookie: theme=dark; sid=9f86d081884c7d65\r\nAccept-Encoding: gzip\r\n\r\n";

fn parsed_fields() -> (Vec<Field>, usize) {
    let mut fields = vec![Field::EMPTY; Limits::DEFAULT_MAX_HEADERS];
    let mut scanner = HeadScanner::default();
    match parse_request(REQUEST, &mut scanner, &Limits::DEFAULT, &mut fields) {
        Ok(Parsed::Complete(head)) => (fields, head.field_count),
        _ => panic!("the fixture parses"),
    }
}

fn view<'a>(fields: &'a [Field]) -> RequestView<'a> {
    RequestView {
        method: coregate_engine::http1::Method::Get,
        scheme: Scheme::Http,
        authority: b"api.example.com",
        path: b"/api/v1/items",
        query: Some(b"page=2"),
        fields: Fields::new(REQUEST, fields),
        body: Body::None,
        client: "192.0.2.44".parse().expect("address"),
    }
}

/// The structure the policies replaced: a rotation with no weights and no health.
struct Rotation {
    next: Cell<usize>,
}

impl Rotation {
    fn pick(&self, len: usize) -> usize {
        let index = self.next.get() % len;
        self.next.set(index + 1);
        index
    }
}

/// NGINX's smooth weighted round-robin as NGINX runs it: a pass over every endpoint per pick.
struct SmoothWrr {
    weights: Vec<i64>,
    current: Vec<Cell<i64>>,
    total: i64,
}

impl SmoothWrr {
    fn new(weights: &[i64]) -> SmoothWrr {
        SmoothWrr {
            weights: weights.to_vec(),
            current: weights.iter().map(|_| Cell::new(0)).collect(),
            total: weights.iter().sum(),
        }
    }

    fn pick(&self) -> usize {
        let mut best = 0;
        for (i, (w, c)) in self.weights.iter().zip(&self.current).enumerate() {
            c.set(c.get() + w);
            if c.get() > self.current[best].get() {
                best = i;
            }
        }
        let chosen = &self.current[best];
        chosen.set(chosen.get() - self.total);
        best
    }
}

fn cases() -> Vec<(&'static str, Balance, HashOn)> {
    vec![
        ("round_robin", Balance::RoundRobin, HashOn::ClientIp),
        ("least_request", Balance::LeastRequest, HashOn::ClientIp),
        ("random", Balance::Random, HashOn::ClientIp),
        (
            "ring_hash/header",
            Balance::RingHash,
            HashOn::Header("x-user".into()),
        ),
        ("ring_hash/client_ip", Balance::RingHash, HashOn::ClientIp),
        (
            "maglev/header",
            Balance::Maglev,
            HashOn::Header("x-user".into()),
        ),
    ]
}

/// Picks allocate nothing, whatever the policy: checked before anything is measured.
fn assert_no_allocation(fields: &[Field]) {
    let request = view(fields);
    for weighted in [false, true] {
        for (name, balance, on) in cases() {
            let group = group(balance, weighted, on);
            let now = Instant::now();
            for _ in 0..100 {
                black_box(group.pick(&request, now).expect("healthy"));
            }
            let before = allocations();
            for _ in 0..10_000 {
                black_box(group.pick(&request, now).expect("healthy"));
            }
            let made = allocations() - before;
            assert_eq!(made, 0, "{name} allocated {made} times in 10,000 picks");
        }
    }
}

fn bench_picks(c: &mut Criterion) {
    let (fields, count) = parsed_fields();
    let fields = &fields[..count];
    assert_no_allocation(fields);
    let request = view(fields);
    for weighted in [false, true] {
        let label = if weighted { "weights_1_8" } else { "equal" };
        let mut group_bench = c.benchmark_group(format!("pick/{label}"));
        for (name, balance, on) in cases() {
            let group = group(balance, weighted, on);
            let now = Instant::now();
            group_bench.bench_function(name, |b| {
                b.iter(|| black_box(group.pick(black_box(&request), now)))
            });
        }
        group_bench.finish();
    }
    let mut naive = c.benchmark_group("naive");
    let rotation = Rotation { next: Cell::new(0) };
    naive.bench_function("rotation", |b| {
        b.iter(|| black_box(rotation.pick(black_box(ENDPOINTS))))
    });
    let weights: Vec<i64> = (0..ENDPOINTS).map(|i| (i % 8 + 1) as i64).collect();
    let smooth = SmoothWrr::new(&weights);
    naive.bench_function("smooth_wrr", |b| b.iter(|| black_box(smooth.pick())));
    naive.finish();
}

criterion_group!(benches, bench_picks);
criterion_main!(benches);
