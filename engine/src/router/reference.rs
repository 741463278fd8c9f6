//! A naive reference router for the property tests: a linear scan over every route that applies
//! the precedence of the [`super`] module doc literally, with none of the tries. The property is
//! that [`RouteTable::lookup`] answers every request exactly as this scan does, whatever the
//! routes and in whatever order they were given, which is what makes the tries trustworthy.

use std::ops::Range;

use proptest::prelude::*;

use super::{HostPattern, Lookup, Params, PathPattern, RouteSpec, RouteTable};
use crate::http1::{Method, MethodSet};

/// What a lookup decided, in terms both implementations can produce.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Matched {
        route: usize,
        matched_prefix_len: usize,
        params: Vec<(String, Range<usize>)>,
    },
    MethodNotAllowed(MethodSet),
    NotFound,
}

/// The host part of a `Host` value, written independently of `host::host_name`.
fn reference_host(raw: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(raw).to_ascii_lowercase();
    let name = if text.starts_with('[') {
        match text.find(']') {
            Some(close) => &text[..=close],
            None => &text[..],
        }
    } else {
        text.split(':').next().unwrap_or("")
    };
    name.strip_suffix('.').unwrap_or(name).as_bytes().to_vec()
}

/// Lower is more specific; `None` when the pattern does not accept the host.
fn host_rank(pattern: &HostPattern, host: &[u8]) -> Option<(u8, usize)> {
    match pattern {
        HostPattern::Exact(exact) => (exact.as_bytes() == host).then_some((0, 0)),
        HostPattern::Suffix(suffix) => (host.len() > suffix.len()
            && host.ends_with(suffix.as_bytes()))
        .then_some((1, usize::MAX - suffix.len())),
        HostPattern::Any => Some((2, 0)),
    }
}

/// Lower is more specific: exact, then templates by literal (0) / parameter (1) per segment,
/// then prefixes by length descending. `None` when the pattern does not match the path.
fn path_rank(pattern: &PathPattern, path: &[u8]) -> Option<(u8, Vec<usize>)> {
    match pattern {
        PathPattern::Exact(exact) => (exact.as_bytes() == path).then(|| (0, Vec::new())),
        PathPattern::Prefix(prefix) => {
            let prefix = prefix.as_bytes();
            let by_segment = prefix.ends_with(b"/")
                || path.len() == prefix.len()
                || path.get(prefix.len()) == Some(&b'/');
            (path.starts_with(prefix) && by_segment).then(|| (2, vec![usize::MAX - prefix.len()]))
        }
        PathPattern::Template(template) => {
            let path = path.strip_prefix(b"/")?;
            let segments: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
            let parts: Vec<&str> = template[1..].split('/').collect();
            if segments.len() != parts.len() {
                return None;
            }
            let mut kinds = Vec::new();
            for (segment, part) in segments.iter().zip(&parts) {
                if part.starts_with('{') {
                    if segment.is_empty() {
                        return None;
                    }
                    kinds.push(1);
                } else if part.as_bytes() == *segment {
                    kinds.push(0);
                } else {
                    return None;
                }
            }
            Some((1, kinds))
        }
    }
}

/// The bytes the router matches, written independently of `routed.rs`: every byte of `raw`
/// outside a segment's `;params`. With them, for each count `k` of those bytes, the offset in
/// `raw` of the `k`-th (or the end of `raw`): where a match of `k` bytes ends in the path as
/// sent.
fn without_params(raw: &[u8]) -> (Vec<u8>, Vec<usize>) {
    let mut matched = Vec::new();
    let mut offsets = Vec::new();
    let mut in_params = false;
    for (i, &byte) in raw.iter().enumerate() {
        match byte {
            b'/' => in_params = false,
            b';' => in_params = true,
            _ => {}
        }
        if !in_params {
            matched.push(byte);
            offsets.push(i);
        }
    }
    offsets.push(raw.len());
    (matched, offsets)
}

