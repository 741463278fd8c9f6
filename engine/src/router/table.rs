//! The route table: owns building a shard's routes from the validated configuration and the
//! per-request lookup over them.
//!
//! Building groups routes by host pattern (a *host group*), then by path pattern (a *pattern*:
//! the routes of one host group with the same path and different method sets), checks that no
//! two routes can answer the same request, and indexes hosts and paths in the tries of
//! `router::host` and `router::path`. Lookup then follows the precedence of the module doc of
//! [`super`] and touches nothing but the table and the request's bytes.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::host::{HostIndex, host_name};
use super::params::Params;
use super::path::{KeyPatterns, LiteralKey, LiteralTrie, TemplateTrie};
use super::routed::RoutedPath;
use super::spec::{HostPattern, PathPattern};
use crate::http1::{Method, MethodSet};

/// One configured route, as the config layer hands it to [`RouteTable::build`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteSpec<T> {
    pub host: HostPattern,
    /// [`MethodSet::ANY`] when the route does not restrict methods.
    pub methods: MethodSet,
    pub path: PathPattern,
    /// What the proxy does with a matching request (an upstream, a rewrite, a policy...).
    pub target: T,
}

/// The outcome of [`RouteTable::lookup`].
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'t, T> {
    Matched {
        target: &'t T,
        /// Bytes at the start of the path given to the lookup covered by the matching prefix
        /// pattern, for `strip_prefix` and prefix rewrites (see [`super::rewrite_path`]); 0 when
        /// an exact path or a template matched. It always ends a segment, and covers the
        /// `;params` of the prefix's last segment (`/admin;x/y` under `/admin` covers
        /// `/admin;x`).
        matched_prefix_len: usize,
    },
    /// Some pattern matched the path but none of the matching patterns allows the method: answer
    /// 405 with these methods in `Allow`.
    MethodNotAllowed { allow: MethodSet },
    /// No pattern of the chosen host group matches the path, or no host group applies: 404.
    NotFound,
}

/// Why a set of routes cannot be built into a table. Every problem found is listed, so an
/// operator fixes a configuration in one pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildError {
    pub problems: Vec<RouteProblem>,
}

/// One problem with the routes. Indices are positions in the `specs` given to
/// [`RouteTable::build`], which the config layer maps back to file and line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteProblem {
    /// Routes `first` and `second` (`first < second`) have the same host pattern and the same
    /// path pattern, and both allow `methods`: a request could match either.
    Conflict {
        first: usize,
        second: usize,
        host: HostPattern,
        path: PathPattern,
        methods: MethodSet,
    },
    /// The route allows no method, so it could never match.
    NoMethods { index: usize },
    /// The host pattern is not in the form [`HostPattern::parse`] produces.
    InvalidHost { index: usize, reason: &'static str },
    /// The path pattern is not in the form [`PathPattern`]'s constructors produce.
    InvalidPath { index: usize, reason: &'static str },
    /// More routes than the table's 32-bit indices can number.
    TooManyRoutes { count: usize },
}

impl fmt::Display for RouteProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RouteProblem::Conflict {
                first,
                second,
                host,
                path,
                methods,
            } => {
                write!(
                    f,
                    "routes {first} and {second} conflict: both match host `{host}`, path `{path}` \
                     and method"
                )?;
                for method in methods.iter() {
                    write!(f, " {}", method.as_str().unwrap_or("(extension)"))?;
                }
                Ok(())
            }
            RouteProblem::NoMethods { index } => write!(f, "route {index} allows no method"),
            RouteProblem::InvalidHost { index, reason } => write!(f, "route {index}: {reason}"),
            RouteProblem::InvalidPath { index, reason } => write!(f, "route {index}: {reason}"),
            RouteProblem::TooManyRoutes { count } => {
                write!(f, "{count} routes are more than a route table can hold")
            }
        }
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            problem.fmt(f)?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildError {}

/// A shard's routes, built once per configuration snapshot and then only read.
#[derive(Debug)]
pub struct RouteTable<T> {
    /// In the order of the specs, so a route's number is its spec index.
    routes: Vec<Route<T>>,
    patterns: Vec<Pattern>,
    groups: Vec<HostGroup>,
    /// Exact and wildcard hosts -> group.
    hosts: HostIndex,
    /// The group of routes without a host, used when no host pattern matches.
    any_host: Option<u32>,
}

#[derive(Debug)]
struct Route<T> {
    target: T,
    methods: MethodSet,
    /// Parameter names of a template, in order; empty for exact paths and prefixes.
    param_names: Box<[Box<str>]>,
}

