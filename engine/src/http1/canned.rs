//! coregate's own short responses: the early exits of the pipeline (400, 404, 429, 502...) and
//! `100 Continue`, in one format, written without allocation.
//!
//! It owns the wording and layout of those responses. Which status to answer, and whether the
//! client connection stays open, is decided by the caller (the proxy's one exit path); the
//! `close` flag here only writes that decision down.

use super::Version;
use super::encode::{HeadTooLarge, HeadWriter};

/// The interim response coregate sends itself when a client waits for it (RFC 9110
/// sec. 10.1.1) before the request body is forwarded.
pub const CONTINUE_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// The reason phrase of a status registered in RFC 9110 sec. 15 (and RFC 6585, 7725), or `None`
/// for anything else. Routes may answer with any of them, so the table is complete, not limited
/// to the statuses coregate emits on its own.
pub const fn reason_phrase(status: u16) -> Option<&'static str> {
    Some(match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => return None,
    })
}

/// Whether a response coregate writes itself (a canned one, or a route's `respond`) may carry
/// `Content-Length` with `status`.
///
/// Not a 1xx or a 204: RFC 9110 sec. 8.6 says a server MUST NOT send the field in them. Not a
/// 304 either: there it may only state the length the selected representation would have in a
/// 200 (sec. 8.6, 15.4.5), which a response coregate makes up has no way to know. None of the
/// three has content (sec. 6.4.1), so a writer leaves the body out too. Relayed upstream
/// responses are not this rule's business: their `Content-Length` on a 304 or to HEAD is the
/// upstream's, forwarded as sent.
pub const fn status_allows_content_length(status: u16) -> bool {
    !matches!(status, 100..=199 | 204 | 304)
}

/// Writes a complete plain-text response into `out` and returns its length:
///
/// ```text
/// HTTP/1.1 404 Not Found\r\n
/// content-type: text/plain\r\n
/// content-length: 10\r\n
/// connection: close\r\n          (only with `close`)
/// <extra fields>\r\n             (e.g. allow, retry-after)
/// \r\n
/// not found\n
/// ```
///
/// The body is `body` and a newline. `extra` fields are coregate's own and must be valid (they
/// are `debug_assert!`ed). A status without a [`reason_phrase`] gets an empty one. For a HEAD
/// request the caller sends only the first `len - body.len() - 1` bytes.
pub fn write_response(
    status: u16,
    body: &str,
    close: bool,
    extra: &[(&str, &str)],
    out: &mut [u8],
) -> Result<usize, HeadTooLarge> {
    let reason = reason_phrase(status).unwrap_or("");
    let mut head = HeadWriter::new(out);
    head.status_line(Version::Http11, status, reason.as_bytes())
        .field(b"content-type", b"text/plain")
        .field_u64(b"content-length", body.len() as u64 + 1);
    if close {
        head.field(b"connection", b"close");
    }
    for (name, value) in extra {
        head.field(name.as_bytes(), value.as_bytes());
    }
    let head_len = head.finish()?;
    let end = head_len + body.len() + 1;
    let dst = out.get_mut(head_len..end).ok_or(HeadTooLarge)?;
    let (text, newline) = dst.split_at_mut(body.len());
    text.copy_from_slice(body.as_bytes());
    newline[0] = b'\n';
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{Field, HeadScanner, Limits, Method, ResponseBody, parse_response};

    fn written(status: u16, body: &str, close: bool, extra: &[(&str, &str)]) -> String {
        let mut out = [0u8; 512];
        let len = write_response(status, body, close, extra, &mut out).unwrap();
        String::from_utf8(out[..len].to_vec()).unwrap()
    }

    #[test]
    fn the_documented_format() {
        assert_eq!(
            written(404, "not found", true, &[]),
            "HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 10\r\nconnection: close\r\n\r\nnot found\n"
        );
        assert_eq!(
            written(429, "slow down", false, &[("retry-after", "1")]),
            "HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\ncontent-length: 10\r\nretry-after: 1\r\n\r\nslow down\n"
        );
    }

    /// RFC 9110 sec. 8.6: no Content-Length in a 1xx or 204, and in a 304 only the length of a
    /// representation coregate does not have (sec. 15.4.5).
    #[test]
    fn rfc9110_8_6_no_content_length_on_1xx_204_or_304() {
        let without: Vec<u16> = (100..600)
            .filter(|&status| !status_allows_content_length(status))
            .collect();
        let informational: Vec<u16> = (100..200).collect();
        assert_eq!(without, [&informational[..], &[204, 304]].concat());
        for status in [200, 201, 205, 206, 301, 400, 404, 500, 503] {
            assert!(status_allows_content_length(status), "{status}");
        }
    }

    #[test]
    fn every_emitted_status_has_a_phrase() {
        for status in [
            400, 401, 403, 404, 405, 408, 413, 414, 417, 429, 431, 500, 501, 502, 503, 504,
        ] {
            assert!(reason_phrase(status).is_some(), "{status}");
        }
        assert_eq!(reason_phrase(418), None);
        assert!(written(599, "odd", true, &[]).starts_with("HTTP/1.1 599 \r\n"));
    }

    #[test]
    fn canned_responses_parse_back() {
        let mut out = [0u8; 256];
        let len = write_response(503, "no upstream", true, &[], &mut out).unwrap();
        let mut fields = [Field::EMPTY; Limits::DEFAULT_MAX_HEADERS];
        let head = parse_response(
            &out[..len],
            &mut HeadScanner::default(),
            &Limits::DEFAULT,
            &mut fields,
            Method::Get,
        )
        .unwrap()
        .complete()
        .unwrap();
        assert_eq!(head.status, 503);
        assert_eq!(head.body, ResponseBody::Length(12));
        assert!(!head.keep_alive);
        assert_eq!(&out[head.head_len..len], b"no upstream\n");
    }

    #[test]
    fn too_small_a_buffer_is_an_error() {
        let mut out = [0u8; 80];
        assert_eq!(
            write_response(400, "bad request", true, &[], &mut out),
            Err(HeadTooLarge)
        );
        let full = written(400, "bad request", true, &[]).len();
        let mut exact = vec![0u8; full];
        assert_eq!(
            write_response(400, "bad request", true, &[], &mut exact),
            Ok(full)
        );
        let mut short = vec![0u8; full - 1];
        assert_eq!(
            write_response(400, "bad request", true, &[], &mut short),
            Err(HeadTooLarge)
        );
    }

    #[test]
    fn request_errors_answer_with_close() {
        let mut out = [0u8; 256];
        let mut fields = [Field::EMPTY; 100];
        let err = crate::http1::parse_request(
            b"GET / HTTP/1.1\r\n\r\n",
            &mut HeadScanner::default(),
            &Limits::DEFAULT,
            &mut fields,
        )
        .unwrap_err();
        let len = err.write_response(&mut out).unwrap();
        assert_eq!(
            &out[..len],
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: 20\r\nconnection: close\r\n\r\nmissing host header\n"
        );
    }

    #[test]
    fn continue_is_a_bare_interim_response() {
        assert_eq!(CONTINUE_100, b"HTTP/1.1 100 Continue\r\n\r\n");
    }
}
