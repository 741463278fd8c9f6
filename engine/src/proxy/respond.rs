//! Responses coregate writes itself: a route's direct answer and every early exit (400, 404,
//! 405, 408, 413, 414, 431, 500, 501, 502, 503, 504), through one place and one format: a short
//! plain-text body, `connection: close` whenever the connection will not carry another request.

use crate::http1::{self, HeadWriter, Method, MethodSet, Version};
use crate::io::{Buf, Conn, Outbound};
use crate::metrics::Reject;
use crate::shard::{Edits, Shard};

use super::forward::write_connection;

/// An early exit: the status, the short text for the body, and why (for the metrics).
#[derive(Clone, Copy, Debug)]
pub struct Early {
    pub status: u16,
    pub text: &'static str,
    pub reason: Reject,
    /// For 405: the methods the path allows.
    pub allow: MethodSet,
    /// Fields the answer carries besides its framing: `WWW-Authenticate` of a 401 or 403,
    /// `Retry-After` and the `RateLimit` fields of a 429.
    pub fields: ExtraFields,
}

/// Fields most a canned answer carries.
const MAX_EXTRA_FIELDS: usize = 3;
/// Bytes of their values together: enough for a `WWW-Authenticate` with an error description.
const EXTRA_FIELD_BYTES: usize = 384;

/// A few response fields, their values copied inline: building an early answer allocates
/// nothing.
#[derive(Clone, Copy)]
pub struct ExtraFields {
    names: [&'static str; MAX_EXTRA_FIELDS],
    ends: [u16; MAX_EXTRA_FIELDS],
    count: usize,
    bytes: [u8; EXTRA_FIELD_BYTES],
}

impl ExtraFields {
    pub const NONE: ExtraFields = ExtraFields {
        names: [""; MAX_EXTRA_FIELDS],
        ends: [0; MAX_EXTRA_FIELDS],
        count: 0,
        bytes: [0; EXTRA_FIELD_BYTES],
    };

    /// Adds a field; `false` (and nothing added) when there is no room or the value is not
    /// visible ASCII and spaces (it goes into a head as it is).
    pub fn push(&mut self, name: &'static str, value: &[u8]) -> bool {
        let start = self.ends[..self.count].last().copied().unwrap_or(0) as usize;
        let end = start + value.len();
        if self.count == MAX_EXTRA_FIELDS
            || end > EXTRA_FIELD_BYTES
            || !value
                .iter()
                .all(|&b| b == b' ' || b == b'\t' || b.is_ascii_graphic())
        {
            return false;
        }
        self.bytes[start..end].copy_from_slice(value);
        self.names[self.count] = name;
        self.ends[self.count] = end as u16;
        self.count += 1;
        true
    }

    /// Adds a field whose value is written by `Display` (a challenge), without allocating.
    pub fn push_display(&mut self, name: &'static str, value: impl std::fmt::Display) -> bool {
        let mut text = [0u8; EXTRA_FIELD_BYTES];
        let mut cursor = SliceWriter {
            out: &mut text,
            len: 0,
        };
        if std::fmt::Write::write_fmt(&mut cursor, format_args!("{value}")).is_err() {
            return false;
        }
        let len = cursor.len;
        self.push(name, &text[..len])
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        (0..self.count).map(move |i| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
            let value = &self.bytes[start..self.ends[i] as usize];
            // Checked as ASCII by `push`.
            (self.names[i], std::str::from_utf8(value).unwrap_or(""))
        })
    }
}

