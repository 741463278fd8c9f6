//! The request-target (RFC 9112 sec. 3.2) and authority syntax (RFC 3986 sec. 3.2, as used by
//! `Host` in RFC 9110 sec. 7.2).
//!
//! It owns deciding which of the four forms a target takes, whether the method allows that
//! form, and where the path, query and authority lie. It does not normalise anything (no
//! percent-decoding, no dot-segment removal): the router sees the bytes the client sent, and
//! the upstream receives them unchanged.
//!
//! Bytes accepted in a target: visible ASCII except `#` (a fragment is never part of a
//! request-target). httparse already refuses controls, space and DEL; raw non-ASCII bytes are
//! refused here, since no conforming client sends them unencoded and the router compares bytes.
//! Printable characters RFC 3986 does not list (`"`, `<`, `{`, `|`...) are accepted, as NGINX
//! and hyper accept them: they cannot change framing. The one that can change routing, `\`
//! (a separator to some servers), is refused in the path by `router::normalize`, which owns
//! what a path means; in the query it is data.

use super::field::parse_decimal;
use super::{Method, Span};

/// The form of a request-target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`, the usual form (RFC 9112 sec. 3.2.1).
    Origin,
    /// `http://authority/path?query` (sec. 3.2.2). `path_and_query` is empty when the URI has
    /// no path: the forwarded request line then uses `/` (`*` for OPTIONS, sec. 3.2.4).
    Absolute {
        authority: Span,
        path_and_query: Span,
    },
    /// `host:port`, only with CONNECT (sec. 3.2.3).
    Authority,
    /// `*`, only with OPTIONS (sec. 3.2.4).
    Asterisk,
}

/// A classified target: its form and the parts the router reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    pub form: TargetForm,
    /// The path without the query: empty for authority-form, `*` for asterisk-form.
    pub path: Span,
    /// The query without its `?`.
    pub query: Option<Span>,
}

/// Classifies `target` (its span in `buf`) for `method`. The error is the reason text of a 400.
pub(crate) fn parse_target(
    buf: &[u8],
    target: Span,
    method: Method,
) -> Result<Target, &'static str> {
    let bytes = target.of(buf);
    if bytes.iter().any(|&b| b == b'#' || !b.is_ascii_graphic()) {
        return Err("invalid byte in request target");
    }
    if method == Method::Connect {
        // CONNECT always names a host and port, and nothing else does (sec. 3.2.3).
        if !is_valid_authority(bytes, true) {
            return Err("CONNECT needs a host:port target");
        }
        return Ok(Target {
            form: TargetForm::Authority,
            path: target.take(0),
            query: None,
        });
    }
    match bytes.first() {
        Some(b'/') => {
            let (path, query) = split_query(target, bytes);
            Ok(Target {
                form: TargetForm::Origin,
                path,
                query,
            })
        }
        Some(b'*') if bytes.len() == 1 => {
            if method != Method::Options {
                return Err("only OPTIONS may target *");
            }
            Ok(Target {
                form: TargetForm::Asterisk,
                path: target,
                query: None,
            })
        }
        _ => parse_absolute(target, bytes),
    }
}

/// `http://authority[/path][?query]` or the same with `https`. Other schemes are not something
/// an HTTP reverse proxy can serve.
fn parse_absolute(target: Span, bytes: &[u8]) -> Result<Target, &'static str> {
    let scheme_len = if starts_with_ignore_case(bytes, b"http://") {
        7
    } else if starts_with_ignore_case(bytes, b"https://") {
        8
    } else {
        return Err("invalid request target");
    };
    let rest = &bytes[scheme_len..];
    let authority_len = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    // RFC 9110 sec. 4.2.4: userinfo in an http(s) URI is deprecated and a recipient SHOULD
    // treat it as an error.
    if authority.contains(&b'@') {
        return Err("userinfo in request target");
    }
    // RFC 9110 sec. 4.2.1: an http URI with an empty host is invalid.
    if !is_valid_authority(authority, false) {
        return Err("invalid authority in request target");
    }
    let authority_span = target.skip(scheme_len).take(authority_len);
    let path_and_query = target.skip(scheme_len + authority_len);
    let (path, query) = split_query(path_and_query, &rest[authority_len..]);
    Ok(Target {
        form: TargetForm::Absolute {
            authority: authority_span,
            path_and_query,
        },
        path,
        query,
    })
}