/// The routes of one host group sharing one path pattern. Their method sets are disjoint (else
/// the build fails), so at most one of them allows any given method.
#[derive(Debug)]
struct Pattern {
    routes: Box<[u32]>,
    /// Union of the routes' methods: checked before the routes, and the `Allow` contribution.
    allow: MethodSet,
}

#[derive(Debug)]
struct HostGroup {
    literals: LiteralTrie,
    templates: TemplateTrie,
}

/// A host group while it is being built.
struct GroupBuilder {
    host: HostPattern,
    /// Exact paths and prefixes, sorted as [`LiteralTrie::build`] wants them.
    literals: BTreeMap<Box<[u8]>, KeyPatterns>,
    templates: TemplateTrie,
}

impl GroupBuilder {
    /// The pattern number of `path` in this group: an existing one if a route already has this
    /// pattern, else `next`.
    fn pattern_for(&mut self, path: &PathPattern, next: u32) -> u32 {
        match path {
            PathPattern::Exact(text) | PathPattern::Prefix(text) => {
                let ends = self.literals.entry(text.as_bytes().into()).or_default();
                let slot = match path {
                    PathPattern::Prefix(_) => &mut ends.prefix,
                    _ => &mut ends.exact,
                };
                *slot.get_or_insert(next)
            }
            PathPattern::Template(template) => {
                let node = self.templates.insert(template);
                self.templates.pattern_at(node).unwrap_or_else(|| {
                    self.templates.set_pattern(node, next);
                    next
                })
            }
        }
    }

    fn finish(self) -> HostGroup {
        let keys: Vec<LiteralKey> = self
            .literals
            .into_iter()
            .map(|(key, patterns)| LiteralKey { key, patterns })
            .collect();
        HostGroup {
            literals: LiteralTrie::build(&keys),
            templates: self.templates,
        }
    }
}

impl<T> RouteTable<T> {
    /// Builds a table, or lists every problem that prevents it (see [`RouteProblem`]).
    pub fn build(specs: Vec<RouteSpec<T>>) -> Result<RouteTable<T>, BuildError> {
        if u32::try_from(specs.len()).is_err() {
            return Err(BuildError {
                problems: vec![RouteProblem::TooManyRoutes { count: specs.len() }],
            });
        }
        let mut problems = Vec::new();
        let mut builders: Vec<GroupBuilder> = Vec::new();
        let mut group_of_host: HashMap<HostPattern, usize> = HashMap::new();
        // Routes of each pattern, in spec order, while building.
        let mut pattern_routes: Vec<Vec<u32>> = Vec::new();
        let mut routes = Vec::with_capacity(specs.len());

        for (index, spec) in specs.into_iter().enumerate() {
            // Every spec becomes a route, valid or not, so route numbers stay spec indices.
            let (param_names, valid) = match check_spec(index, &spec) {
                Ok(names) => (names, true),
                Err(problem) => {
                    problems.push(problem);
                    (Box::default(), false)
                }
            };
            let route = index as u32;
            routes.push(Route {
                target: spec.target,
                methods: spec.methods,
                param_names,
            });
            if !valid {
                continue;
            }

            let group = *group_of_host.entry(spec.host.clone()).or_insert_with(|| {
                builders.push(GroupBuilder {
                    host: spec.host.clone(),
                    literals: BTreeMap::new(),
                    templates: TemplateTrie::new(),
                });
                builders.len() - 1
            });
            let builder = &mut builders[group];
            let next_pattern = pattern_routes.len() as u32;
            let pattern = builder.pattern_for(&spec.path, next_pattern);
            if pattern == next_pattern {
                pattern_routes.push(Vec::new());
            }
            let siblings = &mut pattern_routes[pattern as usize];
            // Report the conflict against the first earlier route it overlaps.
            if let Some(&other) = siblings
                .iter()
                .find(|&&other| overlaps(routes[other as usize].methods, spec.methods))
            {
                problems.push(RouteProblem::Conflict {
                    first: other as usize,
                    second: index,
                    host: builder.host.clone(),
                    path: spec.path.clone(),
                    methods: spec
                        .methods
                        .iter()
                        .filter(|&m| routes[other as usize].methods.contains(m))
                        .collect(),
                });
            }
            siblings.push(route);
        }
        if !problems.is_empty() {
            return Err(BuildError { problems });
        }

        let patterns = pattern_routes
            .into_iter()
            .map(|members| Pattern {
                allow: members.iter().fold(MethodSet::EMPTY, |set, &r| {
                    set.union(routes[r as usize].methods)
                }),
                routes: members.into(),
            })
            .collect();
        let mut hosts = HostIndex::new();
        let mut any_host = None;
        let mut groups = Vec::with_capacity(builders.len());
        for (number, builder) in builders.into_iter().enumerate() {
            let number = number as u32;
            match &builder.host {
                HostPattern::Any => any_host = Some(number),
                HostPattern::Exact(host) => hosts.insert_exact(host.as_bytes(), number),
                HostPattern::Suffix(suffix) => {
                    // `check_spec` made sure the suffix starts with its dot.
                    let domain = suffix.strip_prefix('.').unwrap_or(suffix);
                    hosts.insert_wildcard(domain.as_bytes(), number);
                }
            }
            groups.push(builder.finish());
        }
        Ok(RouteTable {
            routes,
            patterns,
            groups,
            hosts,
            any_host,
        })
    }