impl std::fmt::Debug for ExtraFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// `fmt::Write` into a fixed slice; fails when it is full.
struct SliceWriter<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl std::fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        let end = self.len + text.len();
        let dst = self.out.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(text.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Early {
    pub const fn new(status: u16, text: &'static str, reason: Reject) -> Early {
        Early {
            status,
            text,
            reason,
            allow: MethodSet::EMPTY,
            fields: ExtraFields::NONE,
        }
    }

    /// The same answer with one more field.
    pub fn with_field(mut self, name: &'static str, value: &[u8]) -> Early {
        self.fields.push(name, value);
        self
    }

    pub const NOT_FOUND: Early = Early::new(404, "no route for this request", Reject::NoRoute);
    pub const UNAUTHORIZED_KEY: Early =
        Early::new(401, "missing or invalid API key", Reject::Unauthorized);
    pub const RATE_LIMITED: Early =
        Early::new(429, "rate limit exceeded, retry later", Reject::RateLimited);
    pub const BODY_TOO_LARGE: Early =
        Early::new(413, "request body too large", Reject::BodyTooLarge);
    pub const HEAD_TIMEOUT: Early = Early::new(
        408,
        "request head not received in time",
        Reject::ClientTimeout,
    );
    pub const BODY_TIMEOUT: Early = Early::new(
        408,
        "request body not received in time",
        Reject::ClientTimeout,
    );
    pub const NO_BUFFER: Early =
        Early::new(503, "proxy out of buffers, try again", Reject::Unavailable);
    pub const HEAD_TOO_LARGE: Early = Early::new(
        431,
        "forwarded request head too large",
        Reject::HeadersTooLarge,
    );
    pub const CONNECT: Early = Early::new(
        501,
        "CONNECT is not supported by this reverse proxy",
        Reject::NotImplemented,
    );
    pub const UPSTREAM_REFUSED: Early = Early::new(502, "upstream unavailable", Reject::BadGateway);
    pub const UPSTREAM_FAILED: Early = Early::new(
        502,
        "upstream closed or reset the connection",
        Reject::BadGateway,
    );
    pub const UPSTREAM_INVALID: Early =
        Early::new(502, "upstream sent an invalid response", Reject::BadGateway);
    pub const UPSTREAM_TIMEOUT: Early = Early::new(
        504,
        "upstream did not answer in time",
        Reject::GatewayTimeout,
    );
    pub const RESPONSE_TOO_LARGE: Early =
        Early::new(502, "upstream response head too large", Reject::BadGateway);

    pub fn method_not_allowed(allow: MethodSet) -> Early {
        Early {
            allow,
            ..Early::new(405, "method not allowed", Reject::MethodNotAllowed)
        }
    }

    /// The metrics reason for a parser refusal.
    pub fn from_request_error(err: http1::RequestError) -> Early {
        let reason = match err.status {
            414 => Reject::UriTooLong,
            431 => Reject::HeadersTooLarge,
            413 => Reject::BodyTooLarge,
            400 => Reject::BadRequest,
            _ => Reject::NotImplemented,
        };
        Early::new(err.status, err.reason, reason)
    }
}

/// Writes an early-exit response into a buffer; `None` when no buffer is free (the caller then
/// just closes).
pub fn early_response(shard: &Shard, early: &Early, close: bool) -> Option<(Buf, usize)> {
    let mut buf = shard.io.pool().take()?;
    let mut allow_text = [0u8; 96];
    let allow_len = write_allow(early.allow, &mut allow_text);
    let mut extra: [(&str, &str); MAX_EXTRA_FIELDS + 1] = [("", ""); MAX_EXTRA_FIELDS + 1];
    let mut count = 0;
    if allow_len > 0 {
        // The text is ASCII by construction.
        extra[0] = (
            "allow",
            std::str::from_utf8(&allow_text[..allow_len]).unwrap_or("GET"),
        );
        count = 1;
    }
    for field in early.fields.iter() {
        extra[count] = field;
        count += 1;
    }
    let len = http1::write_response(
        early.status,
        early.text,
        close,
        &extra[..count],
        buf.as_mut_slice(),
    )
    .ok()?;
    Some((buf, len))
}

/// Sends an early-exit response and records it. Errors sending are ignored: the connection is
/// closed by the caller anyway when `close` is set, and a failed send ends it otherwise.
pub(super) async fn send_early(
    shard: &Shard,
    client: &mut Conn,
    early: &Early,
    close: bool,
    head_only: bool,
    outcome: &mut super::Outcome,
) {
    shard.metrics.reject(early.reason);
    outcome.status = early.status;
    let Some((buf, len)) = early_response(shard, early, close) else {
        return;
    };
    let len = if head_only {
        len - early.text.len() - 1
    } else {
        len
    };
    let mut out = Outbound::new();
    out.push(buf, 0, len as u32);
    let deadline = shard.io.now() + shard.snapshot().timeouts.send;
    if client.send(&mut out, Some(deadline)).await.is_ok() {
        outcome.bytes += len as u64;
    }
}

/// Writes a route's direct answer: its status, configured fields, the route's response edits,
/// `content-length` and the body (omitted for HEAD). Returns `None` if it does not fit a buffer.
pub fn direct_response(
    shard: &Shard,
    status: u16,
    body: &[u8],
    headers: &[(Box<[u8]>, Box<[u8]>)],
    edits: &Edits,
    method: Method,
    close: bool,
    client_version: Version,
) -> Option<(Buf, usize)> {
    let mut buf = shard.io.pool().take()?;
    let out = buf.as_mut_slice();
    let mut w = HeadWriter::new(out);
    let reason = http1::reason_phrase(status).unwrap_or("");
    w.status_line(Version::Http11, status, reason.as_bytes());
    for (name, value) in headers {
        if !edits.drops(name) {
            w.field(name, value);
        }
    }
    for (name, value) in &edits.add {
        w.field(name, value);
    }
    w.field_u64(b"content-length", body.len() as u64);
    write_connection(&mut w, close, client_version);
    let head_len = w.finish().ok()?;
    if method == Method::Head {
        return Some((buf, head_len));
    }
    let end = head_len.checked_add(body.len())?;
    buf.as_mut_slice()
        .get_mut(head_len..end)?
        .copy_from_slice(body);
    Some((buf, end))
}

/// `GET, HEAD, ...` for the `Allow` field; returns the length written.
fn write_allow(allow: MethodSet, out: &mut [u8]) -> usize {
    let mut len = 0;
    for method in allow.iter() {
        let Some(name) = method.as_str() else {
            continue;
        };
        let sep: &[u8] = if len == 0 { b"" } else { b", " };
        if len + sep.len() + name.len() > out.len() {
            break;
        }
        out[len..len + sep.len()].copy_from_slice(sep);
        len += sep.len();
        out[len..len + name.len()].copy_from_slice(name.as_bytes());
        len += name.len();
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_methods_in_order() {
        let mut out = [0u8; 96];
        let set: MethodSet = [Method::Post, Method::Get].into_iter().collect();
        let len = write_allow(set, &mut out);
        assert_eq!(&out[..len], b"GET, POST");
    }
}