fn reference_lookup(
    specs: &[RouteSpec<usize>],
    host: &[u8],
    method: Method,
    raw_path: &[u8],
) -> Outcome {
    if raw_path.first() != Some(&b'/') {
        return Outcome::NotFound;
    }
    let (path, offsets) = without_params(raw_path);
    let path = path.as_slice();
    let host = reference_host(host);
    let Some(chosen) = specs
        .iter()
        .filter_map(|s| Some((host_rank(&s.host, &host)?, &s.host)))
        .min_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, pattern)| pattern.clone())
    else {
        return Outcome::NotFound;
    };
    let mut candidates: Vec<(_, usize)> = specs
        .iter()
        .enumerate()
        .filter(|(_, s)| s.host == chosen)
        .filter_map(|(i, s)| Some((path_rank(&s.path, path)?, i)))
        .collect();
    candidates.sort();
    let mut allow = MethodSet::EMPTY;
    for (_, index) in &candidates {
        let spec = &specs[*index];
        if !spec.methods.contains(method) {
            allow = allow.union(spec.methods);
            continue;
        }
        let (matched_prefix_len, params) = match &spec.path {
            PathPattern::Prefix(prefix) => (offsets[prefix.len()], Vec::new()),
            PathPattern::Exact(_) => (0, Vec::new()),
            PathPattern::Template(template) => {
                let mut params = Vec::new();
                let mut start = 1;
                for part in template[1..].split('/') {
                    let end = path[start..]
                        .iter()
                        .position(|&b| b == b'/')
                        .map_or(path.len(), |i| start + i);
                    if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                        // A parameter's segment is not empty; its bytes lie together in `raw`.
                        params.push((name.to_owned(), offsets[start]..offsets[end - 1] + 1));
                    }
                    start = end + 1;
                }
                (0, params)
            }
        };
        return Outcome::Matched {
            route: *index,
            matched_prefix_len,
            params,
        };
    }
    if allow.is_empty() {
        Outcome::NotFound
    } else {
        Outcome::MethodNotAllowed(allow)
    }
}

fn table_lookup(table: &RouteTable<usize>, host: &[u8], method: Method, path: &[u8]) -> Outcome {
    let mut params = Params::new();
    match table.lookup(host, method, path, &mut params) {
        Lookup::Matched {
            target,
            matched_prefix_len,
        } => Outcome::Matched {
            route: *target,
            matched_prefix_len,
            params: params
                .iter()
                .map(|(name, span)| (name.to_owned(), span))
                .collect(),
        },
        Lookup::MethodNotAllowed { allow } => Outcome::MethodNotAllowed(allow),
        Lookup::NotFound => Outcome::NotFound,
    }
}

/// Two specs could answer the same request: same host, same pattern (parameter names aside),
/// a method in common.
fn conflicting(a: &RouteSpec<usize>, b: &RouteSpec<usize>) -> bool {
    let shape = |p: &PathPattern| -> (u8, String) {
        match p {
            PathPattern::Exact(s) => (0, s.to_string()),
            PathPattern::Prefix(s) => (2, s.to_string()),
            PathPattern::Template(s) => (
                1,
                s.split('/')
                    .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
                    .collect::<Vec<_>>()
                    .join("/"),
            ),
        }
    };
    a.host == b.host
        && shape(&a.path) == shape(&b.path)
        && a.methods.iter().any(|m| b.methods.contains(m))
}

const METHODS: [Method; 4] = [Method::Get, Method::Post, Method::Put, Method::Delete];

fn host_pattern() -> impl Strategy<Value = HostPattern> {
    prop_oneof![
        2 => Just(HostPattern::Any),
        1 => Just(HostPattern::Exact("example.com".into())),
        1 => Just(HostPattern::Exact("a.example.com".into())),
        1 => Just(HostPattern::Exact("b.a.example.com".into())),
        1 => Just(HostPattern::Suffix(".example.com".into())),
        1 => Just(HostPattern::Suffix(".a.example.com".into())),
    ]
}

/// Methods as a non-empty subset of `METHODS`.
fn method_set() -> impl Strategy<Value = MethodSet> {
    (1u8..16).prop_map(|bits| {
        METHODS
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, &m)| m)
            .collect()
    })
}

