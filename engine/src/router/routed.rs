//! The bytes a path is matched on: owns reading a request path without its segments' `;`
//! parameters, and mapping what was matched back to offsets in the path as sent.
//!
//! RFC 3986 sec. 3.3 leaves `;` inside a segment to the scheme; servlet containers (Tomcat,
//! Jetty) read everything from a segment's first `;` to its end as parameters that are not part
//! of the path, so `/admin;x/secret` is `/admin/secret` to them. Matching the raw bytes would
//! send that request past an `/admin/` route to whatever catches the rest. So the router
//! matches each segment up to its first `;`, while the proxy forwards the path with its
//! parameters (a servlet upstream needs `;jsessionid=...`). The route chosen is then the one
//! for the path a servlet container serves; any other server sees a segment named `admin;x`,
//! which the route for `/admin/` now answers instead of a catch-all: never a less specific
//! route than the request names. `%3B` is data, not a delimiter, here as for those containers.
//!
//! Paths without `;` (nearly all) cost one `memchr` and are then read as they are.

use memchr::memchr;

/// A request path as the router matches it. Offsets are into the path as given; the matched
/// bytes skip each segment's parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RoutedPath<'p> {
    raw: &'p [u8],
    /// Whether `raw` holds a `;` at all; when not, matched bytes and raw bytes are the same.
    params: bool,
}

impl<'p> RoutedPath<'p> {
    pub(crate) fn new(raw: &'p [u8]) -> RoutedPath<'p> {
        RoutedPath {
            raw,
            params: memchr(b';', raw).is_some(),
        }
    }

    /// The path as given.
    pub(crate) fn raw(&self) -> &'p [u8] {
        self.raw
    }

    /// The raw offset of the first matched byte.
    pub(crate) fn start(&self) -> usize {
        self.skip_params(0)
    }

    /// The matched byte at raw offset `pos`, an offset this type handed out (never the start
    /// of parameters).
    pub(crate) fn byte_at(&self, pos: usize) -> Option<u8> {
        self.raw.get(pos).copied()
    }

    /// If the matched bytes from raw offset `pos` start with `edge` (which holds no `;`), the
    /// raw offset after them and after any parameters that directly follow.
    pub(crate) fn match_edge(&self, pos: usize, edge: &[u8]) -> Option<usize> {
        if !self.params {
            let rest = self.raw.get(pos..)?;
            return rest.starts_with(edge).then_some(pos + edge.len());
        }
        let mut pos = pos;
        for &byte in edge {
            if self.raw.get(pos) != Some(&byte) {
                return None;
            }
            pos = self.skip_params(pos + 1);
        }
        Some(pos)
    }

    /// The raw offset where the first `matched` matched bytes end, parameters directly after
    /// them included: what a prefix of that length covers in the path as sent.
    pub(crate) fn raw_offset(&self, matched: usize) -> usize {
        if !self.params {
            return matched;
        }
        let mut pos = self.start();
        for _ in 0..matched {
            pos = self.skip_params(pos + 1);
        }
        pos
    }

    /// The end of the name of the segment at `start..end`: its first `;`, or `end`.
    pub(crate) fn name_end(&self, start: usize, end: usize) -> usize {
        if !self.params {
            return end;
        }
        memchr(b';', &self.raw[start..end]).map_or(end, |semi| start + semi)
    }

    /// `pos`, or past the parameters starting there (to the next `/` or the end).
    fn skip_params(&self, pos: usize) -> usize {
        if !self.params || self.raw.get(pos) != Some(&b';') {
            return pos;
        }
        memchr(b'/', &self.raw[pos..]).map_or(self.raw.len(), |slash| pos + slash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The matched bytes, read through the same calls the tries make.
    fn matched(raw: &str) -> String {
        let path = RoutedPath::new(raw.as_bytes());
        let mut out = Vec::new();
        let mut pos = path.start();
        while let Some(byte) = path.byte_at(pos) {
            out.push(byte);
            pos = path.match_edge(pos, &[byte]).expect("the byte just read");
        }
        String::from_utf8(out).expect("ASCII")
    }

    #[test]
    fn parameters_are_skipped_segment_by_segment() {
        assert_eq!(matched("/admin;x/secret"), "/admin/secret");
        assert_eq!(matched("/a;b;c/d;e=f/"), "/a/d/");
        assert_eq!(matched("/a;x"), "/a");
        assert_eq!(matched("/plain/path"), "/plain/path");
        assert_eq!(matched("/a%3Bb/c"), "/a%3Bb/c");
        assert_eq!(matched(";x/a"), "/a");
    }

    #[test]
    fn offsets_map_back_to_the_path_as_sent() {
        let path = RoutedPath::new(b"/admin;x/secret;y");
        assert_eq!(path.raw_offset(0), 0);
        assert_eq!(path.raw_offset(6), 8, "`/admin` takes its parameters along");
        assert_eq!(path.raw_offset(7), 9);
        assert_eq!(path.raw_offset(13), 17);
        assert_eq!(path.name_end(1, 8), 6);
        assert_eq!(path.name_end(9, 17), 15);
        assert_eq!(path.match_edge(0, b"/admin/"), Some(9));
        assert_eq!(path.match_edge(0, b"/admin;"), None);
        let plain = RoutedPath::new(b"/a/b");
        assert_eq!((plain.raw_offset(2), plain.name_end(1, 2)), (2, 2));
    }
}
