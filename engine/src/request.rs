//! The protocol-neutral view of a request that routing, admission and endpoint choice read:
//! method, scheme, authority, normalised path, query, fields by name, body framing and the
//! client's address.
//!
//! HTTP/1.1 builds it from a parsed head (`proxy::decide`); a protocol with other framing (an
//! HTTP/2 stream) builds the same view from its own decoded fields, and every phase that takes
//! a [`RequestView`] serves it unchanged. The view borrows everything and owns nothing: it lives
//! only while the head it was built from is valid (until the next await).

use std::net::IpAddr;

use crate::context::Scheme;
use crate::http1::{Field, Method, RequestBody};

/// How the body of a request arrives, as far as the phases care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// No body.
    None,
    /// Exactly this many bytes (possibly zero).
    Length(u64),
    /// A body whose length is known only at its end (HTTP/1.1 chunked).
    Streamed,
}

impl From<RequestBody> for Body {
    fn from(body: RequestBody) -> Body {
        match body {
            RequestBody::None => Body::None,
            RequestBody::Length(length) => Body::Length(length),
            RequestBody::Chunked => Body::Streamed,
        }
    }
}

impl Body {
    /// Whether bytes of a body follow the head.
    pub fn follows(self) -> bool {
        !matches!(self, Body::None | Body::Length(0))
    }
}

/// A request's fields, looked up by name (ASCII case-insensitive).
#[derive(Clone, Copy)]
pub struct Fields<'a> {
    buf: &'a [u8],
    fields: &'a [Field],
}

impl<'a> Fields<'a> {
    /// The fields `fields`, whose spans point into `buf`.
    pub fn new(buf: &'a [u8], fields: &'a [Field]) -> Fields<'a> {
        Fields { buf, fields }
    }

    /// The value of the first field named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.all(name).next()
    }

    /// The values of every field named `name`, in order.
    pub fn all<'n>(&self, name: &'n [u8]) -> impl Iterator<Item = &'a [u8]> + 'n
    where
        'a: 'n,
    {
        let buf = self.buf;
        self.fields
            .iter()
            .filter(move |field| field.name.of(buf).eq_ignore_ascii_case(name))
            .map(move |field| field.value.of(buf))
    }
}

/// One request as the phases see it, whatever protocol carried it.
#[derive(Clone, Copy)]
pub struct RequestView<'a> {
    pub method: Method,
    pub scheme: Scheme,
    /// The host to route on: an absolute-form target's authority, else `Host`; empty when the
    /// request named none (HTTP/1.0).
    pub authority: &'a [u8],
    /// The path routes match: normalised, `*` for a server-wide `OPTIONS`.
    pub path: &'a [u8],
    /// The query, without its `?`.
    pub query: Option<&'a [u8]>,
    pub fields: Fields<'a>,
    pub body: Body,
    /// The address of the connection's peer.
    pub client: IpAddr,
}
