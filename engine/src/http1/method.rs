//! Request methods (RFC 9110 sec. 9) as a small enum, and sets of them as a bit mask.
//!
//! Owned here because both the parser (which recognises the method token) and the router
//! (which matches method sets and answers 405 with `Allow`) need the same vocabulary.

/// A request method. Extension methods (WebDAV and friends) are all `Other`; their exact token
/// stays in the connection buffer and is forwarded byte for byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Method {
    Get = 0,
    Head = 1,
    Post = 2,
    Put = 3,
    Delete = 4,
    Connect = 5,
    Options = 6,
    Trace = 7,
    Patch = 8,
    Other = 9,
}

impl Method {
    /// Every method, in the order `Allow` lists them.
    pub const ALL: [Method; 10] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Connect,
        Method::Options,
        Method::Trace,
        Method::Patch,
        Method::Other,
    ];

    /// Recognises a method token. Methods are case-sensitive (RFC 9110 sec. 9.1): `get` is an
    /// extension method, not GET.
    pub fn from_token(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"CONNECT" => Method::Connect,
            b"OPTIONS" => Method::Options,
            b"TRACE" => Method::Trace,
            b"PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }

    /// The canonical token, or `None` for extension methods.
    pub fn as_str(self) -> Option<&'static str> {
        Some(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Connect => "CONNECT",
            Method::Options => "OPTIONS",
            Method::Trace => "TRACE",
            Method::Patch => "PATCH",
            Method::Other => return None,
        })
    }

    /// Safe methods may be retried on a fresh upstream connection when a pooled one turns out
    /// dead (RFC 9110 sec. 9.2.2 calls GET, HEAD, OPTIONS, TRACE, PUT and DELETE idempotent).
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Options
                | Method::Trace
                | Method::Put
                | Method::Delete
        )
    }
}

/// A set of methods, one bit each. `MethodSet::ANY` matches everything, extension methods included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct MethodSet(u16);

impl MethodSet {
    pub const EMPTY: MethodSet = MethodSet(0);
    pub const ANY: MethodSet = MethodSet((1 << Method::ALL.len()) - 1);

    pub const fn contains(self, method: Method) -> bool {
        self.0 & (1 << method as u8) != 0
    }

    pub const fn with(self, method: Method) -> MethodSet {
        MethodSet(self.0 | (1 << method as u8))
    }

    pub const fn union(self, other: MethodSet) -> MethodSet {
        MethodSet(self.0 | other.0)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The methods in the set, in `Method::ALL` order.
    pub fn iter(self) -> impl Iterator<Item = Method> {
        Method::ALL.into_iter().filter(move |m| self.contains(*m))
    }
}

impl FromIterator<Method> for MethodSet {
    fn from_iter<I: IntoIterator<Item = Method>>(iter: I) -> Self {
        iter.into_iter().fold(MethodSet::EMPTY, MethodSet::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_case_sensitive() {
        assert_eq!(Method::from_token(b"GET"), Method::Get);
        assert_eq!(Method::from_token(b"get"), Method::Other);
        assert_eq!(Method::from_token(b"PROPFIND"), Method::Other);
    }

    #[test]
    fn sets_hold_what_was_added() {
        let set: MethodSet = [Method::Get, Method::Post].into_iter().collect();
        assert!(set.contains(Method::Get) && set.contains(Method::Post));
        assert!(!set.contains(Method::Put));
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            vec![Method::Get, Method::Post]
        );
        assert!(MethodSet::ANY.contains(Method::Other));
    }
}
