//! The path a prefix route forwards: owns turning the routed path into what the upstream
//! receives when the route strips its prefix (`strip_prefix`) or replaces it
//! (`prefix_rewrite`). Pure: bytes in, bytes out, no I/O.
//!
//! Cutting bytes off a path and gluing others on is where a path that was routed one way turns
//! into another: with a byte prefix `/api`, `/api../x` came out as `/../x` and `/apiadmin` as
//! `/admin`. Three rules keep the result under the route:
//!
//! 1. The prefix must end at a segment boundary of the routed path, as [`super::RouteTable`]
//!    guarantees for the `matched_prefix_len` it reports; anything else is refused
//!    ([`RewriteError::NotAPrefix`]) rather than cut mid-segment.
//! 2. The rest of the path is normalised again as a path of its own, so dot segments in it
//!    can never climb above its root, whatever spelling reached this point.
//! 3. The replacement (`/` when stripping) and the rest are joined with exactly one `/`, so no
//!    segment is glued to another or doubled.
//!
//! So the result is the replacement without its trailing `/`, followed by `/` and the rest or
//! by nothing: it never escapes the replacement. With the segment-aware prefixes of the route
//! table the outcome matches what the forwarder wrote before for every well-formed case
//! (`/api/users` with prefix `/api/` or `/api` and `strip_prefix` is `/users`).

use std::fmt;

use super::normalize::{NormalizeError, Normalized, normalize_path};
use crate::error::{Error, ErrorKind, Side};

/// What a prefix route does to the prefix it matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrefixRewrite<'a> {
    /// `strip_prefix = true`: remove it; the result still starts with `/`.
    Strip,
    /// `prefix_rewrite = "..."`: put these bytes in its place. A validated `prefix_rewrite` is
    /// a normal path starting with `/`.
    Replace(&'a [u8]),
}

/// Why a path could not be rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewriteError {
    /// `matched_prefix_len` is zero, past the end of the routed path, or not at the end of a
    /// segment: not what a lookup reports for a prefix route. A bug, not the client's fault.
    NotAPrefix,
    /// The replacement does not start with `/`. Validation refuses such a `prefix_rewrite`.
    InvalidReplacement,
    /// The rest of the path has no normal form: the client's fault, answered 400.
    Path(NormalizeError),
}

impl RewriteError {
    pub const fn as_str(self) -> &'static str {
        match self {
            RewriteError::NotAPrefix => "matched prefix does not end a segment of the path",
            RewriteError::InvalidReplacement => "prefix replacement does not start with '/'",
            RewriteError::Path(err) => err.as_str(),
        }
    }
}

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::error::Error for RewriteError {}

impl From<RewriteError> for Error {
    fn from(err: RewriteError) -> Error {
        match err {
            RewriteError::Path(err) => err.into(),
            RewriteError::NotAPrefix | RewriteError::InvalidReplacement => {
                Error::new(ErrorKind::Config, Side::Internal, err.as_str())
            }
        }
    }
}

/// Writes into `out` (cleared first) the path to forward for a request routed on `routed` (the
/// normalised path without its query, as given to the lookup) to a prefix route that covered
/// its first `matched_prefix_len` bytes, as the module doc describes.
///
/// | `routed` | prefix | rewrite | `out` |
/// |---|---|---|---|
/// | `/api/users` | `/api/` (5) | `Strip` | `/users` |
/// | `/api/users` | `/api` (4) | `Replace(b"/v2")` | `/v2/users` |
/// | `/api` | `/api` (4) | `Strip` | `/` |
/// | `/api/` | `/api` (4) | `Replace(b"/v2/")` | `/v2/` |
///
/// Allocates nothing once `out` can hold `routed` and the replacement together.
pub fn rewrite_path(
    routed: &[u8],
    matched_prefix_len: usize,
    rewrite: PrefixRewrite<'_>,
    out: &mut Vec<u8>,
) -> Result<(), RewriteError> {
    let replacement: &[u8] = match rewrite {
        PrefixRewrite::Strip => b"/",
        PrefixRewrite::Replace(replacement) => replacement,
    };
    if replacement.first() != Some(&b'/') {
        return Err(RewriteError::InvalidReplacement);
    }
    let rest = rest_after_prefix(routed, matched_prefix_len)?;
    out.clear();
    if rest.is_empty() {
        out.extend_from_slice(replacement);
        return Ok(());
    }
    // Rule 2: the rest, normalised on its own, starts with `/` and stays below it.
    match normalize_path(rest, out).map_err(RewriteError::Path)? {
        Normalized::Unchanged => out.extend_from_slice(rest),
        Normalized::Rewritten => {}
    }
    // Rule 3: the replacement's trailing `/` is the rest's leading one.
    let base = replacement.strip_suffix(b"/").unwrap_or(replacement);
    let len = out.len();
    out.resize(len + base.len(), 0);
    out.copy_within(..len, base.len());
    out[..base.len()].copy_from_slice(base);
    debug_assert!(
        out.starts_with(base) && matches!(out.get(base.len()), Some(b'/')),
        "a rewritten path stays below its replacement"
    );
    Ok(())
}

