//! Path matching within one host group: owns the two tries that turn a normalised path into the
//! path patterns it matches, most specific first.
//!
//! - [`LiteralTrie`] holds exact paths and prefixes, byte by byte (a radix tree: runs of bytes
//!   without branches are one edge). One walk along the request path finds the exact pattern, if
//!   any, and the deepest matching prefix; every node also points at the next shorter prefix
//!   above it that a path through the node matches, so the matching prefixes can be listed
//!   longest first without a stack.
//!
//! A prefix matches by segment: one ending in `/` matches every path starting with it; any
//! other (`/api`) matches itself and the paths continuing with `/` (`/api/x`), never
//! `/apix` or `/api../x`. Whether a prefix above a node qualifies depends only on the node's
//! own key (the byte after the prefix is part of it), so the chain is fixed at build time; only
//! the deepest node a walk reaches is checked against the request's next byte.
//! - [`TemplateTrie`] holds templates segment by segment; a node has literal children
//!   ([`Branches`]) and at most one parameter child. A depth-first search that tries the
//!   literal child before the parameter child visits the matching templates in precedence order
//!   (a literal beats a parameter at the first segment where they differ).
//!
//! Both report *pattern numbers*; which route of a pattern allows the method is the table's
//! business. Walking costs grow with the length of the path, not with the number of patterns.

use memchr::memchr;

use super::branch::Branches;
use super::routed::RoutedPath;
use super::spec::MAX_TEMPLATE_PARAMS;

/// Exact paths and prefixes of one host group.
#[derive(Debug)]
pub(crate) struct LiteralTrie {
    /// Node 0 is the root, the empty key.
    nodes: Vec<LiteralNode>,
}

#[derive(Debug, Default)]
struct LiteralNode {
    /// Bytes from the parent's key to this node's key.
    edge: Box<[u8]>,
    /// Length of this node's key: the bytes a prefix ending here covers.
    depth: usize,
    /// First byte of each child's edge; `children[i]` starts with `first_bytes[i]`. At most 256
    /// bytes, usually a handful: a plain scan beats memchr's set-up at that size.
    first_bytes: Box<[u8]>,
    children: Box<[u32]>,
    /// Pattern whose exact path is this key.
    exact: Option<u32>,
    /// Pattern whose prefix is this key.
    prefix: Option<u32>,
    /// The nearest node above this one holding a prefix that every path through this node
    /// matches by segment: the next candidate when this node's prefix does not match or does
    /// not allow the method.
    shorter_prefix: Option<u32>,
}

/// What a walk of the [`LiteralTrie`] found.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LiteralMatch {
    pub(crate) exact: Option<u32>,
    /// Deepest node with a prefix that matches the path by segment; start of the chain for
    /// [`LiteralTrie::prefixes`].
    longest_prefix: Option<u32>,
}

/// The patterns ending at one key of a [`LiteralTrie`]: the exact path and the prefix spelled by
/// the same bytes are two patterns.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KeyPatterns {
    pub(crate) exact: Option<u32>,
    pub(crate) prefix: Option<u32>,
}

/// One key of a [`LiteralTrie`] with what ends there.
pub(crate) struct LiteralKey {
    pub(crate) key: Box<[u8]>,
    pub(crate) patterns: KeyPatterns,
}

impl LiteralTrie {
    /// Builds the trie from keys sorted by `key`, each key once.
    pub(crate) fn build(keys: &[LiteralKey]) -> LiteralTrie {
        debug_assert!(keys.windows(2).all(|w| w[0].key < w[1].key));
        let mut trie = LiteralTrie { nodes: Vec::new() };
        trie.build_node(keys, 0, 0, &mut Vec::new());
        trie
    }

