//! Criterion benchmark: does a route lookup stay flat as the table grows?
//!
//! Question: what does `RouteTable::lookup` cost with 10, 1,000 and 10,000 routes, for a request
//! that hits a route added late (deep in the set) and for one that misses? The target is at
//! most 2x from 10 to 10,000 routes. Baseline: `naive`, a scan of every route that checks host
//! and path and keeps the most specific match, i.e. the structure the tries replace.
//!
//! The route set is a gateway-like mix: a tenth of the routes without host, the rest spread over
//! one exact host per 50 routes and a few wildcard hosts; per host, exact paths, templates with
//! two parameters and prefixes.
//!
//! Also measured: path normalisation on an already-normal path (the fast path) and on one with
//! dot segments and escapes.
//!
//! Before measuring, the bench checks with a counting allocator that lookups and fast-path
//! normalisation allocate nothing.
//!
//! Run: `cargo bench -p coregate-bench --bench route -- --warm-up-time 1 --measurement-time 3`
//!
//! Measured on a 2-core VM shared with other builds (criterion means from the quietest run; the
//! load of the machine moves single figures by up to a third):
//!
//! | request | 10 routes | 1,000 | 10,000 | 10 -> 10,000 |
//! |---|---|---|---|---|
//! | exact path, deep | 56 ns | 74 ns | 88 ns | 1.6x |
//! | template with two parameters, deep | 131 ns | 151 ns | 152 ns | 1.2x |
//! | prefix, deep | 65 ns | 80 ns | 92 ns | 1.4x |
//! | miss on a known host (404) | 81 ns | 93 ns | 113 ns | 1.4x |
//! | `naive`, template | 104 ns | 2.3 us | 23.7 us | 230x |
//! | `naive`, miss | 72 ns | 2.1 us | 21.8 us | 300x |
//!
//! Normalisation: 26 ns for a 38-byte path that is already normal, 190 ns for a 52-byte path
//! with dot segments, a duplicate slash and escapes.

use std::hint::black_box;

use coregate_bench::{CountingAllocator, allocations};
use coregate_engine::http1::{Method, MethodSet};
use coregate_engine::router::{
    HostPattern, Lookup, Params, PathPattern, RouteSpec, RouteTable, normalize_path,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// Counts allocations so the bench can prove the hot path makes none.
#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

const SIZES: [usize; 3] = [10, 1_000, 10_000];

/// Routes of a gateway with `n` routes; the target is the route's number.
fn route_set(n: usize) -> Vec<RouteSpec<usize>> {
    let exact_hosts = (n / 50).max(1);
    (0..n)
        .map(|i| {
            let host = match i % 10 {
                0 => Ok(HostPattern::Any),
                1 => HostPattern::parse(&format!("*.tenant{}.example.net", i % 7)),
                _ => HostPattern::parse(&format!("svc{}.example.com", i % exact_hosts)),
            }
            .expect("valid host");
            let path = match i % 3 {
                0 => PathPattern::exact_or_template(&format!("/api/v1/res{i}/status")),
                1 => PathPattern::exact_or_template(&format!(
                    "/api/v1/res{i}/users/{{user}}/orders/{{order}}"
                )),
                _ => PathPattern::prefix(&format!("/static/app{i}/")),
            }
            .expect("valid path");
            RouteSpec {
                host,
                methods: MethodSet::EMPTY.with(Method::Get).with(Method::Head),
                path,
                target: i,
            }
        })
        .collect()
}

/// A request for the last route of the set with the given path kind (`i % 3`).
fn deep_request(n: usize, kind: usize) -> (String, String) {
    let i = (0..n)
        .rev()
        .find(|i| i % 3 == kind && i % 10 >= 2)
        .expect("route of that kind");
    let host = format!("SVC{}.example.com:443", i % (n / 50).max(1));
    let path = match kind {
        0 => format!("/api/v1/res{i}/status"),
        1 => format!("/api/v1/res{i}/users/alice/orders/1234"),
        _ => format!("/static/app{i}/js/main.js"),
    };
    (host, path)
}

/// The baseline: every route is checked; the most specific match wins (exact host, then
/// wildcard, then none; exact path, then template, then longest prefix). No method fallback.
fn naive<'a>(
    routes: &'a [RouteSpec<usize>],
    host: &[u8],
    method: Method,
    path: &[u8],
) -> Option<&'a usize> {
    let host = host.split(|&b| b == b':').next().unwrap_or(host);
    // (host kind, longer suffix first, path kind, longer prefix first): lower wins.
    type Rank = (u8, usize, u8, usize);
    let mut best: Option<(Rank, &'a usize)> = None;
    for route in routes {
        let host_rank = match &route.host {
            HostPattern::Exact(h) if h.as_bytes().eq_ignore_ascii_case(host) => (0, 0),
            HostPattern::Suffix(s)
                if host.len() > s.len()
                    && host[host.len() - s.len()..].eq_ignore_ascii_case(s.as_bytes()) =>
            {
                (1, usize::MAX - s.len())
            }
            HostPattern::Any => (2, 0),
            _ => continue,
        };
        let path_rank = match &route.path {
            PathPattern::Exact(p) if p.as_bytes() == path => (0, 0),
            PathPattern::Template(t) if template_matches(t, path) => (1, 0),
            PathPattern::Prefix(p) if path.starts_with(p.as_bytes()) => (2, usize::MAX - p.len()),
            _ => continue,
        };
        if !route.methods.contains(method) {
            continue;
        }
        let rank = (host_rank.0, host_rank.1, path_rank.0, path_rank.1);
        if best.is_none_or(|(b, _)| rank < b) {
            best = Some((rank, &route.target));
        }
    }
    best.map(|(_, target)| target)
}