/// Rule 1: the part of `routed` after a prefix of `len` bytes that ends a segment, as a path of
/// its own (starting with `/`), or empty when the prefix covers it all.
fn rest_after_prefix(routed: &[u8], len: usize) -> Result<&[u8], RewriteError> {
    let (Some(prefix), Some(rest)) = (routed.get(..len), routed.get(len..)) else {
        return Err(RewriteError::NotAPrefix);
    };
    match (prefix.last(), rest.first()) {
        (None, _) => Err(RewriteError::NotAPrefix),
        (Some(_), None | Some(b'/')) => Ok(rest),
        // The prefix's own trailing `/` starts the rest.
        (Some(b'/'), Some(_)) => Ok(&routed[len - 1..]),
        (Some(_), Some(_)) => Err(RewriteError::NotAPrefix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(
        routed: &str,
        len: usize,
        rewrite: PrefixRewrite<'_>,
    ) -> Result<String, RewriteError> {
        let mut out = b"stale".to_vec();
        rewrite_path(routed.as_bytes(), len, rewrite, &mut out)?;
        Ok(String::from_utf8(out).expect("ASCII in, ASCII out"))
    }

    const V2: PrefixRewrite<'static> = PrefixRewrite::Replace(b"/v2");
    const V2_SLASH: PrefixRewrite<'static> = PrefixRewrite::Replace(b"/v2/");

    #[test]
    fn the_documented_examples_hold() {
        use PrefixRewrite::Strip;
        assert_eq!(rewritten("/api/users", 5, Strip).as_deref(), Ok("/users"));
        assert_eq!(rewritten("/api/users", 4, Strip).as_deref(), Ok("/users"));
        assert_eq!(rewritten("/api/users", 4, V2).as_deref(), Ok("/v2/users"));
        assert_eq!(
            rewritten("/api/users", 5, V2_SLASH).as_deref(),
            Ok("/v2/users")
        );
        assert_eq!(rewritten("/api", 4, Strip).as_deref(), Ok("/"));
        assert_eq!(rewritten("/api", 4, V2).as_deref(), Ok("/v2"));
        assert_eq!(rewritten("/api/", 4, V2_SLASH).as_deref(), Ok("/v2/"));
        assert_eq!(rewritten("/api/", 5, Strip).as_deref(), Ok("/"));
        assert_eq!(rewritten("/api/", 4, V2).as_deref(), Ok("/v2/"));
        assert_eq!(
            rewritten("/anything", 1, V2_SLASH).as_deref(),
            Ok("/v2/anything")
        );
    }

    /// The routed path's `;params` are forwarded; a prefix covering a segment's parameters
    /// takes them along.
    #[test]
    fn parameters_stay_with_their_segment() {
        use PrefixRewrite::Strip;
        assert_eq!(
            rewritten("/admin;x/secret", 8, Strip).as_deref(),
            Ok("/secret")
        );
        assert_eq!(
            rewritten("/admin;x/secret", 9, Strip).as_deref(),
            Ok("/secret")
        );
        assert_eq!(
            rewritten("/a/b;v=1", 2, V2_SLASH).as_deref(),
            Ok("/v2/b;v=1")
        );
    }

    /// A prefix that does not end a segment is not one a lookup reports: cutting there would
    /// glue the rest into another path (`/apiadmin` -> `/admin`).
    #[test]
    fn cuts_inside_a_segment_are_refused() {
        use PrefixRewrite::Strip;
        for (routed, len) in [("/apiadmin", 4), ("/api../x", 4), ("/api", 5), ("/api", 0)] {
            assert_eq!(
                rewritten(routed, len, Strip),
                Err(RewriteError::NotAPrefix),
                "{routed} {len}"
            );
        }
        assert_eq!(
            rewritten("/a/b", 2, PrefixRewrite::Replace(b"v2/")),
            Err(RewriteError::InvalidReplacement)
        );
    }

    /// Whatever the rest holds, it is normalised below the replacement: `..` stays there.
    #[test]
    fn the_rest_never_climbs_out_of_the_replacement() {
        use PrefixRewrite::Strip;
        assert_eq!(rewritten("/api/../../etc", 4, V2).as_deref(), Ok("/v2/etc"));
        assert_eq!(
            rewritten("/api/%2e%2e/x", 5, V2_SLASH).as_deref(),
            Ok("/v2/x")
        );
        assert_eq!(rewritten("/api//x//", 4, Strip).as_deref(), Ok("/x/"));
        assert_eq!(
            rewritten("/api/a%2fb", 4, V2),
            Err(RewriteError::Path(NormalizeError::EncodedSeparator))
        );
    }

    #[test]
    fn the_output_buffer_stops_growing() {
        let mut out = Vec::with_capacity(64);
        let capacity = out.capacity();
        for (routed, len) in [("/api/a/b", 4), ("/api/x/../y", 5), ("/api", 4)] {
            rewrite_path(routed.as_bytes(), len, V2_SLASH, &mut out).expect("rewritten");
            assert_eq!(out.capacity(), capacity);
        }
    }

    proptest::proptest! {
        /// For any normal routed path and any prefix ending at a segment boundary, the result
        /// is the replacement followed by `/` and segments that are not `.` or `..`: it never
        /// escapes the replacement, and it is its own normal form.
        #[test]
        fn results_stay_below_the_replacement(
            segments in proptest::collection::vec(
                proptest::sample::select(vec!["a", "b", "..", ".", "", "c;x", "%2e%2e", "%41"]),
                1..8,
            ),
            cut in 0usize..8,
            replace in proptest::bool::ANY,
        ) {
            let raw = format!("/{}", segments.join("/"));
            let mut normal = Vec::new();
            let routed = match normalize_path(raw.as_bytes(), &mut normal) {
                Ok(Normalized::Unchanged) => raw.as_bytes().to_vec(),
                Ok(Normalized::Rewritten) => normal,
                Err(_) => return Ok(()),
            };
            // A prefix of whole segments, with or without its trailing `/`.
            let boundaries: Vec<usize> = (1..=routed.len())
                .filter(|&i| routed[i - 1] == b'/' || routed.get(i).is_none_or(|&b| b == b'/'))
                .collect();
            let len = boundaries[cut % boundaries.len()];
            let (rewrite, base): (PrefixRewrite<'_>, &[u8]) = if replace {
                (V2_SLASH, b"/v2")
            } else {
                (PrefixRewrite::Strip, b"")
            };
            let mut out = Vec::new();
            rewrite_path(&routed, len, rewrite, &mut out).expect("a boundary prefix rewrites");
            proptest::prop_assert!(out.starts_with(base), "{:?} -> {:?}", routed, out);
            let below = &out[base.len()..];
            proptest::prop_assert_eq!(below.first(), Some(&b'/'));
            for segment in below[1..].split(|&b| b == b'/') {
                proptest::prop_assert!(!matches!(segment, b"." | b".."), "{:?}", out);
            }
            let mut again = Vec::new();
            let fixed = match normalize_path(&out, &mut again) {
                Ok(Normalized::Unchanged) => true,
                Ok(Normalized::Rewritten) => again == out,
                Err(_) => false,
            };
            proptest::prop_assert!(fixed, "{:?} is not normal", out);
        }
    }
}
