//! The server name a ClientHello asks for, read from the first handshake record's bytes.
//!
//! rustls's unbuffered server connection has no accessor for the SNI it received, and the
//! certificate resolver is shared by every connection; so the record layer reads the name
//! itself, once, from the ClientHello it has in its buffer (RFC 8446 4.1.2, RFC 6066 3).
//! Bytes in, a name or "not yet" out; every length checked; nothing here can panic.

/// What the bytes received so far say.
#[derive(Debug, PartialEq, Eq)]
pub enum Hello<'a> {
    /// The first record is not complete yet.
    Incomplete,
    /// A ClientHello, with the host name it asks for (`None`: no SNI).
    Name(Option<&'a str>),
    /// Not a ClientHello in one record: rustls will judge it.
    Unreadable,
}

const HANDSHAKE: u8 = 22;
const CLIENT_HELLO: u8 = 1;
const SERVER_NAME: u16 = 0;
const HOST_NAME: u8 = 0;

/// Reads the SNI of the ClientHello at the start of `bytes` (TLS records as received).
pub fn server_name(bytes: &[u8]) -> Hello<'_> {
    if bytes.len() < 5 {
        return Hello::Incomplete;
    }
    if bytes[0] != HANDSHAKE {
        return Hello::Unreadable;
    }
    let len = u16::from_be_bytes([bytes[3], bytes[4]]) as usize;
    let Some(record) = bytes.get(5..5 + len) else {
        return Hello::Incomplete;
    };
    match parse(record) {
        Some(name) => Hello::Name(name),
        None => Hello::Unreadable,
    }
}

/// `None`: malformed or split over records.
fn parse(record: &[u8]) -> Option<Option<&str>> {
    let mut r = Cursor(record);
    if r.u8()? != CLIENT_HELLO {
        return None;
    }
    let len = r.u24()?;
    let body = r.take(len)?;
    let mut r = Cursor(body);
    r.take(2 + 32)?; // legacy version, random
    let n = r.u8()? as usize;
    r.take(n)?; // session id
    let n = r.u16()? as usize;
    r.take(n)?; // cipher suites
    let n = r.u8()? as usize;
    r.take(n)?; // compression methods
    if r.0.is_empty() {
        return Some(None); // no extensions at all
    }
    let n = r.u16()? as usize;
    let mut extensions = Cursor(r.take(n)?);
    while !extensions.0.is_empty() {
        let kind = extensions.u16()?;
        let n = extensions.u16()? as usize;
        let data = extensions.take(n)?;
        if kind != SERVER_NAME {
            continue;
        }
        let mut list = Cursor(data);
        let n = list.u16()? as usize;
        let mut names = Cursor(list.take(n)?);
        while !names.0.is_empty() {
            let kind = names.u8()?;
            let n = names.u16()? as usize;
            let name = names.take(n)?;
            if kind == HOST_NAME {
                return std::str::from_utf8(name).ok().map(Some);
            }
        }
        return Some(None);
    }
    Some(None)
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some((b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A real ClientHello, as rustls's client writes it.
    fn client_hello(name: &str) -> Vec<u8> {
        let mut roots = rustls::RootCertStore::empty();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.example".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        roots.add(cert.der().clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut client =
            rustls::ClientConnection::new(Arc::new(config), name.to_owned().try_into().unwrap())
                .unwrap();
        let mut out = Vec::new();
        client.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn the_name_of_a_real_client_hello_is_read() {
        let hello = client_hello("api.example.com");
        assert_eq!(server_name(&hello), Hello::Name(Some("api.example.com")));
        for cut in 0..hello.len() {
            assert_eq!(server_name(&hello[..cut]), Hello::Incomplete);
        }
    }

    #[test]
    fn an_ip_address_sends_no_name() {
        assert_eq!(server_name(&client_hello("127.0.0.1")), Hello::Name(None));
    }

    #[test]
    fn garbage_is_unreadable_not_a_panic() {
        assert_eq!(server_name(b"GET / HTTP/1.1\r\n"), Hello::Unreadable);
        let mut hello = client_hello("a.example");
        for i in 5..hello.len() {
            hello[i] ^= 0xff;
            let _ = server_name(&hello);
            hello[i] ^= 0xff;
        }
    }
}
