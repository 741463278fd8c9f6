//! Fuzz target: path normalisation, `router::normalize_path`, and the route table,
//! `router::RouteTable::lookup`, checked against a plain reference of the documented
//! precedence, for arbitrary host, method and path bytes, both raw and normalised (the proxy
//! routes on the normalised path).
//!
//! The input is `[method selector, host bytes..., LF, path bytes...]`. The table is fixed and
//! built once: exact paths, templates that overlap, prefixes with and without a trailing `/`,
//! an exact host, a wildcard host and a nested wildcard, method sets that fall through and that
//! give 405, and `/admin` as its own route beside `/api/`.
//!
//! Properties checked:
//! - neither normalising nor a lookup ever panics, whatever the bytes;
//! - the normal form is a fixed point: normalising it again gives `Unchanged`, or a rewrite to
//!   the very same bytes;
//! - the normal form starts with `/`, is never longer than the input (except that an empty
//!   path, an absolute-form target without one, becomes `/`), and has no `.` or `..` segment,
//!   no empty segment but a trailing one, no raw `\`, no `%2F`, `%5C` or `%00`, and every `%`
//!   starts an uppercase escape of a byte that is not unreserved: one resource, one spelling,
//!   so the table can compare bytes;
//! - a path that does not start with `/` (not origin form) matches nothing;
//! - the trie answers what the reference answers (the rules in `router`'s module doc, applied
//!   by scanning every route, each segment read without its `;params`): the same route, the
//!   same `matched_prefix_len`, the same template parameters, the same 405 `Allow` set, or 404;
//! - after normalisation, the `/admin` routes match only paths that are `/admin` or below it
//!   (once segments' parameters are left out),
//!   and such a path reaches nothing else but the one template whose first segment is a
//!   parameter (`/{kind}/me/posts`, more specific than a prefix by the documented order): dot
//!   segments and escapes cannot carry a request past its route.

#![no_main]

use std::sync::OnceLock;

use coregate_engine::http1::{Method, MethodSet};
use coregate_engine::router::{
    HostPattern, Lookup, Normalized, Params, PathPattern, RouteSpec, RouteTable, normalize_path,
};
use libfuzzer_sys::fuzz_target;

type Spec = RouteSpec<&'static str>;

fn specs() -> Vec<Spec> {
    let methods = |list: &[Method]| list.iter().fold(MethodSet::EMPTY, |set, &m| set.with(m));
    let exact = |p: &str| PathPattern::exact_or_template(p).expect("valid path");
    let prefix = |p: &str| PathPattern::prefix(p).expect("valid prefix");
    let host = |h: &str| HostPattern::parse(h).expect("valid host");
    let any = MethodSet::ANY;
    let route = |host, methods, path, target| RouteSpec {
        host,
        methods,
        path,
        target,
    };
    vec![
        route(HostPattern::Any, any, exact("/"), "root"),
        route(HostPattern::Any, any, prefix("/api/"), "api"),
        route(HostPattern::Any, any, exact("/admin"), "admin"),
        route(HostPattern::Any, any, prefix("/admin/"), "admin-tree"),
        route(
            HostPattern::Any,
            methods(&[Method::Get, Method::Head]),
            exact("/users/{id}"),
            "user",
        ),
        route(
            HostPattern::Any,
            methods(&[Method::Post]),
            exact("/users/me"),
            "me-post",
        ),
        route(
            HostPattern::Any,
            methods(&[Method::Get]),
            exact("/users/{id}/posts"),
            "user-posts",
        ),
        route(
            HostPattern::Any,
            any,
            exact("/{kind}/me/posts"),
            "kind-me-posts",
        ),
        route(
            HostPattern::Any,
            methods(&[Method::Delete]),
            prefix("/users/"),
            "users-delete",
        ),
        route(HostPattern::Any, any, prefix("/static"), "static"),
        route(host("api.example.com"), any, prefix("/"), "api-host"),
        route(
            host("api.example.com"),
            methods(&[Method::Get]),
            exact("/v1/health"),
            "api-health",
        ),
        route(host("*.example.com"), any, prefix("/wild/"), "wild"),
        route(
            host("*.eu.example.com"),
            methods(&[Method::Put]),
            exact("/t/{a}/{b}"),
            "eu",
        ),
    ]
}

/// The routes, built once: the reference scans them, the table indexes them.
fn all() -> &'static [Spec] {
    static SPECS: OnceLock<Vec<Spec>> = OnceLock::new();
    SPECS.get_or_init(specs)
}

fn table() -> &'static RouteTable<&'static str> {
    static TABLE: OnceLock<RouteTable<&'static str>> = OnceLock::new();
    TABLE.get_or_init(|| RouteTable::build(specs()).expect("the fuzz table builds"))
}

