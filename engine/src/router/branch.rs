//! The children of a trie node keyed by a byte string (a DNS label, a path segment): owns how a
//! lookup finds the child for a label without hashing it.
//!
//! Beside each label the children keep a 64-bit *head*: its first four and last four bytes
//! packed into one integer (all of it for labels of up to three bytes). Children are sorted by
//! head, so a lookup is a binary search over a contiguous array of integers: no pointer chasing,
//! no per-byte loop, no function call per probe, and no hash: the head of a label of at most
//! eight bytes *is* the label, so equal heads and equal lengths mean equal labels and nothing
//! else is compared. Longer labels are compared in full after the heads agree; taking the last
//! four bytes as well as the first keeps numbered names (`svc-0001` ... `svc-9999`) apart. If
//! several labels share a head, the full labels are binary searched among them.
//!
//! Host labels are matched case-insensitively: they are stored lowercase and the request's
//! label is folded while its head is built, eight bytes at a time.

use std::cmp::Ordering;

/// Labels of up to this many bytes are entirely captured by their head.
const HEAD_LEN: usize = 8;

/// Sorted children of one trie node.
#[derive(Debug, Default)]
pub(crate) struct Branches {
    /// `heads[i]` is the head of `labels[i]`; ascending.
    heads: Vec<u64>,
    /// Ascending by (head, label).
    labels: Vec<Box<[u8]>>,
    /// Node number of each child.
    nodes: Vec<u32>,
}

impl Branches {
    /// The child for `label` (stored as given: lowercase for hosts), if there is one. Build time.
    pub(crate) fn get_exact(&self, label: &[u8]) -> Option<u32> {
        self.find(label, false)
    }

    /// Adds a child, keeping the order. Build time; `label` must not be present yet.
    pub(crate) fn insert(&mut self, label: &[u8], node: u32) {
        let head = head(label, false);
        let at = self
            .heads
            .iter()
            .zip(&self.labels)
            .position(|(&h, l)| (h, l.as_ref()) > (head, label))
            .unwrap_or(self.heads.len());
        self.heads.insert(at, head);
        self.labels.insert(at, label.into());
        self.nodes.insert(at, node);
    }

    /// The child whose label equals `label`, comparing ASCII letters case-insensitively when
    /// `fold` is set (the stored labels are then lowercase).
    #[inline]
    pub(crate) fn find(&self, label: &[u8], fold: bool) -> Option<u32> {
        let head = head(label, fold);
        let first = self.heads.partition_point(|&h| h < head);
        if self.heads.get(first) != Some(&head) {
            return None;
        }
        if self.heads.get(first + 1) != Some(&head) {
            // The usual case: one label with this head. Up to HEAD_LEN bytes, equal heads and
            // equal lengths mean equal labels.
            let stored = &self.labels[first];
            let equal = stored.len() == label.len()
                && (label.len() <= HEAD_LEN || compare(stored, label, fold) == Ordering::Equal);
            return equal.then(|| self.nodes[first]);
        }
        // Several labels share this head: binary search the full labels among them.
        let run = self.heads[first..].partition_point(|&h| h == head);
        self.labels[first..first + run]
            .binary_search_by(|stored| compare(stored, label, fold))
            .ok()
            .map(|i| self.nodes[first + i])
    }
}

/// The head of `label`: its first and last four bytes (overlapping for labels of four to
/// seven bytes), or bytes 0, len/2 and len-1 for shorter ones; injective for each length up to
/// `HEAD_LEN`. Letters are lowercased when `fold` is set.
#[inline]
fn head(label: &[u8], fold: bool) -> u64 {
    let packed = match (label.first_chunk::<4>(), label.last_chunk::<4>()) {
        (Some(first), Some(last)) => {
            u64::from(u32::from_le_bytes(*first)) | u64::from(u32::from_le_bytes(*last)) << 32
        }
        _ => match label.len() {
            0 => 0,
            len => {
                u64::from(label[0])
                    | u64::from(label[len / 2]) << 8
                    | u64::from(label[len - 1]) << 16
            }
        },
    };
    if fold { to_lowercase(packed) } else { packed }
}