/// Splits `span` (whose bytes are `bytes`) at the first `?`.
fn split_query(span: Span, bytes: &[u8]) -> (Span, Option<Span>) {
    match memchr::memchr(b'?', bytes) {
        Some(q) => (span.take(q), Some(span.skip(q + 1))),
        None => (span, None),
    }
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// `uri-host [ ":" port ]` (RFC 3986 sec. 3.2.2 and 3.2.3) with a non-empty host, as `Host`
/// and the authority of an `http` URI require. With `port_required` (authority-form) the port
/// must be there. A port, when present, is at most 65535; an empty port (`host:`) is allowed
/// by the grammar and accepted.
pub(crate) fn is_valid_authority(authority: &[u8], port_required: bool) -> bool {
    let (host, port) = if authority.first() == Some(&b'[') {
        let Some(close) = authority.iter().position(|&b| b == b']') else {
            return false;
        };
        let (literal, rest) = authority.split_at(close + 1);
        let port = match rest {
            [] => None,
            [b':', port @ ..] => Some(port),
            _ => return false,
        };
        if !is_ip_literal(literal) {
            return false;
        }
        (None, port)
    } else {
        match memchr::memrchr(b':', authority) {
            Some(colon) => (Some(&authority[..colon]), Some(&authority[colon + 1..])),
            None => (Some(authority), None),
        }
    };
    if host.is_some_and(|host| !is_reg_name(host)) {
        return false;
    }
    match port {
        None => !port_required,
        Some([]) => !port_required,
        Some(port) => port.len() <= 5 && parse_decimal(port).is_some_and(|p| p <= 65535),
    }
}

/// `reg-name` (which also covers IPv4 addresses), required non-empty, without percent-encoding:
/// `unreserved / sub-delims`.
///
/// RFC 3986 sec. 3.2.2 allows `pct-encoded` in a reg-name, but for an http(s) host it can only
/// spell bytes a DNS name does not hold, or spell ordinary ones a second way (`ex%61mple.com`).
/// The router compares the host as sent, and an upstream that decodes it would see another
/// name: coregate refuses `%` in `Host` and in an absolute-form authority (400) rather than
/// route one spelling and forward another.
fn is_reg_name(host: &[u8]) -> bool {
    !host.is_empty() && host.iter().all(|&b| REG_NAME[b as usize])
}

/// The bytes of a reg-name coregate accepts: unreserved and sub-delims (RFC 3986 sec. 2.2,
/// 2.3). A table because Host is checked on every request.
static REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'-' | b'.'
                    | b'_'
                    | b'~'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b';'
                    | b'='
            );
        b += 1;
    }
    table
};

