//! What a route matches, as the configuration states it: a host pattern and a path pattern.
//!
//! Both the config validator (to report a bad pattern with its file and line) and the route
//! table builder use these types, so a pattern is parsed and checked in exactly one place.

use std::fmt;

/// Which `Host` values a route accepts. Hosts are compared case-insensitively, without port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// No `host` key: every host.
    Any,
    /// `api.example.com`: exactly this host (stored lowercase).
    Exact(Box<str>),
    /// `*.example.com`: any host ending in `.example.com` with at least one more label before it
    /// (stored lowercase, with the leading dot: `.example.com`). The bare `example.com` does not
    /// match, as with TLS wildcard certificates.
    Suffix(Box<str>),
}

impl HostPattern {
    /// Parses a `host` value: a DNS name or IP literal, optionally starting with `*.`.
    pub fn parse(text: &str) -> Result<HostPattern, &'static str> {
        let (wildcard, name) = match text.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        if name.is_empty() {
            return Err("host is empty");
        }
        if name.contains('*') {
            return Err("a wildcard is only allowed as the whole first label (`*.example.com`)");
        }
        if name.contains(':') && !name.starts_with('[') {
            return Err("host must not include a port");
        }
        let valid = |b: u8| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':')
        };
        if !name.bytes().all(valid)
            || name.starts_with('.')
            || name.ends_with('.')
            || name.contains("..")
        {
            return Err("host must be a DNS name (letters, digits, '-', '.') or an IP literal");
        }
        let lower = name.to_ascii_lowercase();
        Ok(if wildcard {
            HostPattern::Suffix(format!(".{lower}").into_boxed_str())
        } else {
            HostPattern::Exact(lower.into_boxed_str())
        })
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Any => f.write_str("*"),
            HostPattern::Exact(host) => f.write_str(host),
            HostPattern::Suffix(suffix) => write!(f, "*{suffix}"),
        }
    }
}

/// Which paths a route accepts. Paths are matched after normalisation (see `router::normalize`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathPattern {
    /// `path = "/healthz"`: exactly this path.
    Exact(Box<str>),
    /// `path_prefix = "/api/"`: this path and everything below it, by segment. A prefix ending
    /// in `/` matches every path starting with it; `/api` matches `/api` and `/api/...`, never
    /// `/api2` or `/api../x`, so no request reaches it by gluing bytes to its last segment.
    Prefix(Box<str>),
    /// `path = "/users/{id}/orders"`: segments in braces match any one non-empty segment.
    Template(Box<str>),
}

/// The most parameters a template may name. Fixed so a lookup needs no allocation.
pub const MAX_TEMPLATE_PARAMS: usize = 8;

impl PathPattern {
    /// Parses a `path` value: exact, or a template when a segment is `{name}`.
    pub fn exact_or_template(text: &str) -> Result<PathPattern, &'static str> {
        check_path_chars(text)?;
        if !text.contains('{') && !text.contains('}') {
            return Ok(PathPattern::Exact(text.into()));
        }
        let mut names: Vec<&str> = Vec::new();
        for segment in text.split('/').skip(1) {
            if !(segment.contains('{') || segment.contains('}')) {
                continue;
            }
            let name = segment
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .ok_or("a parameter must be a whole segment, like `/users/{id}`")?;
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err("a parameter name must be letters, digits or '_'");
            }
            if names.contains(&name) {
                return Err("a parameter name is used twice in one path");
            }
            names.push(name);
        }
        if names.len() > MAX_TEMPLATE_PARAMS {
            return Err("a path template may name at most 8 parameters");
        }
        Ok(PathPattern::Template(text.into()))
    }

    /// Parses a `path_prefix` value.
    pub fn prefix(text: &str) -> Result<PathPattern, &'static str> {
        check_path_chars(text)?;
        if text.contains('{') || text.contains('}') {
            return Err("path_prefix cannot hold parameters; use `path` for templates");
        }
        Ok(PathPattern::Prefix(text.into()))
    }

    pub fn as_str(&self) -> &str {
        match self {
            PathPattern::Exact(p) | PathPattern::Prefix(p) | PathPattern::Template(p) => p,
        }
    }
}

/// A configured path must already be in normal form, or it could never match a normalised
/// request path.
fn check_path_chars(text: &str) -> Result<(), &'static str> {
    if !text.starts_with('/') {
        return Err("path must start with '/'");
    }
    if text
        .bytes()
        .any(|b| b <= b' ' || b == 0x7f || b == b'?' || b == b'#' || b >= 0x80)
    {
        return Err("path must not contain spaces, control bytes, '?', '#' or non-ASCII bytes");
    }
    if text.contains("//") || text.split('/').any(|s| s == "." || s == "..") {
        return Err("path must be normalised: no '//', '.' or '..' segments");
    }
    if text.contains('%') {
        return Err("path must not be percent-encoded; write the decoded characters");
    }
    // Requests are matched with each segment's `;params` left out (see `router::routed`), so a
    // pattern holding `;` could never match.
    if text.contains(';') {
        return Err("path must not contain ';': path parameters are ignored when matching");
    }
    Ok(())
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathPattern::Exact(p) | PathPattern::Template(p) => f.write_str(p),
            PathPattern::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_parse_to_lowercase_patterns() {
        assert_eq!(
            HostPattern::parse("API.example.com"),
            Ok(HostPattern::Exact("api.example.com".into()))
        );
        assert_eq!(
            HostPattern::parse("*.Example.com"),
            Ok(HostPattern::Suffix(".example.com".into()))
        );
        assert!(HostPattern::parse("a.*.com").is_err());
        assert!(HostPattern::parse("example.com:80").is_err());
        assert!(HostPattern::parse("*.").is_err());
    }

    #[test]
    fn paths_parse_to_their_kind() {
        assert_eq!(
            PathPattern::exact_or_template("/healthz"),
            Ok(PathPattern::Exact("/healthz".into()))
        );
        assert!(matches!(
            PathPattern::exact_or_template("/users/{id}/orders"),
            Ok(PathPattern::Template(_))
        ));
        assert!(PathPattern::exact_or_template("/users/x{id}").is_err());
        assert!(PathPattern::exact_or_template("/a/{id}/{id}").is_err());
        assert!(PathPattern::prefix("api/").is_err());
        assert!(PathPattern::prefix("/api/../x").is_err());
        assert!(PathPattern::prefix("/a%2fb").is_err());
        assert!(PathPattern::prefix("/admin;x/").is_err());
        assert!(PathPattern::exact_or_template("/a;v=1").is_err());
    }
}