/// ASCII lowercase of eight bytes at once: adds 0x20 to each byte in `A..=Z`, leaves every
/// other byte (non-ASCII included) alone.
#[inline]
fn to_lowercase(bytes: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = bytes & !HIGH;
    // High bit of each byte set when its low seven bits are >= 'A' (0x41), resp. > 'Z' (0x5A);
    // the additions cannot carry into the next byte.
    let at_least_a = low7 + ONES * (0x80 - 0x41);
    let above_z = low7 + ONES * (0x80 - 0x5b);
    let upper = (at_least_a & !above_z) & !bytes & HIGH;
    bytes | (upper >> 2)
}

/// Orders a stored label against a request label, folding the request's letters when asked.
fn compare(stored: &[u8], request: &[u8], fold: bool) -> Ordering {
    if !fold {
        return stored.cmp(request);
    }
    for (&s, &r) in stored.iter().zip(request) {
        match s.cmp(&r.to_ascii_lowercase()) {
            Ordering::Equal => {}
            unequal => return unequal,
        }
    }
    stored.len().cmp(&request.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn branches(labels: &[&str]) -> Branches {
        let mut branches = Branches::default();
        for (node, label) in labels.iter().enumerate() {
            branches.insert(label.as_bytes(), node as u32);
        }
        branches
    }

    #[test]
    fn finds_short_and_long_labels() {
        let long_a = "customer-portal-eu-west-1";
        let long_b = "customer-portal-eu-west-2";
        let long_c = "customer-portal-eu";
        let b = branches(&["api", "v1", "", long_a, long_b, long_c, "customer-portal-"]);
        assert_eq!(b.find(b"api", false), Some(0));
        assert_eq!(b.find(b"v1", false), Some(1));
        assert_eq!(b.find(b"", false), Some(2));
        assert_eq!(b.find(long_a.as_bytes(), false), Some(3));
        assert_eq!(b.find(long_b.as_bytes(), false), Some(4));
        assert_eq!(b.find(long_c.as_bytes(), false), Some(5));
        assert_eq!(b.find(b"customer-portal-", false), Some(6));
        assert_eq!(b.find(b"customer-portal-eu-west-3", false), None);
        assert_eq!(b.find(b"customer-portal", false), None);
        assert_eq!(b.find(b"ap", false), None);
        assert_eq!(b.find(b"api\0", false), None);
        assert_eq!(b.find(b"customer-portal-eu-west-1x", false), None);
        assert_eq!(b.get_exact(b"v1"), Some(1));
    }

    #[test]
    fn folding_is_only_for_the_request_side() {
        let b = branches(&["example", "customer-portal-eu-west-1"]);
        assert_eq!(b.find(b"EXAMPLE", true), Some(0));
        assert_eq!(b.find(b"EXAMPLE", false), None);
        assert_eq!(b.find(b"Customer-Portal-EU-West-1", true), Some(1));
    }

    #[test]
    fn lowercasing_eight_bytes_matches_byte_by_byte() {
        for start in (0u16..256).step_by(8) {
            let bytes: Vec<u8> = (start..start + 8).map(|b| b as u8).collect();
            let word = u64::from_le_bytes(bytes.clone().try_into().expect("eight bytes"));
            let expected: Vec<u8> = bytes.iter().map(u8::to_ascii_lowercase).collect();
            assert_eq!(to_lowercase(word).to_le_bytes().to_vec(), expected);
        }
        assert_eq!(
            to_lowercase(u64::from_le_bytes(*b"@AZ[`az{")),
            u64::from_le_bytes(*b"@az[`az{")
        );
    }

    #[test]
    fn labels_sharing_a_head_are_told_apart() {
        // First and last four bytes equal: same head.
        let b = branches(&["svc-a-0001", "svc-b-0001", "svc-c-0001"]);
        assert_eq!(b.find(b"svc-b-0001", false), Some(1));
        assert_eq!(b.find(b"SVC-C-0001", true), Some(2));
        assert_eq!(b.find(b"svc-d-0001", false), None);
    }

    #[test]
    fn order_does_not_depend_on_insertion() {
        let labels = [
            "b",
            "a",
            "aaaaaaaaaaaaaaaaaaa2",
            "aaaaaaaaaaaaaaaaaaa1",
            "c",
            "a\u{7f}",
        ];
        let b = branches(&labels);
        for (node, label) in labels.iter().enumerate() {
            assert_eq!(
                b.find(label.as_bytes(), false),
                Some(node as u32),
                "{label}"
            );
        }
    }
}
