//! What coregate knows about a client connection besides its bytes: the listener that took it
//! (its name, address and scheme) and, from the socket, the peer. Built once per listener by
//! the accept loop and shared by every connection it accepts; read by `x-forwarded-proto`, the
//! access log and rate-limit keys, never by the I/O below them.
//!
//! A TLS listener adds here what each handshake establishes (SNI, ALPN, version, resumption,
//! a client certificate's identity), beside the listener's facts.

use std::net::SocketAddr;
use std::rc::Rc;

pub use crate::io::Handshaken as TlsFacts;

/// The scheme a listener's clients speak, as `x-forwarded-proto` and logs name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Http,
    /// A listener that terminates TLS.
    Https,
}

impl Scheme {
    pub fn as_bytes(self) -> &'static [u8] {
        match self {
            Scheme::Http => b"http",
            Scheme::Https => b"https",
        }
    }
}

/// One listener as its connections see it.
#[derive(Debug)]
pub struct ListenerInfo {
    /// The `[[listener]]` name.
    pub name: Box<str>,
    /// The address the shard's socket is bound to.
    pub local: SocketAddr,
    pub scheme: Scheme,
}

/// A client connection's context: a pointer to its listener's facts and, on a TLS listener,
/// one to what the handshake established, so an idle connection pays two words for it.
#[derive(Clone, Debug)]
pub struct ConnContext {
    pub listener: Rc<ListenerInfo>,
    /// SNI, ALPN, version and whether the session was resumed; `None` on a plain listener
    /// (and on a TLS one until its handshake finished).
    pub tls: Option<Box<TlsFacts>>,
}

impl ConnContext {
    pub fn new(listener: Rc<ListenerInfo>) -> ConnContext {
        ConnContext {
            listener,
            tls: None,
        }
    }

    pub fn scheme(&self) -> Scheme {
        self.listener.scheme
    }

    /// The server name the client's handshake asked for.
    pub fn sni(&self) -> Option<&str> {
        self.tls.as_ref()?.sni.as_deref()
    }

    /// The application protocol the handshake settled on.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.tls.as_ref()?.alpn.as_deref()
    }

    /// Who the client's verified certificate names.
    pub fn client_identity(&self) -> Option<&str> {
        self.tls.as_ref()?.client_identity.as_deref()
    }

    /// `TLSv1.2` / `TLSv1.3`.
    pub fn tls_version(&self) -> Option<&'static str> {
        Some(self.tls.as_ref()?.version.as_str())
    }
}