/// The documented host normalisation: port and one trailing dot dropped, bracketed literals
/// kept whole.
fn host_name(raw: &[u8]) -> &[u8] {
    if raw.first() == Some(&b'[') {
        return match raw.iter().position(|&b| b == b']') {
            Some(close) => &raw[..=close],
            None => raw,
        };
    }
    let name = match raw.iter().position(|&b| b == b':') {
        Some(colon) => &raw[..colon],
        None => raw,
    };
    name.strip_suffix(b".").unwrap_or(name)
}

/// Which host group the reference picks: exact, then the longest wildcard, then no host.
fn group_of(host: &[u8]) -> Option<HostPattern> {
    let name = host_name(host).to_ascii_lowercase();
    let all = all();
    if let Some(spec) = all
        .iter()
        .find(|s| matches!(&s.host, HostPattern::Exact(h) if h.as_bytes() == name.as_slice()))
    {
        return Some(spec.host.clone());
    }
    let wildcard = all
        .iter()
        .filter_map(|s| match &s.host {
            HostPattern::Suffix(suffix)
                if name.len() > suffix.len() && name.ends_with(suffix.as_bytes()) =>
            {
                Some((suffix.len(), s.host.clone()))
            }
            _ => None,
        })
        .max_by_key(|(len, _)| *len);
    if let Some((_, pattern)) = wildcard {
        return Some(pattern);
    }
    all.iter()
        .any(|s| s.host == HostPattern::Any)
        .then_some(HostPattern::Any)
}

fn segments(path: &[u8]) -> Vec<&[u8]> {
    path.split(|&b| b == b'/').skip(1).collect()
}

/// Template segments against path segments: the parameters' values, or `None`.
fn template_match<'a>(template: &'a str, path: &'a [u8]) -> Option<Vec<(&'a str, &'a [u8])>> {
    if path.first() != Some(&b'/') {
        return None;
    }
    let want: Vec<&str> = template.split('/').skip(1).collect();
    let have = segments(path);
    if want.len() != have.len() {
        return None;
    }
    let mut params = Vec::new();
    for (w, h) in want.iter().zip(&have) {
        match w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            Some(name) if !h.is_empty() => params.push((name, *h)),
            Some(_) => return None,
            None if w.as_bytes() == *h => {}
            None => return None,
        }
    }
    Some(params)
}

/// A prefix covers whole segments: one ending in `/` every path starting with it, any other
/// itself and the paths continuing it with `/`.
fn prefix_match(prefix: &[u8], path: &[u8]) -> bool {
    path.starts_with(prefix)
        && (prefix.ends_with(b"/") || matches!(path.get(prefix.len()), None | Some(b'/')))
}

/// Literal beats parameter at the first segment where two templates differ, left to right.
fn template_order(a: &str, b: &str) -> std::cmp::Ordering {
    for (x, y) in a.split('/').zip(b.split('/')) {
        let (x_param, y_param) = (x.starts_with('{'), y.starts_with('{'));
        if x_param != y_param {
            return x_param.cmp(&y_param);
        }
    }
    std::cmp::Ordering::Equal
}

#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Matched {
        target: &'static str,
        prefix_len: usize,
        params: Vec<(String, Vec<u8>)>,
    },
    MethodNotAllowed(MethodSet),
    NotFound,
}

/// The bytes the router matches (each segment up to its first `;`), and for each count `k` of
/// them the offset in `raw` of the `k`-th, or the end of `raw`.
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

fn reference(host: &[u8], method: Method, raw: &[u8]) -> Answer {
    if raw.first() != Some(&b'/') {
        return Answer::NotFound;
    }
    let Some(group) = group_of(host) else {
        return Answer::NotFound;
    };
    let (path, offsets) = without_params(raw);
    let path = path.as_slice();
    let routes: Vec<&Spec> = all().iter().filter(|s| s.host == group).collect();
    // Patterns matching the path, most specific first.
    let mut exact = Vec::new();
    let mut templates = Vec::new();
    let mut prefixes = Vec::new();
    for &route in &routes {
        match &route.path {
            PathPattern::Exact(p) if p.as_bytes() == path => exact.push(route),
            PathPattern::Template(t) if template_match(t, path).is_some() => templates.push(route),
            PathPattern::Prefix(p) if prefix_match(p.as_bytes(), path) => prefixes.push(route),
            _ => {}
        }
    }
    templates.sort_by(|a, b| template_order(a.path.as_str(), b.path.as_str()));
    prefixes.sort_by_key(|r| std::cmp::Reverse(r.path.as_str().len()));
    let mut allow = MethodSet::EMPTY;
    let mut any = false;
    for route in exact.iter().chain(&templates).chain(&prefixes) {
        any = true;
        if !route.methods.contains(method) {
            allow = allow.union(route.methods);
            continue;
        }
        let (prefix_len, params) = match &route.path {
            PathPattern::Prefix(p) => (offsets[p.len()], Vec::new()),
            PathPattern::Template(t) => (
                0,
                template_match(t, path)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(n, v)| (n.to_string(), v.to_vec()))
                    .collect(),
            ),
            PathPattern::Exact(_) => (0, Vec::new()),
        };
        return Answer::Matched {
            target: route.target,
            prefix_len,
            params,
        };
    }
    if any {
        Answer::MethodNotAllowed(allow)
    } else {
        Answer::NotFound
    }
}