    /// Adds the node for `keys`, which all share their first `depth` bytes; its edge starts at
    /// `edge_start`. `above` holds the nodes above it that hold a prefix, nearest last. Returns
    /// its number.
    fn build_node(
        &mut self,
        keys: &[LiteralKey],
        edge_start: usize,
        depth: usize,
        above: &mut Vec<u32>,
    ) -> u32 {
        let index = self.nodes.len();
        let key: &[u8] = keys.first().map_or(&[], |k| &k.key[..depth]);
        // A path through this node continues each prefix above it with this key's next byte.
        let shorter_prefix = above.iter().rev().copied().find(|&node| {
            let node = &self.nodes[node as usize];
            ends_segment(&node.edge) || key.get(node.depth) == Some(&b'/')
        });
        self.nodes.push(LiteralNode {
            edge: key[edge_start..].into(),
            depth,
            shorter_prefix,
            ..LiteralNode::default()
        });
        let mut rest = keys;
        if let Some(first) = keys.first().filter(|k| k.key.len() == depth) {
            // Sorted keys put the one ending here first.
            self.nodes[index].exact = first.patterns.exact;
            self.nodes[index].prefix = first.patterns.prefix;
            rest = &keys[1..];
        }
        let holds_prefix = self.nodes[index].prefix.is_some();
        if holds_prefix {
            above.push(index as u32);
        }
        let (mut first_bytes, mut children) = (Vec::new(), Vec::new());
        while let Some(head) = rest.first() {
            let byte = head.key[depth];
            let run = rest.iter().take_while(|k| k.key[depth] == byte).count();
            let (group, tail) = rest.split_at(run);
            // In sorted order the first and last keys of a group share the least.
            let last = &group[group.len() - 1].key;
            let common = head
                .key
                .iter()
                .zip(last.iter())
                .take_while(|(a, b)| a == b)
                .count();
            first_bytes.push(byte);
            children.push(self.build_node(group, depth, common, above));
            rest = tail;
        }
        if holds_prefix {
            above.pop();
        }
        let node = &mut self.nodes[index];
        node.first_bytes = first_bytes.into();
        node.children = children.into();
        index as u32
    }

    /// Walks `path` once: the exact pattern and the deepest prefix matching by segment.
    pub(crate) fn walk(&self, path: RoutedPath<'_>) -> LiteralMatch {
        let mut found = LiteralMatch {
            exact: None,
            longest_prefix: None,
        };
        let mut index = 0;
        let mut node = &self.nodes[0];
        // The raw offset of the matched byte at `node.depth`.
        let mut pos = path.start();
        loop {
            let next = path.byte_at(pos);
            if node.prefix.is_some()
                && (ends_segment(&node.edge) || matches!(next, None | Some(b'/')))
            {
                found.longest_prefix = Some(index);
            }
            let Some(byte) = next else {
                found.exact = node.exact;
                return found;
            };
            let Some(slot) = node.first_bytes.iter().position(|&b| b == byte) else {
                return found;
            };
            index = node.children[slot];
            node = &self.nodes[index as usize];
            match path.match_edge(pos, &node.edge) {
                Some(after) => pos = after,
                None => return found,
            }
        }
    }

    /// The prefix patterns a walk matched, longest first, each with the number of matched bytes
    /// it covers (see [`RoutedPath::raw_offset`] for the bytes of the path as sent).
    pub(crate) fn prefixes(&self, found: LiteralMatch) -> impl Iterator<Item = (u32, usize)> + '_ {
        let mut next = found.longest_prefix;
        std::iter::from_fn(move || {
            let node = &self.nodes[next? as usize];
            next = node.shorter_prefix;
            Some((node.prefix?, node.depth))
        })
    }
}

/// Whether a key ending with `edge` ends a segment, so that it matches every path starting with
/// it. Only the root has an empty edge, and it holds no prefix.
fn ends_segment(edge: &[u8]) -> bool {
    edge.last() == Some(&b'/')
}

/// Templates of one host group, one trie level per path segment.
#[derive(Debug)]
pub(crate) struct TemplateTrie {
    /// Node 0 is the root, before the first segment.
    nodes: Vec<TemplateNode>,
}

#[derive(Debug, Default)]
struct TemplateNode {
    /// Literal segment -> node.
    literals: Branches,
    /// The node after a `{param}` segment.
    param: Option<u32>,
    /// The pattern whose template ends here.
    pattern: Option<u32>,
}

/// Byte ranges of the parameter segments along one branch of the search, left to right.
pub(crate) type Spans = [(usize, usize); MAX_TEMPLATE_PARAMS];