/// Paths over a tiny alphabet so that patterns collide and overlap often.
fn path_pattern() -> impl Strategy<Value = PathPattern> {
    let segment = prop_oneof![Just("a"), Just("b"), Just("ab"), Just("{}")];
    (
        prop::collection::vec(segment, 1..4),
        any::<bool>(),
        0u8..3,
        any::<bool>(),
    )
        .prop_map(|(segments, trailing_slash, kind, other_names)| {
            let literal = |s: &'static str| if s == "{}" { "a" } else { s };
            match kind {
                // A prefix: segments, maybe a trailing slash, maybe cut mid-segment.
                0 => {
                    let mut text: String = segments
                        .iter()
                        .map(|s| format!("/{}", literal(s)))
                        .collect();
                    if trailing_slash {
                        text.push('/');
                    } else if other_names && text.len() > 2 {
                        text.pop();
                    }
                    PathPattern::prefix(&text).expect("generated prefix")
                }
                // Exact, or a template when a segment is a parameter.
                _ => {
                    let mut text = String::new();
                    for (i, s) in segments.iter().enumerate() {
                        if *s == "{}" {
                            let name = if other_names { "q" } else { "p" };
                            text.push_str(&format!("/{{{name}{i}}}"));
                        } else {
                            text.push_str(&format!("/{s}"));
                        }
                    }
                    if trailing_slash {
                        text.push('/');
                    }
                    PathPattern::exact_or_template(&text).expect("generated path")
                }
            }
        })
}

fn routes() -> impl Strategy<Value = Vec<RouteSpec<usize>>> {
    prop::collection::vec((host_pattern(), method_set(), path_pattern()), 0..40).prop_map(|raw| {
        // Keep the first of any conflicting routes: the table refuses conflicts, and the
        // property is about tables that build.
        let mut specs: Vec<RouteSpec<usize>> = Vec::new();
        for (host, methods, path) in raw {
            let spec = RouteSpec {
                host,
                methods,
                path,
                target: specs.len(),
            };
            if !specs.iter().any(|s| conflicting(s, &spec)) {
                specs.push(spec);
            }
        }
        specs
    })
}

fn request() -> impl Strategy<Value = (&'static str, Method, String)> {
    let host = prop::sample::select(vec![
        "",
        "example.com",
        "Example.COM:8080",
        "example.com.",
        "a.example.com",
        "A.example.com.:1",
        "b.a.example.com",
        "x.b.a.example.com",
        "x.example.com",
        "x.a.example.com",
        ".example.com",
        "other.org",
        "[::1]:80",
    ]);
    let method = prop::sample::select(vec![
        Method::Get,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Patch,
    ]);
    let segment = prop::sample::select(vec!["a", "b", "ab", "c", "", "a;x", "ab;", "b;c=d;e"]);
    let path = prop::collection::vec(segment, 0..5).prop_map(|segments| {
        if segments.is_empty() {
            "/".to_owned()
        } else {
            segments.iter().map(|s| format!("/{s}")).collect()
        }
    });
    (host, method, path)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn lookup_agrees_with_a_linear_scan(
        specs in routes(),
        requests in prop::collection::vec(request(), 1..32),
        rotation in 0usize..40,
    ) {
        let table = RouteTable::build(specs.clone()).expect("conflict-free routes build");
        // The same routes in another order must build a table that answers the same.
        let mut rotated = specs.clone();
        if !rotated.is_empty() {
            let by = rotation % rotated.len();
            rotated.rotate_left(by);
            rotated.reverse();
        }
        let other_order = RouteTable::build(rotated).expect("same routes, other order");
        for (host, method, path) in &requests {
            let expected = reference_lookup(&specs, host.as_bytes(), *method, path.as_bytes());
            let got = table_lookup(&table, host.as_bytes(), *method, path.as_bytes());
            prop_assert_eq!(&got, &expected, "{} {:?} {}", host, method, path);
            let again = table_lookup(&other_order, host.as_bytes(), *method, path.as_bytes());
            prop_assert_eq!(&again, &expected, "other order: {} {:?} {}", host, method, path);
        }
    }
}

proptest! {
    /// Arbitrary host and path bytes (not just well-formed ones) never make a lookup panic.
    #[test]
    fn lookup_takes_any_bytes(
        specs in routes(),
        host in prop::collection::vec(any::<u8>(), 0..24),
        path in prop::collection::vec(prop::sample::select(b"/ab.:[]%{}A;".to_vec()), 0..24),
    ) {
        let table = RouteTable::build(specs).expect("conflict-free routes build");
        table_lookup(&table, &host, Method::Get, &path);
    }
}
