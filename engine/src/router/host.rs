//! Host matching: owns the index from a request's `Host` to the host group whose routes apply.
//!
//! A host group is every route of one [`HostPattern`](super::HostPattern); this module only
//! maps host names to group numbers and knows nothing of paths or methods.
//!
//! Exact hosts and `*.suffix` wildcards share one trie keyed by DNS labels read right to left
//! (`com` -> `example` -> `api`), so a single walk over the request host finds both the exact
//! group and the longest wildcard on the way, at a cost that depends on the number of labels in
//! the host, not on the number of configured hosts. Labels are stored lowercase; the request's
//! labels are folded to lowercase as they are compared ([`Branches`]): no copy, no hash.

use memchr::{memchr, memrchr};

use super::branch::Branches;

/// The part of a raw `Host` value (or absolute-form authority) that names the host: the port is
/// cut off, an IPv6 literal keeps its brackets, and one trailing dot (the fully qualified form,
/// `example.com.`) is dropped. Letter case is left for the comparison to fold.
pub(crate) fn host_name(raw: &[u8]) -> &[u8] {
    if raw.first() == Some(&b'[') {
        // `[::1]:8080`: the colons inside the brackets belong to the address.
        return match memchr(b']', raw) {
            Some(close) => &raw[..=close],
            // Malformed: leave it whole; it matches no configured host.
            None => raw,
        };
    }
    let name = match memchr(b':', raw) {
        Some(colon) => &raw[..colon],
        None => raw,
    };
    name.strip_suffix(b".").unwrap_or(name)
}

/// Exact hosts and wildcard suffixes, keyed by labels from the right.
#[derive(Debug)]
pub(crate) struct HostIndex {
    /// Node 0 is the root (no label consumed).
    nodes: Vec<HostNode>,
}

#[derive(Debug, Default)]
struct HostNode {
    /// Next label to the left -> node.
    children: Branches,
    /// The group of the exact host spelled by the labels from the root to here.
    exact: Option<u32>,
    /// The group of `*.` + those labels: hosts with at least one more byte to the left.
    wildcard: Option<u32>,
}

impl HostIndex {
    pub(crate) fn new() -> HostIndex {
        HostIndex {
            nodes: vec![HostNode::default()],
        }
    }

    /// Registers an exact host (lowercase, no port, no trailing dot).
    pub(crate) fn insert_exact(&mut self, host: &[u8], group: u32) {
        let node = self.node_for(host);
        self.nodes[node].exact = Some(group);
    }

    /// Registers a wildcard by its suffix without the leading dot: `example.com` for
    /// `*.example.com`.
    pub(crate) fn insert_wildcard(&mut self, domain: &[u8], group: u32) {
        let node = self.node_for(domain);
        self.nodes[node].wildcard = Some(group);
    }

    /// The node spelling `name`, created if missing. Build time only.
    fn node_for(&mut self, name: &[u8]) -> usize {
        let mut node = 0;
        for label in name.rsplit(|&b| b == b'.') {
            node = match self.nodes[node].children.get_exact(label) {
                Some(child) => child as usize,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(HostNode::default());
                    // A u32 numbers more nodes than any configuration that fits in memory creates.
                    self.nodes[node].children.insert(label, child as u32);
                    child
                }
            };
        }
        node
    }

    /// The group for a host name from [`host_name`]: the exact host if configured, else the
    /// longest wildcard that matches, else `None`.
    pub(crate) fn find(&self, host: &[u8]) -> Option<u32> {
        let mut node = &self.nodes[0];
        let mut wildcard = None;
        let mut end = host.len();
        loop {
            let start = memrchr(b'.', &host[..end]).map_or(0, |dot| dot + 1);
            let label = &host[start..end];
            let Some(child) = node.children.find(label, true) else {
                break;
            };
            node = &self.nodes[child as usize];
            if start == 0 {
                // Every label consumed: this node spells the whole host.
                return node.exact.or(wildcard);
            }
            // `start - 1` is the dot; a wildcard needs at least one byte left of it.
            if start > 1 && node.wildcard.is_some() {
                wildcard = node.wildcard;
            }
            end = start - 1;
        }
        wildcard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_port_and_trailing_dot() {
        assert_eq!(host_name(b"example.com"), b"example.com");
        assert_eq!(host_name(b"example.com:8080"), b"example.com");
        assert_eq!(host_name(b"Example.COM.:443"), b"Example.COM");
        assert_eq!(host_name(b"example.com."), b"example.com");
        assert_eq!(host_name(b"[::1]:8080"), b"[::1]");
        assert_eq!(host_name(b"[::1]"), b"[::1]");
        assert_eq!(host_name(b"[::1"), b"[::1");
        assert_eq!(host_name(b"10.0.0.1:80"), b"10.0.0.1");
        assert_eq!(host_name(b""), b"");
        assert_eq!(host_name(b":80"), b"");
    }

    fn index() -> HostIndex {
        let mut index = HostIndex::new();
        index.insert_exact(b"example.com", 0);
        index.insert_exact(b"api.example.com", 1);
        index.insert_wildcard(b"example.com", 2);
        index.insert_wildcard(b"eu.example.com", 3);
        index.insert_exact(b"[::1]", 4);
        index
    }

    #[test]
    fn exact_beats_the_longest_wildcard() {
        let index = index();
        assert_eq!(index.find(b"example.com"), Some(0));
        assert_eq!(index.find(b"api.example.com"), Some(1));
        assert_eq!(index.find(b"www.example.com"), Some(2));
        assert_eq!(index.find(b"a.b.example.com"), Some(2));
        assert_eq!(index.find(b"x.eu.example.com"), Some(3));
        assert_eq!(index.find(b"x.y.eu.example.com"), Some(3));
        assert_eq!(index.find(b"eu.example.com"), Some(2));
        assert_eq!(index.find(b"[::1]"), Some(4));
    }

    #[test]
    fn wildcards_need_a_label_before_the_suffix() {
        let index = index();
        assert_eq!(index.find(b".example.com"), None);
        assert_eq!(index.find(b"com"), None);
        assert_eq!(index.find(b"example.org"), None);
        assert_eq!(index.find(b"notexample.com"), None);
        assert_eq!(index.find(b""), None);
    }

    #[test]
    fn comparison_ignores_case() {
        let index = index();
        assert_eq!(index.find(b"API.Example.COM"), Some(1));
        assert_eq!(index.find(b"WWW.EXAMPLE.COM"), Some(2));
    }
}