impl TemplateTrie {
    pub(crate) fn new() -> TemplateTrie {
        TemplateTrie {
            nodes: vec![TemplateNode::default()],
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.nodes.len() == 1
    }

    /// The node where `template` (already validated: starts with `/`, parameters are whole
    /// `{name}` segments) ends, created if missing. Two templates that differ only in parameter
    /// names end at the same node: they are the same pattern.
    pub(crate) fn insert(&mut self, template: &str) -> usize {
        let mut node = 0;
        for segment in template.as_bytes()[1..].split(|&b| b == b'/') {
            let is_param = segment.first() == Some(&b'{');
            let existing = if is_param {
                self.nodes[node].param
            } else {
                self.nodes[node].literals.get_exact(segment)
            };
            node = match existing {
                Some(child) => child as usize,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(TemplateNode::default());
                    // A u32 numbers more nodes than any configuration that fits in memory creates.
                    let parent = &mut self.nodes[node];
                    if is_param {
                        parent.param = Some(child as u32);
                    } else {
                        parent.literals.insert(segment, child as u32);
                    }
                    child
                }
            };
        }
        node
    }

    /// The pattern ending at `node`, from [`TemplateTrie::insert`].
    pub(crate) fn pattern_at(&self, node: usize) -> Option<u32> {
        self.nodes[node].pattern
    }

    pub(crate) fn set_pattern(&mut self, node: usize, pattern: u32) {
        self.nodes[node].pattern = Some(pattern);
    }

