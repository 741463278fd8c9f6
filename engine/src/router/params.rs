//! Template parameters of a matched route: owns the fixed-capacity list a lookup fills.
//!
//! A value is a byte range into the path that was routed (the normalised path), never a copy, so
//! a lookup allocates nothing. Names borrow from the route table, which outlives the request.
//! Values are as they appear in that path: unreserved characters are already decoded, other
//! escapes (`%20`) are still escaped.

use std::ops::Range;

use super::spec::MAX_TEMPLATE_PARAMS;

/// The parameters of the route a lookup matched, in template order. Keep one per request (it is
/// small and lives on the stack); every lookup clears it first.
#[derive(Clone, Debug)]
pub struct Params<'t> {
    len: usize,
    names: [&'t str; MAX_TEMPLATE_PARAMS],
    /// `(start, end)` rather than `Range` so the array can be built in a `const fn`.
    spans: [(usize, usize); MAX_TEMPLATE_PARAMS],
}

impl<'t> Params<'t> {
    pub const fn new() -> Params<'t> {
        Params {
            len: 0,
            names: [""; MAX_TEMPLATE_PARAMS],
            spans: [(0, 0); MAX_TEMPLATE_PARAMS],
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value of parameter `name`, read from `path`: the same bytes that were passed to
    /// `RouteTable::lookup`. `None` if the route has no such parameter (or `path` is another,
    /// shorter path).
    pub fn get<'p>(&self, name: &str, path: &'p [u8]) -> Option<&'p [u8]> {
        path.get(self.span(name)?)
    }

    /// Where parameter `name` lies in the routed path.
    pub fn span(&self, name: &str) -> Option<Range<usize>> {
        self.iter()
            .find(|(candidate, _)| *candidate == name)
            .map(|(_, span)| span)
    }

    /// Every parameter as `(name, byte range in the routed path)`, in template order.
    pub fn iter(&self) -> impl Iterator<Item = (&'t str, Range<usize>)> + '_ {
        self.names[..self.len]
            .iter()
            .zip(&self.spans[..self.len])
            .map(|(&name, &(start, end))| (name, start..end))
    }

    /// Appends a parameter; false (and nothing stored) when full, which a validated table never
    /// causes.
    pub(crate) fn push(&mut self, name: &'t str, span: (usize, usize)) -> bool {
        match (self.names.get_mut(self.len), self.spans.get_mut(self.len)) {
            (Some(name_slot), Some(span_slot)) => {
                *name_slot = name;
                *span_slot = span;
                self.len += 1;
                true
            }
            _ => false,
        }
    }
}

impl Default for Params<'_> {
    fn default() -> Self {
        Params::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_read_from_the_path() {
        let path = b"/users/42/orders/7";
        let mut params = Params::new();
        assert!(params.push("id", (7, 9)));
        assert!(params.push("order", (17, 18)));
        assert_eq!(params.get("id", path), Some(&b"42"[..]));
        assert_eq!(params.get("order", path), Some(&b"7"[..]));
        assert_eq!(params.get("nope", path), None);
        assert_eq!(params.get("order", b"/short"), None);
        assert_eq!(
            params.iter().collect::<Vec<_>>(),
            vec![("id", 7..9), ("order", 17..18)]
        );
        params.clear();
        assert!(params.is_empty());
        assert_eq!(params.get("id", path), None);
    }

    #[test]
    fn capacity_is_fixed() {
        let mut params = Params::new();
        for i in 0..MAX_TEMPLATE_PARAMS {
            assert!(params.push("p", (i, i + 1)));
        }
        assert!(!params.push("overflow", (0, 1)));
        assert_eq!(params.len(), MAX_TEMPLATE_PARAMS);
    }
}