    /// Finds the route for a request. `host` is the raw `Host` value (or the authority of an
    /// absolute-form target), `path` the normalised path (see [`super::normalize`]) without the
    /// query (a path not starting with `/` matches nothing), matched segment by segment without each segment's `;params`. Fills `params` when
    /// a template matches (a value without its `;params`). Allocates nothing.
    pub fn lookup<'t>(
        &'t self,
        host: &[u8],
        method: Method,
        path: &[u8],
        params: &mut Params<'t>,
    ) -> Lookup<'t, T> {
        params.clear();
        // Only an origin-form path names a route. Checked here, once, so the literal and the
        // template tries cannot read a path that starts with `;params` differently.
        if path.first() != Some(&b'/') {
            return Lookup::NotFound;
        }
        let group = match self.hosts.find(host_name(host)).or(self.any_host) {
            Some(group) => &self.groups[group as usize],
            None => return Lookup::NotFound,
        };
        // Methods of every pattern that matched the path without allowing `method`.
        let mut allow = MethodSet::EMPTY;

        // Each segment is matched without its `;params` (see `router::routed`).
        let path = RoutedPath::new(path);
        // 1. The exact path.
        let literal = group.literals.walk(path);
        if let Some(route) = literal.exact.and_then(|p| self.pick(p, method, &mut allow)) {
            return Lookup::Matched {
                target: &route.target,
                matched_prefix_len: 0,
            };
        }

        // 2. Templates, most literal segments first.
        let mut matched = None;
        group.templates.search(path, &mut |pattern, spans| {
            let Some(route) = self.pick(pattern, method, &mut allow) else {
                return false;
            };
            for (name, &span) in route.param_names.iter().zip(spans) {
                params.push(name, span);
            }
            matched = Some(route);
            true
        });
        if let Some(route) = matched {
            return Lookup::Matched {
                target: &route.target,
                matched_prefix_len: 0,
            };
        }

        // 3. Prefixes, longest first.
        for (pattern, covered) in group.literals.prefixes(literal) {
            if let Some(route) = self.pick(pattern, method, &mut allow) {
                return Lookup::Matched {
                    target: &route.target,
                    matched_prefix_len: path.raw_offset(covered),
                };
            }
        }

        // Every route has a method, so `allow` is empty exactly when no pattern matched.
        if allow.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::MethodNotAllowed { allow }
        }
    }

    /// The route of `pattern` that allows `method`, or `None` after adding the pattern's methods
    /// to `allow`.
    fn pick(&self, pattern: u32, method: Method, allow: &mut MethodSet) -> Option<&Route<T>> {
        let pattern = &self.patterns[pattern as usize];
        if !pattern.allow.contains(method) {
            *allow = allow.union(pattern.allow);
            return None;
        }
        pattern
            .routes
            .iter()
            .map(|&r| &self.routes[r as usize])
            .find(|route| route.methods.contains(method))
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

fn overlaps(a: MethodSet, b: MethodSet) -> bool {
    a.iter().any(|m| b.contains(m))
}

/// Checks that a spec is what the config layer's parsers produce (the enums are public, so a
/// spec may have been built by hand) and returns its template parameter names.
fn check_spec<T>(index: usize, spec: &RouteSpec<T>) -> Result<Box<[Box<str>]>, RouteProblem> {
    if spec.methods.is_empty() {
        return Err(RouteProblem::NoMethods { index });
    }
    if spec.host != HostPattern::Any {
        // Display writes the pattern as configured, so parsing it again must give it back.
        let text = spec.host.to_string();
        match HostPattern::parse(&text) {
            Ok(parsed) if parsed == spec.host => {}
            Ok(_) => {
                return Err(RouteProblem::InvalidHost {
                    index,
                    reason: "host pattern must be lowercase; wildcard suffixes start with '.'",
                });
            }
            Err(reason) => return Err(RouteProblem::InvalidHost { index, reason }),
        }
    }
    let text = spec.path.as_str();
    let parsed = match spec.path {
        PathPattern::Prefix(_) => PathPattern::prefix(text),
        PathPattern::Exact(_) | PathPattern::Template(_) => PathPattern::exact_or_template(text),
    };
    match parsed {
        Ok(parsed) if parsed == spec.path => {}
        Ok(PathPattern::Template(_)) => {
            return Err(RouteProblem::InvalidPath {
                index,
                reason: "an exact path must not contain '{' or '}'",
            });
        }
        Ok(_) => {
            return Err(RouteProblem::InvalidPath {
                index,
                reason: "a path template must have a `{param}` segment",
            });
        }
        Err(reason) => return Err(RouteProblem::InvalidPath { index, reason }),
    }
    Ok(match spec.path {
        PathPattern::Template(ref template) => template
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(Box::from)
            .collect(),
        _ => Box::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::MAX_TEMPLATE_PARAMS;
    use Method::{Delete, Get, Post, Put};

    /// `host` "" is no host; a `path` ending in `*` is a prefix, else exact or template.
    fn route(
        host: &str,
        methods: &[Method],
        path: &str,
        target: &'static str,
    ) -> RouteSpec<&'static str> {
        RouteSpec {
            host: if host.is_empty() {
                HostPattern::Any
            } else {
                HostPattern::parse(host).expect("valid host")
            },
            methods: if methods.is_empty() {
                MethodSet::ANY
            } else {
                methods.iter().copied().collect()
            },
            path: match path.strip_suffix('*') {
                Some(prefix) => PathPattern::prefix(prefix),
                None => PathPattern::exact_or_template(path),
            }
            .expect("valid path"),
            target,
        }
    }

    fn table(specs: Vec<RouteSpec<&'static str>>) -> RouteTable<&'static str> {
        RouteTable::build(specs).expect("routes build")
    }

    /// The target's name, `405 <methods>` or `404`.
    fn answer(table: &RouteTable<&'static str>, host: &str, method: Method, path: &str) -> String {
        let mut params = Params::new();
        describe(table.lookup(host.as_bytes(), method, path.as_bytes(), &mut params))
    }

    fn describe(lookup: Lookup<'_, &'static str>) -> String {
        match lookup {
            Lookup::Matched { target, .. } => (*target).to_owned(),
            Lookup::MethodNotAllowed { allow } => {
                let names: Vec<_> = allow.iter().map(|m| m.as_str().unwrap_or("?")).collect();
                format!("405 {}", names.join(","))
            }
            Lookup::NotFound => "404".to_owned(),
        }
    }

    fn prefix_len(table: &RouteTable<&'static str>, method: Method, path: &str) -> Option<usize> {
        match table.lookup(b"", method, path.as_bytes(), &mut Params::new()) {
            Lookup::Matched {
                matched_prefix_len, ..
            } => Some(matched_prefix_len),
            _ => None,
        }
    }

    #[test]
    fn exact_beats_template_beats_prefix() {
        let t = table(vec![
            route("", &[], "/users/*", "prefix"),
            route("", &[], "/users/{id}", "template"),
            route("", &[], "/users/me", "exact"),
        ]);
        assert_eq!(answer(&t, "", Get, "/users/me"), "exact");
        assert_eq!(answer(&t, "", Get, "/users/42"), "template");
        assert_eq!(answer(&t, "", Get, "/users/42/x"), "prefix");
        assert_eq!(answer(&t, "", Get, "/users/"), "prefix");
        assert_eq!(answer(&t, "", Get, "/users"), "404");
    }

    #[test]
    fn a_path_not_in_origin_form_matches_nothing() {
        // Before: the literal trie skipped the leading `;mpd` and found the prefix while the
        // template trie refused the path, so the 405 named only the prefix's methods.
        let t = table(vec![
            route("", &[Get], "/users/{id}", "template"),
            route("", &[Delete], "/users/*", "prefix"),
            route("", &[], "/*", "root"),
        ]);
        for path in [";mpd/users/x", ";/users/x", "users/x", "", "*"] {
            assert_eq!(answer(&t, "", Post, path), "404", "{path:?}");
        }
        assert_eq!(answer(&t, "", Post, "/;mpd/users/x"), "root");
    }

    #[test]
    fn literal_segments_beat_parameters_left_to_right() {
        let t = table(vec![
            route("", &[], "/{kind}/me/posts", "pll"),
            route("", &[], "/users/{id}/posts", "lpl"),
            route("", &[], "/users/me/{x}", "llp"),
            route("", &[], "/{a}/{b}/{c}", "ppp"),
        ]);
        assert_eq!(answer(&t, "", Get, "/users/me/posts"), "llp");
        assert_eq!(answer(&t, "", Get, "/users/you/posts"), "lpl");
        assert_eq!(answer(&t, "", Get, "/teams/me/posts"), "pll");
        assert_eq!(answer(&t, "", Get, "/teams/me/likes"), "ppp");
        assert_eq!(answer(&t, "", Get, "/users/me/posts/"), "404");
        // A parameter needs a non-empty segment.
        assert_eq!(answer(&t, "", Get, "/users//posts"), "404");
    }

    #[test]
    fn longest_prefix_wins_and_reports_what_it_covered() {
        let t = table(vec![
            route("", &[], "/*", "root"),
            route("", &[], "/api*", "api"),
            route("", &[], "/api/v1/*", "v1"),
        ]);
        assert_eq!(answer(&t, "", Get, "/api/v1/users"), "v1");
        assert_eq!(prefix_len(&t, Get, "/api/v1/users"), Some(8));
        assert_eq!(answer(&t, "", Get, "/api/v2"), "api");
        assert_eq!(prefix_len(&t, Get, "/api/v2"), Some(4));
        assert_eq!(answer(&t, "", Get, "/api"), "api");
        assert_eq!(answer(&t, "", Get, "/other"), "root");
        assert_eq!(prefix_len(&t, Get, "/"), Some(1));
    }

    /// A prefix matches by segment: `/api` covers `/api` and `/api/...`, so a request cannot
    /// reach it by gluing bytes to its last segment (`/apiadmin`, `/api../x`), and a more
    /// specific route is never skipped that way.
    #[test]
    fn prefixes_match_whole_segments() {
        let t = table(vec![
            route("", &[], "/*", "root"),
            route("", &[], "/api*", "api"),
            route("", &[], "/static/*", "static"),
        ]);
        for path in ["/api2", "/apiadmin", "/api../x", "/api.json"] {
            assert_eq!(answer(&t, "", Get, path), "root", "{path}");
        }
        assert_eq!(answer(&t, "", Get, "/api/"), "api");
        assert_eq!(answer(&t, "", Get, "/api/x"), "api");
        assert_eq!(answer(&t, "", Get, "/static/a"), "static");
        assert_eq!(answer(&t, "", Get, "/staticx"), "root");
        assert_eq!(answer(&t, "", Get, "/static"), "root");
        let t = table(vec![route("", &[], "/api*", "api")]);
        assert_eq!(answer(&t, "", Get, "/apiadmin"), "404");
    }

    #[test]
    fn exact_and_template_matches_cover_no_prefix() {
        let t = table(vec![
            route("", &[], "/a", "exact"),
            route("", &[], "/b/{x}", "template"),
        ]);
        assert_eq!(prefix_len(&t, Get, "/a"), Some(0));
        assert_eq!(prefix_len(&t, Get, "/b/1"), Some(0));
    }

    #[test]
    fn result_does_not_depend_on_route_order() {
        let specs = vec![
            route("", &[Get], "/*", "root"),
            route("", &[Get], "/a/*", "a-prefix"),
            route("", &[Get], "/a/{x}", "a-param"),
            route("", &[Get], "/{x}/b", "param-b"),
            route("", &[Get], "/a/b", "exact"),
            route("", &[Post], "/a/{y}", "a-param-post"),
            route("*.example.com", &[Get], "/*", "wild"),
            route("api.example.com", &[Get], "/*", "api"),
        ];
        let requests = [
            ("", Get, "/a/b"),
            ("", Get, "/a/c"),
            ("", Post, "/a/c"),
            ("", Put, "/a/c"),
            ("", Get, "/z/b"),
            ("", Get, "/a/b/c"),
            ("x.example.com", Get, "/a"),
            ("api.example.com", Get, "/a"),
        ];
        let expected: Vec<String> = {
            let t = table(specs.clone());
            requests
                .iter()
                .map(|&(h, m, p)| answer(&t, h, m, p))
                .collect()
        };
        let mut permuted = specs;
        for rotation in 0..permuted.len() {
            permuted.rotate_left(1);
            let mut reversed = permuted.clone();
            reversed.reverse();
            for order in [permuted.clone(), reversed] {
                let t = table(order);
                let got: Vec<String> = requests
                    .iter()
                    .map(|&(h, m, p)| answer(&t, h, m, p))
                    .collect();
                assert_eq!(got, expected, "rotation {rotation}");
            }
        }
    }

    fn host_table() -> RouteTable<&'static str> {
        table(vec![
            route("", &[], "/*", "any"),
            route("*.example.com", &[], "/*", "wild"),
            route("*.eu.example.com", &[], "/*", "wild-eu"),
            route("api.example.com", &[], "/*", "api"),
            route("example.com", &[], "/*", "apex"),
            route("[::1]", &[], "/*", "ipv6"),
            route("10.0.0.1", &[], "/*", "ipv4"),
        ])
    }

    #[test]
    fn exact_host_beats_longest_wildcard_beats_no_host() {
        let t = host_table();
        assert_eq!(answer(&t, "api.example.com", Get, "/"), "api");
        assert_eq!(answer(&t, "www.example.com", Get, "/"), "wild");
        assert_eq!(answer(&t, "a.eu.example.com", Get, "/"), "wild-eu");
        assert_eq!(answer(&t, "eu.example.com", Get, "/"), "wild");
        assert_eq!(answer(&t, "example.com", Get, "/"), "apex");
        assert_eq!(answer(&t, "example.org", Get, "/"), "any");
        assert_eq!(answer(&t, "", Get, "/"), "any");
    }

    #[test]
    fn wildcards_match_one_or_more_labels_but_not_the_bare_domain() {
        let t = table(vec![route("*.example.com", &[], "/*", "wild")]);
        assert_eq!(answer(&t, "a.example.com", Get, "/"), "wild");
        assert_eq!(answer(&t, "a.b.example.com", Get, "/"), "wild");
        assert_eq!(answer(&t, "example.com", Get, "/"), "404");
        assert_eq!(answer(&t, ".example.com", Get, "/"), "404");
        assert_eq!(answer(&t, "aexample.com", Get, "/"), "404");
    }

    #[test]
    fn hosts_match_without_port_case_or_trailing_dot() {
        let t = host_table();
        assert_eq!(answer(&t, "api.example.com:8443", Get, "/"), "api");
        assert_eq!(answer(&t, "API.Example.COM", Get, "/"), "api");
        assert_eq!(answer(&t, "api.example.com.", Get, "/"), "api");
        assert_eq!(answer(&t, "Api.Example.Com.:80", Get, "/"), "api");
        assert_eq!(answer(&t, "WWW.EXAMPLE.COM:1", Get, "/"), "wild");
        assert_eq!(answer(&t, "[::1]:8080", Get, "/"), "ipv6");
        assert_eq!(answer(&t, "[::1]", Get, "/"), "ipv6");
        assert_eq!(answer(&t, "10.0.0.1:80", Get, "/"), "ipv4");
        // Malformed values simply match no configured host.
        assert_eq!(answer(&t, "[::1", Get, "/"), "any");
        assert_eq!(answer(&t, ":::", Get, "/"), "any");
    }

    #[test]
    fn the_chosen_host_group_is_the_only_one_considered() {
        let t = table(vec![
            route("", &[], "/*", "any"),
            route("*.example.com", &[], "/public/*", "wild"),
            route("api.example.com", &[Get], "/v1/*", "api"),
        ]);
        assert_eq!(answer(&t, "api.example.com", Get, "/public/x"), "404");
        assert_eq!(answer(&t, "api.example.com", Post, "/v1/x"), "405 GET");
        assert_eq!(answer(&t, "www.example.com", Get, "/other"), "404");
        assert_eq!(answer(&t, "example.org", Get, "/public/x"), "any");
    }

    #[test]
    fn no_routes_no_host_group() {
        let t = table(Vec::new());
        assert!(t.is_empty());
        assert_eq!(answer(&t, "example.com", Get, "/"), "404");
        let t = table(vec![route("api.example.com", &[], "/*", "api")]);
        assert_eq!(t.len(), 1);
        assert_eq!(answer(&t, "other.example.com", Get, "/"), "404");
    }

    #[test]
    fn methods_pick_among_routes_of_one_pattern() {
        let t = table(vec![
            route("", &[Get], "/items/{id}", "read"),
            route("", &[Put, Post], "/items/{id}", "write"),
            route("", &[Delete], "/items/{key}", "delete"),
        ]);
        assert_eq!(answer(&t, "", Get, "/items/1"), "read");
        assert_eq!(answer(&t, "", Post, "/items/1"), "write");
        assert_eq!(answer(&t, "", Delete, "/items/1"), "delete");
        assert_eq!(
            answer(&t, "", Method::Patch, "/items/1"),
            "405 GET,POST,PUT,DELETE"
        );
        assert_eq!(
            answer(&t, "", Method::Other, "/items/1"),
            "405 GET,POST,PUT,DELETE"
        );
    }

    #[test]
    fn a_less_specific_pattern_allowing_the_method_wins_over_405() {
        let t = table(vec![
            route("", &[Post], "/api/login", "login"),
            route("", &[Put], "/api/{thing}", "put-thing"),
            route("", &[Get], "/api/*", "api-get"),
            route("", &[Delete], "/*", "root-delete"),
        ]);
        assert_eq!(answer(&t, "", Post, "/api/login"), "login");
        assert_eq!(answer(&t, "", Put, "/api/login"), "put-thing");
        assert_eq!(answer(&t, "", Get, "/api/login"), "api-get");
        assert_eq!(answer(&t, "", Delete, "/api/login"), "root-delete");
        // Allow lists every pattern that matched the path.
        assert_eq!(
            answer(&t, "", Method::Patch, "/api/login"),
            "405 GET,POST,PUT,DELETE"
        );
        assert_eq!(answer(&t, "", Method::Patch, "/api/x/y"), "405 GET,DELETE");
        assert_eq!(answer(&t, "", Method::Patch, "/elsewhere"), "405 DELETE");
    }

    #[test]
    fn documented_examples_hold() {
        let t = table(vec![
            route("", &[Get], "/users/me", "exact"),
            route("", &[Get], "/users/{id}", "template"),
            route("", &[Post], "/users/*", "prefix"),
        ]);
        assert_eq!(answer(&t, "", Get, "/users/me"), "exact");
        assert_eq!(answer(&t, "", Get, "/users/7"), "template");
        assert_eq!(answer(&t, "", Post, "/users/7"), "prefix");
        assert_eq!(prefix_len(&t, Post, "/users/7"), Some(7));
        assert_eq!(answer(&t, "", Put, "/users/7"), "405 GET,POST");
        assert_eq!(answer(&t, "", Get, "/teams"), "404");
    }

    #[test]
    fn template_parameters_are_extracted() {
        let t = table(vec![
            route("", &[Get], "/users/{user}/orders/{order}", "order"),
            route("", &[Post], "/users/{id}/orders/{n}", "order-post"),
            route("", &[], "/users/*", "users"),
        ]);
        let path = b"/users/alice/orders/%20x";
        let mut params = Params::new();
        let found = t.lookup(b"", Get, path, &mut params);
        assert!(matches!(
            found,
            Lookup::Matched {
                target: &"order",
                ..
            }
        ));
        assert_eq!(params.get("user", path), Some(&b"alice"[..]));
        assert_eq!(params.get("order", path), Some(&b"%20x"[..]));
        assert_eq!(params.get("id", path), None);
        assert_eq!(
            params.iter().collect::<Vec<_>>(),
            vec![("user", 7..12), ("order", 20..24)]
        );
        // The names are those of the route that matched.
        t.lookup(b"", Post, path, &mut params);
        assert_eq!(params.get("id", path), Some(&b"alice"[..]));
        assert_eq!(params.get("n", path), Some(&b"%20x"[..]));
        // A template that did not win leaves nothing behind.
        assert!(matches!(
            t.lookup(b"", Put, path, &mut params),
            Lookup::Matched {
                target: &"users",
                ..
            }
        ));
        assert!(params.is_empty());
    }

    /// RFC 3986 sec. 3.3 leaves `;` to the scheme, and servlet containers cut a segment's
    /// `;params` off before resolving it: each segment is matched without them, so
    /// `/admin;x/secret` cannot fall past the `/admin/` route into a catch-all.
    #[test]
    fn path_parameters_are_ignored_when_matching() {
        let t = table(vec![
            route("", &[], "/*", "root"),
            route("", &[], "/admin", "admin"),
            route("", &[], "/admin/*", "admin-tree"),
            route("", &[], "/api*", "api"),
            route("", &[Get], "/users/{id}/posts", "posts"),
        ]);
        assert_eq!(answer(&t, "", Get, "/admin;x/secret"), "admin-tree");
        assert_eq!(prefix_len(&t, Get, "/admin;x/secret"), Some(9));
        assert_eq!(answer(&t, "", Get, "/admin;x"), "admin");
        assert_eq!(answer(&t, "", Get, "/admin;a;b/x;y/z"), "admin-tree");
        assert_eq!(answer(&t, "", Get, "/api;v=2/x"), "api");
        assert_eq!(prefix_len(&t, Get, "/api;v=2/x"), Some(8));
        assert_eq!(prefix_len(&t, Get, "/api;v=2"), Some(8));
        assert_eq!(answer(&t, "", Get, "/apix;v=2"), "root");
        // An encoded `;` is data.
        assert_eq!(answer(&t, "", Get, "/admin%3Bx/secret"), "root");
        let path = b"/users/7;v=1/posts;page=2";
        let mut params = Params::new();
        assert!(matches!(
            t.lookup(b"", Get, path, &mut params),
            Lookup::Matched {
                target: &"posts",
                ..
            }
        ));
        assert_eq!(params.get("id", path), Some(&b"7"[..]));
    }

    #[test]
    fn the_most_parameters_a_template_may_name_are_all_extracted() {
        let template: String = (0..MAX_TEMPLATE_PARAMS)
            .map(|i| format!("/{{p{i}}}"))
            .collect();
        let t = table(vec![RouteSpec {
            host: HostPattern::Any,
            methods: MethodSet::ANY,
            path: PathPattern::exact_or_template(&template).expect("valid template"),
            target: "all",
        }]);
        let path: String = (0..MAX_TEMPLATE_PARAMS).map(|i| format!("/v{i}")).collect();
        let mut params = Params::new();
        t.lookup(b"", Get, path.as_bytes(), &mut params);
        assert_eq!(params.len(), MAX_TEMPLATE_PARAMS);
        assert_eq!(params.get("p7", path.as_bytes()), Some(&b"v7"[..]));
    }

    fn problems(specs: Vec<RouteSpec<&'static str>>) -> Vec<RouteProblem> {
        match RouteTable::build(specs) {
            Ok(_) => Vec::new(),
            Err(err) => err.problems,
        }
    }

    #[test]
    fn overlapping_routes_are_refused_naming_both() {
        let found = problems(vec![
            route("", &[Get], "/a", "one"),
            route("", &[Post], "/a", "two"),
            route("", &[Post, Put], "/a", "three"),
        ]);
        assert_eq!(
            found,
            vec![RouteProblem::Conflict {
                first: 1,
                second: 2,
                host: HostPattern::Any,
                path: PathPattern::Exact("/a".into()),
                methods: MethodSet::EMPTY.with(Post),
            }]
        );
        let found = problems(vec![
            route("*.example.com", &[], "/u/{id}", "one"),
            route("*.example.com", &[Get], "/u/{name}", "two"),
            route("", &[], "/p/*", "three"),
            route("", &[Get], "/p/*", "four"),
        ]);
        assert!(matches!(
            found[..],
            [
                RouteProblem::Conflict {
                    first: 0,
                    second: 1,
                    ..
                },
                RouteProblem::Conflict {
                    first: 2,
                    second: 3,
                    ..
                }
            ]
        ));
    }

    #[test]
    fn distinct_hosts_kinds_or_methods_do_not_conflict() {
        assert!(
            problems(vec![
                route("", &[], "/a", "exact"),
                route("", &[], "/a*", "prefix"),
                route("a.example.com", &[], "/a", "other host"),
                route("*.a.example.com", &[], "/a", "wildcard host"),
                route("", &[Get], "/b/{x}", "get"),
                route("", &[Post], "/b/{y}", "post"),
                route("", &[], "/b/{x}/", "trailing slash"),
            ])
            .is_empty()
        );
    }

    #[test]
    fn malformed_specs_are_refused_with_their_index() {
        let mut no_methods = route("", &[], "/a", "x");
        no_methods.methods = MethodSet::EMPTY;
        let mut upper_host = route("", &[], "/b", "x");
        upper_host.host = HostPattern::Exact("API.example.com".into());
        let mut dotless_suffix = route("", &[], "/c", "x");
        dotless_suffix.host = HostPattern::Suffix("example.com".into());
        let mut paramless = route("", &[], "/d", "x");
        paramless.path = PathPattern::Template("/d".into());
        let mut braces = route("", &[], "/e", "x");
        braces.path = PathPattern::Exact("/e/{x}".into());
        let mut relative = route("", &[], "/f", "x");
        relative.path = PathPattern::Prefix("f/".into());
        let mut too_many = route("", &[], "/g", "x");
        too_many.path = PathPattern::Template("/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}".into());
        let found = problems(vec![
            no_methods,
            upper_host,
            dotless_suffix,
            paramless,
            braces,
            relative,
            too_many,
            route("", &[], "/ok", "fine"),
        ]);
        let indices: Vec<usize> = found
            .iter()
            .map(|p| match *p {
                RouteProblem::NoMethods { index }
                | RouteProblem::InvalidHost { index, .. }
                | RouteProblem::InvalidPath { index, .. } => index,
                _ => usize::MAX,
            })
            .collect();
        assert_eq!(indices, vec![0, 1, 2, 3, 4, 5, 6]);
        assert!(matches!(found[0], RouteProblem::NoMethods { .. }));
        assert!(matches!(found[1], RouteProblem::InvalidHost { .. }));
        assert!(matches!(found[2], RouteProblem::InvalidHost { .. }));
        assert!(matches!(found[3..], [RouteProblem::InvalidPath { .. }, ..]));
    }

    #[test]
    fn build_errors_read_as_sentences() {
        let err = RouteTable::build(vec![
            route("api.example.com", &[Get, Post], "/u/{id}", "one"),
            route("api.example.com", &[Post, Get], "/u/{name}", "two"),
        ])
        .expect_err("conflict");
        assert_eq!(
            err.to_string(),
            "routes 0 and 1 conflict: both match host `api.example.com`, path `/u/{name}` and \
             method GET POST"
        );
    }
}