fn template_matches(template: &str, path: &[u8]) -> bool {
    let mut parts = template.as_bytes().split(|&b| b == b'/');
    let mut segments = path.split(|&b| b == b'/');
    loop {
        match (parts.next(), segments.next()) {
            (None, None) => return true,
            (Some(part), Some(segment)) => {
                let param = part.first() == Some(&b'{');
                if (param && segment.is_empty()) || (!param && part != segment) {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// Lookups and fast-path normalisation must not allocate.
fn check_no_allocation(table: &RouteTable<usize>, requests: &[(String, String)]) {
    let mut scratch = Vec::with_capacity(256);
    let before = allocations();
    for (host, path) in requests {
        let mut params = Params::new();
        black_box(table.lookup(host.as_bytes(), Method::Get, path.as_bytes(), &mut params));
        black_box(normalize_path(path.as_bytes(), &mut scratch).ok());
        black_box(normalize_path(b"/a/./b/../%41//c", &mut scratch).ok());
    }
    let after = allocations();
    assert_eq!(after, before, "lookup or normalisation allocated");
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("route");
    for n in SIZES {
        let specs = route_set(n);
        let table = RouteTable::build(specs.clone()).expect("bench routes build");
        let requests = [
            ("exact", deep_request(n, 0)),
            ("template", deep_request(n, 1)),
            ("prefix", deep_request(n, 2)),
            // A known host, an unknown path: 404 after the host group's tries.
            (
                "miss",
                (deep_request(n, 0).0, "/api/v1/nothing/here".to_owned()),
            ),
        ];
        let all: Vec<(String, String)> = requests.iter().map(|(_, r)| r.clone()).collect();
        check_no_allocation(&table, &all);
        for (name, (host, path)) in &requests {
            let expect_hit = *name != "miss";
            let mut params = Params::new();
            let found = table.lookup(host.as_bytes(), Method::Get, path.as_bytes(), &mut params);
            assert_eq!(
                matches!(found, Lookup::Matched { .. }),
                expect_hit,
                "{name} {path}"
            );
            assert_eq!(
                naive(&specs, host.as_bytes(), Method::Get, path.as_bytes()).is_some(),
                expect_hit
            );
            group.bench_with_input(BenchmarkId::new(*name, n), &n, |b, _| {
                let mut params = Params::new();
                b.iter(|| {
                    let found = table.lookup(
                        black_box(host.as_bytes()),
                        black_box(Method::Get),
                        black_box(path.as_bytes()),
                        &mut params,
                    );
                    black_box(matches!(found, Lookup::Matched { .. }));
                });
            });
        }
        for (name, (host, path)) in requests
            .iter()
            .filter(|(name, _)| ["template", "miss"].contains(name))
        {
            group.bench_with_input(BenchmarkId::new(format!("naive_{name}"), n), &n, |b, _| {
                b.iter(|| {
                    black_box(naive(
                        &specs,
                        black_box(host.as_bytes()),
                        black_box(Method::Get),
                        black_box(path.as_bytes()),
                    ))
                });
            });
        }
    }
    group.finish();
}

fn normalisation(c: &mut Criterion) {
    let mut group = c.benchmark_group("normalize");
    let mut scratch = Vec::with_capacity(256);
    for (name, path) in [
        (
            "already_normal",
            &b"/api/v1/res42/users/alice/orders/1234"[..],
        ),
        (
            "dots_and_escapes",
            &b"/api/v1/./res42//users/%61lice/../bob/orders/%3a1234"[..],
        ),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| black_box(normalize_path(black_box(path), &mut scratch).ok()));
        });
    }
    group.finish();
}

criterion_group!(benches, lookups, normalisation);
criterion_main!(benches);