    /// Calls `visit` with each pattern matching `path`, most specific first, and the spans of
    /// its parameter segments (without their `;params`), until `visit` returns true. Returns
    /// whether it did.
    pub(crate) fn search<F>(&self, path: RoutedPath<'_>, visit: &mut F) -> bool
    where
        F: FnMut(u32, &[(usize, usize)]) -> bool,
    {
        if self.is_empty() || path.raw().first() != Some(&b'/') {
            return false;
        }
        let mut spans: Spans = [(0, 0); MAX_TEMPLATE_PARAMS];
        self.descend(0, path, Some(1), &mut spans, 0, visit)
    }

    /// Matches the segment starting at `start` (`None`: the path is used up) below `node`.
    /// Recursion depth is bounded by the longest configured template, not by the request.
    fn descend<F>(
        &self,
        node: u32,
        path: RoutedPath<'_>,
        start: Option<usize>,
        spans: &mut Spans,
        params: usize,
        visit: &mut F,
    ) -> bool
    where
        F: FnMut(u32, &[(usize, usize)]) -> bool,
    {
        let node = &self.nodes[node as usize];
        let Some(start) = start else {
            return match node.pattern {
                Some(pattern) => visit(pattern, &spans[..params]),
                None => false,
            };
        };
        let raw = path.raw();
        let end = memchr(b'/', &raw[start..]).map_or(raw.len(), |slash| start + slash);
        let name_end = path.name_end(start, end);
        let segment = &raw[start..name_end];
        let next = (end < raw.len()).then_some(end + 1);
        if let Some(child) = node.literals.find(segment, false) {
            if self.descend(child, path, next, spans, params, visit) {
                return true;
            }
        }
        // A parameter matches one non-empty segment. Every template names at most
        // MAX_TEMPLATE_PARAMS parameters, so a slot is always free; `get_mut` keeps that a
        // build-time invariant rather than a reason to panic.
        if let (Some(child), false) = (node.param, segment.is_empty()) {
            if let Some(slot) = spans.get_mut(params) {
                *slot = (start, name_end);
                if self.descend(child, path, next, spans, params + 1, visit) {
                    return true;
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn literal_trie(keys: &[(&str, Option<u32>, Option<u32>)]) -> LiteralTrie {
        let mut keys: Vec<LiteralKey> = keys
            .iter()
            .map(|&(key, exact, prefix)| LiteralKey {
                key: key.as_bytes().into(),
                patterns: KeyPatterns { exact, prefix },
            })
            .collect();
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        LiteralTrie::build(&keys)
    }

    fn prefixes(trie: &LiteralTrie, path: &str) -> Vec<(u32, usize)> {
        trie.prefixes(trie.walk(routed(path))).collect()
    }

    fn routed(path: &str) -> RoutedPath<'_> {
        RoutedPath::new(path.as_bytes())
    }

    #[test]
    fn literal_walk_finds_exact_and_prefixes_longest_first() {
        let trie = literal_trie(&[
            ("/", None, Some(0)),
            ("/api", Some(1), Some(2)),
            ("/api/", None, Some(3)),
            ("/api/v1/users", Some(4), None),
            ("/apx", Some(5), None),
        ]);
        assert_eq!(trie.walk(routed("/api")).exact, Some(1));
        assert_eq!(trie.walk(routed("/api/v1/users")).exact, Some(4));
        assert_eq!(trie.walk(routed("/api/v1/user")).exact, None);
        assert_eq!(trie.walk(routed("/apx")).exact, Some(5));
        assert_eq!(
            prefixes(&trie, "/api/v1/users"),
            vec![(3, 5), (2, 4), (0, 1)]
        );
        assert_eq!(prefixes(&trie, "/api"), vec![(2, 4), (0, 1)]);
        assert_eq!(prefixes(&trie, "/api/"), vec![(3, 5), (2, 4), (0, 1)]);
        assert_eq!(prefixes(&trie, "/ap"), vec![(0, 1)]);
        assert_eq!(prefixes(&trie, ""), vec![]);
    }

    /// A prefix not ending in `/` matches itself and what continues it with `/`, never a longer
    /// segment: `/api` is not a prefix of `/api2`, `/apiadmin` or `/api../x`.
    #[test]
    fn prefixes_match_by_segment() {
        let trie = literal_trie(&[
            ("/", None, Some(0)),
            ("/api", None, Some(1)),
            ("/api/v", None, Some(2)),
            ("/api/v1/", None, Some(3)),
            ("/apiadmin/", None, Some(4)),
        ]);
        for path in ["/api2", "/apiadmin", "/api../x", "/api.json"] {
            assert_eq!(prefixes(&trie, path), vec![(0, 1)], "{path}");
        }
        assert_eq!(prefixes(&trie, "/apiadmin/x"), vec![(4, 10), (0, 1)]);
        assert_eq!(prefixes(&trie, "/api/v1"), vec![(1, 4), (0, 1)]);
        assert_eq!(prefixes(&trie, "/api/v/x"), vec![(2, 6), (1, 4), (0, 1)]);
        assert_eq!(prefixes(&trie, "/api/v1/x"), vec![(3, 8), (1, 4), (0, 1)]);
        // The chain above a deeper match skips prefixes the path does not continue by segment.
        let trie = literal_trie(&[("/a", None, Some(0)), ("/ab/", None, Some(1))]);
        assert_eq!(prefixes(&trie, "/ab/c"), vec![(1, 4)]);
        assert_eq!(prefixes(&trie, "/a/b"), vec![(0, 2)]);
    }

    #[test]
    fn empty_literal_trie_matches_nothing() {
        let trie = literal_trie(&[]);
        assert_eq!(trie.walk(routed("/x")).exact, None);
        assert!(prefixes(&trie, "/x").is_empty());
    }

    /// Every (pattern, spans) the search offers for `path`, in order.
    fn offered(trie: &TemplateTrie, path: &str) -> Vec<(u32, Vec<(usize, usize)>)> {
        let mut seen = Vec::new();
        trie.search(routed(path), &mut |pattern, spans| {
            seen.push((pattern, spans.to_vec()));
            false
        });
        seen
    }

    #[test]
    fn templates_are_offered_literal_first_left_to_right() {
        let mut trie = TemplateTrie::new();
        for (pattern, template) in [
            "/users/{id}",
            "/users/me",
            "/{kind}/me",
            "/{kind}/{id}",
            "/users/{id}/",
        ]
        .into_iter()
        .enumerate()
        {
            let node = trie.insert(template);
            trie.set_pattern(node, pattern as u32);
        }
        assert_eq!(
            offered(&trie, "/users/me"),
            vec![
                (1, vec![]),
                (0, vec![(7, 9)]),
                (2, vec![(1, 6)]),
                (3, vec![(1, 6), (7, 9)])
            ]
        );
        assert_eq!(offered(&trie, "/users/42/"), vec![(4, vec![(7, 9)])]);
        assert_eq!(offered(&trie, "/users/"), vec![]);
        assert_eq!(offered(&trie, "/users"), vec![]);
        assert_eq!(offered(&trie, "users/me"), vec![]);
    }

    #[test]
    fn parameter_names_do_not_make_a_different_pattern() {
        let mut trie = TemplateTrie::new();
        assert_eq!(trie.insert("/a/{x}/b"), trie.insert("/a/{y}/b"));
        assert_ne!(trie.insert("/a/{x}/b"), trie.insert("/a/{x}/c"));
    }
}