/// `IP-literal`: `[` IPv6address or IPvFuture `]`. Checked for its alphabet, not for being a
/// well-formed address: the upstream connection is made to configured endpoints, never to this.
fn is_ip_literal(literal: &[u8]) -> bool {
    let inner = match literal {
        [b'[', inner @ .., b']'] if !inner.is_empty() => inner,
        _ => return false,
    };
    if matches!(inner[0], b'v' | b'V') {
        inner[1..].iter().all(|&b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b':'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                )
        })
    } else {
        inner
            .iter()
            .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(
        method: Method,
        target: &str,
    ) -> Result<(TargetForm, String, Option<String>), &'static str> {
        let buf = target.as_bytes();
        let span = Span::new(0, buf.len());
        parse_target(buf, span, method).map(|t| {
            (
                t.form,
                String::from_utf8_lossy(t.path.of(buf)).into_owned(),
                t.query
                    .map(|q| String::from_utf8_lossy(q.of(buf)).into_owned()),
            )
        })
    }

    #[test]
    fn rfc9112_3_2_1_origin_form() {
        assert_eq!(
            parse(Method::Get, "/a/b?x=1&y=?"),
            Ok((TargetForm::Origin, "/a/b".into(), Some("x=1&y=?".into())))
        );
        assert_eq!(
            parse(Method::Get, "/"),
            Ok((TargetForm::Origin, "/".into(), None))
        );
        assert_eq!(
            parse(Method::Get, "//double"),
            Ok((TargetForm::Origin, "//double".into(), None))
        );
    }

    #[test]
    fn rfc9112_3_2_2_absolute_form() {
        let buf = b"http://Example.com:8080/p?q";
        let t = parse_target(buf, Span::new(0, buf.len()), Method::Get).unwrap();
        let TargetForm::Absolute {
            authority,
            path_and_query,
        } = t.form
        else {
            panic!("not absolute: {:?}", t.form)
        };
        assert_eq!(authority.of(buf), b"Example.com:8080");
        assert_eq!(path_and_query.of(buf), b"/p?q");
        assert_eq!(t.path.of(buf), b"/p");
        assert_eq!(t.query.map(|q| q.of(buf)), Some(&b"q"[..]));

        let buf = b"HTTPS://[::1]";
        let t = parse_target(buf, Span::new(0, buf.len()), Method::Get).unwrap();
        assert!(matches!(
            t.form,
            TargetForm::Absolute { authority, path_and_query }
                if authority.of(buf) == b"[::1]" && path_and_query.is_empty()
        ));
        let buf = b"http://h?q";
        let t = parse_target(buf, Span::new(0, buf.len()), Method::Get).unwrap();
        assert_eq!(t.path.of(buf), b"");
        assert_eq!(t.query.map(|q| q.of(buf)), Some(&b"q"[..]));
    }

    #[test]
    fn rfc9110_4_2_absolute_form_rejections() {
        for bad in [
            "ftp://example.com/",
            "http:/example.com/",
            "http:///path",
            "http://user@example.com/",
            "http://exa mple.com/",
            "http://example.com:99999/",
            "example.com/",
            "a",
        ] {
            assert!(parse(Method::Get, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rfc9112_3_2_3_authority_form_is_connect_only() {
        assert_eq!(
            parse(Method::Connect, "example.com:443").map(|t| t.0),
            Ok(TargetForm::Authority)
        );
        assert!(parse(Method::Connect, "example.com").is_err());
        assert!(parse(Method::Connect, "/").is_err());
        assert!(parse(Method::Get, "example.com:443").is_err());
    }

    #[test]
    fn rfc9112_3_2_4_asterisk_form_is_options_only() {
        assert_eq!(
            parse(Method::Options, "*"),
            Ok((TargetForm::Asterisk, "*".into(), None))
        );
        assert!(parse(Method::Get, "*").is_err());
        assert!(parse(Method::Options, "**").is_err());
    }

    #[test]
    fn fragments_and_raw_non_ascii_are_refused() {
        assert!(parse(Method::Get, "/a#frag").is_err());
        assert!(parse(Method::Get, "/caf\u{e9}").is_err());
        assert!(parse(Method::Get, "/{json}|\"quoted\"").is_ok());
    }

    /// RFC 9110 sec. 7.2 / RFC 3986 sec. 3.2.2: Host = uri-host [ ":" port ].
    #[test]
    fn rfc9110_7_2_host_syntax() {
        for good in [
            "example.com",
            "example.com:80",
            "EXAMPLE.com.",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:443",
            "[v1.fe80::a+en1]",
            "xn--bcher-kva.example",
            "host:",
        ] {
            assert!(is_valid_authority(good.as_bytes(), false), "{good}");
        }
        for bad in [
            "",
            ":80",
            "exa mple.com",
            "a/b",
            "a@b",
            "[::1",
            "[::1]x",
            "[zz]",
            "[]",
            "host:http",
            "host:65536",
            "host:000080",
            "a:b:c",
            "ex%4mple",
            "caf\u{e9}",
        ] {
            assert!(!is_valid_authority(bad.as_bytes(), false), "{bad}");
        }
    }

    /// RFC 3986 sec. 3.2.2 allows percent-encoding in a reg-name; coregate refuses it, since the
    /// router compares the host as sent and an upstream may decode it into another name.
    #[test]
    fn rfc3986_3_2_2_percent_encoded_hosts_are_refused() {
        for bad in ["ex%41mple.com", "%61", "a%2eb:80", "a%00", "%"] {
            assert!(!is_valid_authority(bad.as_bytes(), false), "{bad}");
        }
        assert!(parse(Method::Get, "http://ex%61mple.com/").is_err());
    }
}