fn lookup(host: &[u8], method: Method, path: &[u8]) -> Answer {
    let mut params = Params::new();
    match table().lookup(host, method, path, &mut params) {
        Lookup::Matched {
            target,
            matched_prefix_len,
        } => {
            assert!(matched_prefix_len <= path.len());
            let mut found: Vec<(String, Vec<u8>)> = params
                .iter()
                .map(|(name, range)| (name.to_string(), path[range].to_vec()))
                .collect();
            found.sort();
            Answer::Matched {
                target,
                prefix_len: matched_prefix_len,
                params: found,
            }
        }
        Lookup::MethodNotAllowed { allow } => Answer::MethodNotAllowed(allow),
        Lookup::NotFound => Answer::NotFound,
    }
}

fn check(host: &[u8], method: Method, path: &[u8]) -> Answer {
    let got = lookup(host, method, path);
    let mut want = reference(host, method, path);
    if let Answer::Matched { params, .. } = &mut want {
        params.sort();
    }
    assert_eq!(
        got,
        want,
        "host {:?} method {method:?} path {:?}",
        String::from_utf8_lossy(host),
        String::from_utf8_lossy(path)
    );
    got
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let method = Method::ALL[selector as usize % Method::ALL.len()];
    let (host, raw) = match rest.iter().position(|&b| b == b'\n') {
        Some(lf) => (&rest[..lf], &rest[lf + 1..]),
        None => (&b""[..], rest),
    };
    check(host, method, raw);

    let mut scratch = Vec::new();
    let path: &[u8] = match normalize_path(raw, &mut scratch) {
        Ok(Normalized::Unchanged) => raw,
        Ok(Normalized::Rewritten) => &scratch,
        Err(err) => {
            assert!(!err.as_str().is_empty());
            return;
        }
    };
    check_normal_form(raw, path);
    let answer = check(host, method, path);
    let (matched, _) = without_params(path);
    let below_admin = matched == b"/admin" || matched.starts_with(b"/admin/");
    if let Answer::Matched { target, .. } = answer {
        let admin_route = matches!(target, "admin" | "admin-tree");
        let any_host = group_of(host) == Some(HostPattern::Any);
        let shown = || {
            format!(
                "{:?} (raw {:?}) reached {target}",
                String::from_utf8_lossy(path),
                String::from_utf8_lossy(raw)
            )
        };
        if admin_route {
            assert!(below_admin, "{}", shown());
        }
        if any_host && below_admin {
            assert!(admin_route || target == "kind-me-posts", "{}", shown());
        }
    }
});

/// The normal-form properties listed in the module doc.
fn check_normal_form(raw: &[u8], normal: &[u8]) {
    assert_eq!(normal.first(), Some(&b'/'), "normal form {normal:?}");
    assert!(normal.len() <= raw.len().max(1), "normal form grew");

    let mut again = Vec::new();
    match normalize_path(normal, &mut again) {
        Ok(Normalized::Unchanged) => {}
        Ok(Normalized::Rewritten) => assert_eq!(again, normal, "not a fixed point"),
        Err(err) => panic!("the normal form {normal:?} is refused: {err}"),
    }

    let segments = segments(normal);
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        assert!(
            !matches!(*segment, b"." | b".."),
            "dot segment left in {normal:?}"
        );
        assert!(
            last || !segment.is_empty(),
            "empty segment left in {normal:?}"
        );
    }
    assert!(!normal.contains(&b'\\'), "raw backslash in {normal:?}");
    let mut rest = normal;
    while let Some(at) = rest.iter().position(|&b| b == b'%') {
        let escape = rest.get(at + 1..at + 3).expect("a complete escape");
        let hex = |b: &u8| b.is_ascii_digit() || (b'A'..=b'F').contains(b);
        assert!(
            escape.iter().all(hex),
            "escape not uppercase hex in {normal:?}"
        );
        let value = |b: u8| {
            if b.is_ascii_digit() {
                b - b'0'
            } else {
                b - b'A' + 10
            }
        };
        let byte = value(escape[0]) << 4 | value(escape[1]);
        assert!(
            !(byte.is_ascii_alphanumeric() || b"-._~".contains(&byte)),
            "unreserved byte left encoded in {normal:?}"
        );
        assert!(
            !matches!(byte, 0 | b'/' | b'\\'),
            "ambiguous escape in {normal:?}"
        );
        rest = &rest[at + 3..];
    }
}
