//! Choosing a listener's certificate from the server name a client asks for (SNI): an exact
//! name first, then a wildcard covering it (`*.example.com` covers `a.example.com`, not
//! `example.com` nor `a.b.example.com`, as clients check), then the default (the first
//! certificate listed). A client that sends no name gets the default; one whose name no
//! certificate covers gets the default or a handshake alert, as `unknown_name` says.
//!
//! Built once per configuration generation from the certificates' own DNS names; read-only
//! while handshakes run, so every shard shares it.
//!
//! The resolver is also where the record layer learns the name a client asked for: rustls's
//! unbuffered server connection has no accessor for it, but asks the resolver on every
//! ClientHello (full and resumed handshakes alike, once rustls has the whole hello however it
//! was split), on the shard's own thread, inside the record layer's call into rustls. So the
//! name is noted in a slot of that thread and taken right after the call
//! ([`take_asked_name`]).

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{Certificate, UnknownName};

#[derive(Debug)]
pub struct SniResolver {
    /// Lowercase name -> certificate; the first certificate naming it wins.
    exact: HashMap<Box<str>, Arc<CertifiedKey>>,
    /// For `*.example.com`: `example.com` -> certificate.
    wildcard: HashMap<Box<str>, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
    unknown: UnknownName,
}

/// What a name resolves to.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    Exact,
    Wildcard,
    Default,
    Refused,
}

impl SniResolver {
    pub fn new(certificates: &[Certificate], unknown: UnknownName) -> SniResolver {
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for cert in certificates {
            for name in &cert.facts.dns_names {
                match name.strip_prefix("*.") {
                    Some(parent) => {
                        wildcard
                            .entry(parent.into())
                            .or_insert_with(|| cert.key.clone());
                    }
                    None => {
                        exact
                            .entry(name.as_str().into())
                            .or_insert_with(|| cert.key.clone());
                    }
                }
            }
        }
        SniResolver {
            exact,
            wildcard,
            default: certificates.first().map(|c| c.key.clone()),
            unknown,
        }
    }

    /// The certificate for `name` (any case), and how it was chosen.
    pub fn choose(&self, name: Option<&str>) -> (Choice, Option<&Arc<CertifiedKey>>) {
        let Some(name) = name else {
            return (Choice::Default, self.default.as_ref());
        };
        // Names are short (at most 253 bytes); lowercase without allocating when possible.
        let mut lower = [0u8; 253];
        let Some(slot) = lower.get_mut(..name.len()) else {
            return self.unknown();
        };
        slot.copy_from_slice(name.as_bytes());
        slot.make_ascii_lowercase();
        let Ok(name) = std::str::from_utf8(slot) else {
            return self.unknown();
        };
        let name = name.trim_end_matches('.');
        if let Some(key) = self.exact.get(name) {
            return (Choice::Exact, Some(key));
        }
        if let Some((_, parent)) = name.split_once('.')
            && let Some(key) = self.wildcard.get(parent)
        {
            return (Choice::Wildcard, Some(key));
        }
        self.unknown()
    }

    fn unknown(&self) -> (Choice, Option<&Arc<CertifiedKey>>) {
        match self.unknown {
            UnknownName::Default => (Choice::Default, self.default.as_ref()),
            UnknownName::Refuse => (Choice::Refused, None),
        }
    }

    /// Whether `host` (a name, or a route's `*.suffix` pattern) has a certificate of its own.
    pub fn covers(&self, host: &str) -> bool {
        match host.strip_prefix("*.") {
            Some(parent) => self
                .wildcard
                .contains_key(parent.to_ascii_lowercase().as_str()),
            None => matches!(self.choose(Some(host)).0, Choice::Exact | Choice::Wildcard),
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        ASKED.set(Some(hello.server_name().map(Into::into)));
        self.choose(hello.server_name()).1.cloned()
    }
}

thread_local! {
    /// The name of the last ClientHello resolved on this thread, until taken: `Some(None)` for
    /// a hello without one.
    static ASKED: Cell<Option<Option<Box<str>>>> = const { Cell::new(None) };
}

/// The server name of the ClientHello resolved on this thread since the last call: `None` when
/// none was, `Some(None)` when the client sent no name.
pub fn take_asked_name() -> Option<Option<Box<str>>> {
    ASKED.take()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::super::certificate;
    use super::*;

    fn cert(names: &[&str]) -> Certificate {
        let key = rcgen::KeyPair::generate().unwrap();
        let owned: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(owned)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        certificate::load(
            &PathBuf::from("c.pem"),
            cert.pem().as_bytes(),
            &PathBuf::from("k.pem"),
            key.serialize_pem().as_bytes(),
            certificate::unix_now(),
        )
        .unwrap()
    }

    #[test]
    fn exact_then_wildcard_then_default() {
        let certs = [
            cert(&["default.example"]),
            cert(&["*.example.com"]),
            cert(&["api.example.com"]),
        ];
        let resolver = SniResolver::new(&certs, UnknownName::Default);
        let pick = |name| {
            let (choice, key) = resolver.choose(name);
            let index = certs
                .iter()
                .position(|c| Arc::ptr_eq(&c.key, key.unwrap()))
                .unwrap();
            (choice, index)
        };
        assert_eq!(pick(Some("api.example.com")), (Choice::Exact, 2));
        assert_eq!(pick(Some("API.Example.com.")), (Choice::Exact, 2));
        assert_eq!(pick(Some("www.example.com")), (Choice::Wildcard, 1));
        assert_eq!(pick(Some("a.b.example.com")), (Choice::Default, 0));
        assert_eq!(pick(Some("example.com")), (Choice::Default, 0));
        assert_eq!(pick(None), (Choice::Default, 0));
        assert!(resolver.covers("*.example.com") && resolver.covers("x.example.com"));
        assert!(!resolver.covers("other.test") && !resolver.covers("*.other.test"));
    }

    #[test]
    fn unknown_names_can_be_refused_but_a_client_without_sni_gets_the_default() {
        let certs = [cert(&["a.example"])];
        let resolver = SniResolver::new(&certs, UnknownName::Refuse);
        assert_eq!(resolver.choose(Some("b.example")).0, Choice::Refused);
        assert_eq!(resolver.choose(Some(&"x".repeat(300))).0, Choice::Refused);
        assert_eq!(resolver.choose(None).0, Choice::Default);
    }
}
