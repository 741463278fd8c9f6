//! Request routing: owns the decision of which configured route answers a request, from its
//! `Host`, method and normalised path. Built once per config snapshot on each shard, read-only
//! on the hot path. It does no I/O and knows nothing of upstreams: a route's target is opaque.
//!
//! | file | owns |
//! |---|---|
//! | [`spec`] | route patterns as configured (`HostPattern`, `PathPattern`), parsed in one place |
//! | [`normalize`] | the normal form of a request path, which is what is routed *and* forwarded |
//! | [`rewrite`] | the path a prefix route forwards after `strip_prefix` / `prefix_rewrite`, never outside the route |
//! | [`table`] | `RouteTable::build` (grouping, conflict checks) and `RouteTable::lookup` |
//! | `host` | the label trie from a host name to its host group |
//! | `path` | the byte trie (exact paths, prefixes) and the segment trie (templates) of a group |
//! | `routed` | the bytes a path is matched on: each segment without its `;params` |
//! | `branch` | the children of a trie node keyed by label or segment, found without hashing |
//! | [`params`] | the fixed-capacity template parameters a lookup fills |
//!
//! # How a request is routed
//!
//! The path is normalised first ([`normalize_path`]); a path that cannot be is answered 400 and
//! never routed. Then [`RouteTable::lookup`] decides in three steps.
//!
//! **1. Host group.** The `Host` value loses its port (`example.com:8080`, `[::1]:8080`) and one
//! trailing dot (`example.com.`) and is compared case-insensitively. Exactly one group is chosen:
//!
//! | rank | host pattern | matches `Host` |
//! |---|---|---|
//! | 1 | exact `api.example.com` | `api.example.com`, `API.Example.com.:443` |
//! | 2 | longest wildcard `*.example.com` | `a.example.com`, `a.b.example.com` (not `example.com`) |
//! | 3 | no host | anything, no `Host` at all included (pass an empty slice) |
//!
//! Only the chosen group's routes are considered afterwards: if none of them matches the path,
//! the answer is 404 even when a less specific group has a matching route. This is how Envoy
//! virtual hosts and NGINX `server_name` behave, and it keeps a host's routes self-contained:
//! adding a route to `*.example.com` can never change what `api.example.com` answers.
//!
//! **2. Path patterns, most specific first.** Within the group, the patterns matching the path
//! are ordered:
//!
//! | rank | pattern | matches | among several |
//! |---|---|---|---|
//! | 1 | exact `/users/me` | that path only | - |
//! | 2 | template `/users/{id}` | one non-empty segment per `{param}` | a literal segment beats a parameter at the first segment where they differ, left to right: `/users/me/{x}` > `/users/{id}/posts` > `/{kind}/me/posts` |
//! | 3 | prefix `/static/`, `/api` | by segment: every path starting with `/static/`; `/api` and every path starting with `/api/` | the longest prefix wins |
//!
//! A trailing slash is part of the path (`/a/` is not `/a`). A prefix matches whole segments:
//! `/api` does not cover `/api2`, `/apiadmin` or `/api../x`, so bytes glued to a prefix's last
//! segment can neither reach its route nor, once `strip_prefix` cuts the prefix off, come out
//! as another path (see [`rewrite`]). Templates that differ only
//! in parameter names (`/u/{id}`, `/u/{name}`) are the same pattern. The order is total, so the
//! result never depends on the order in which routes were configured; routes that would tie are
//! refused when the table is built.
//!
//! Each segment is matched up to its first `;`: `/admin;x/secret` is matched as
//! `/admin/secret`, the path a servlet container serves for it, so it cannot slip past an
//! `/admin/` route into a catch-all. The path keeps its parameters when it is forwarded, a
//! template parameter's value leaves them out (`/users/7;v=1` gives `id` = `7`), and a
//! prefix's `matched_prefix_len` covers those of its last segment. Configured paths hold no
//! `;`. Why this reading, and not refusing `;`: see `routed.rs`.
//!
//! **3. Method.** The routes of one pattern have disjoint method sets (overlaps are refused at
//! build time). The first pattern in the order above with a route allowing the method wins. If
//! the most specific pattern does not allow the method, the next one is tried: `GET /api/x` goes
//! to a `GET` prefix `/api/` when the exact `/api/x` route only allows `POST`, as in Envoy, where
//! the method is just another match condition. Only when patterns match the path but none allows
//! the method is the answer 405, with `Allow` listing the union of those patterns' methods: each
//! of them would have been routed. The router does not derive HEAD from GET; method sets are
//! taken as configured.
//!
//! | request | routes (host group already chosen) | outcome |
//! |---|---|---|
//! | `GET /users/me` | `GET /users/me`, `GET /users/{id}` | exact |
//! | `GET /users/7` | `GET /users/me`, `GET /users/{id}`, `GET /users/` prefix | template, `id` = `7` |
//! | `DELETE /users/7` | `GET /users/{id}`, `DELETE /users/` prefix | prefix, `matched_prefix_len` = 7 |
//! | `PUT /users/7` | `GET /users/{id}`, `POST /users/` prefix | 405, `Allow: GET, POST` |
//! | `GET /teams` | `GET /users/` prefix | 404 |
//!
//! # Cost
//!
//! Building allocates freely. A lookup allocates nothing, hashes nothing and runs no regex: one
//! walk over the host's labels, one walk over the path's bytes for exact paths and prefixes,
//! and a depth-first walk over the path's segments for templates, with integer binary searches
//! among sibling labels and segments. Its cost follows the length of the host and path, not the
//! number of routes: `bench/benches/route.rs` measures 55-130 ns per lookup with 10 routes and
//! at most 1.6 times that with 10,000, where scanning every route takes over 20 us.
//!
//! # Example
//!
//! ```
//! use coregate_engine::http1::{Method, MethodSet};
//! use coregate_engine::router::{
//!     HostPattern, Lookup, Normalized, Params, PathPattern, RouteSpec, RouteTable, normalize_path,
//! };
//!
//! // At start or reload, on each shard.
//! let table = RouteTable::build(vec![
//!     RouteSpec {
//!         host: HostPattern::parse("api.example.com").unwrap(),
//!         methods: MethodSet::EMPTY.with(Method::Get),
//!         path: PathPattern::exact_or_template("/users/{id}").unwrap(),
//!         target: "users",
//!     },
//!     RouteSpec {
//!         host: HostPattern::Any,
//!         methods: MethodSet::ANY,
//!         path: PathPattern::prefix("/static/").unwrap(),
//!         target: "assets",
//!     },
//! ])
//! .unwrap();
//!
//! // Per request: `scratch` is the shard's reusable buffer.
//! let mut scratch = Vec::with_capacity(8192);
//! let raw = b"/users/./42";
//! let path: &[u8] = match normalize_path(raw, &mut scratch) {
//!     Ok(Normalized::Unchanged) => raw,
//!     Ok(Normalized::Rewritten) => &scratch,
//!     Err(_) => return, // the proxy answers 400
//! };
//! let mut params = Params::new();
//! match table.lookup(b"API.example.com:443", Method::Get, path, &mut params) {
//!     Lookup::Matched { target, .. } => {
//!         assert_eq!(*target, "users");
//!         assert_eq!(params.get("id", path), Some(&b"42"[..]));
//!     }
//!     other => panic!("{other:?}"),
//! }
//! ```
pub mod normalize;
pub mod params;
pub mod rewrite;
pub mod spec;
pub mod table;

mod branch;
mod host;
mod path;
mod routed;

#[cfg(test)]
mod reference;

pub use normalize::{NormalizeError, Normalized, normalize_path};
pub use params::Params;
pub use rewrite::{PrefixRewrite, RewriteError, rewrite_path};
pub use spec::{HostPattern, MAX_TEMPLATE_PARAMS, PathPattern};
pub use table::{BuildError, Lookup, RouteProblem, RouteSpec, RouteTable};
