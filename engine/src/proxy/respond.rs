//! `respond`: every answer coregate writes itself goes through here, with one format and one
//! rule for whether the client connection stays open afterwards.
//!
//! - A [`Refusal`] is what a phase decides when it stops a request: a status, a short text for
//!   the plain-text body, the metrics reason and, for a few statuses, a detail borrowed from the
//!   snapshot (the methods a path allows, an authentication challenge, the rate-limit fields).
//!   It is written into a buffer at once ([`answer_refusal`]), so nothing larger than an
//!   [`Answer`] waits for the client's socket.
//! - A route's [`DirectResponse`] is written by [`answer_direct`].
//! - [`stays_open`] is the one place that decides whether the connection carries another
//!   request: only when the request asked for it, its body was consumed, the answer casts no
//!   doubt on its framing, and the shard is not draining.

use std::cell::RefCell;
use std::future::Future;

use crate::auth::Challenge;
use crate::error::{Error, ErrorKind, Side};
use crate::http1::{self, HeadWriter, Method, MethodSet, RequestBody, RequestError, Version};
use crate::io::{Buf, Outbound};
use crate::metrics::Reject;
use crate::ratelimit::{Decision, Limiter};
use crate::shard::Shard;
use crate::snapshot::{DirectResponse, Edits};

use super::head::write_connection;
use super::record::Outcome;
use super::{Request, Session, Step};

/// Why a request is answered by coregate itself.
#[derive(Clone, Copy)]
pub struct Refusal<'a> {
    pub status: u16,
    /// The plain-text body: a short fixed sentence.
    pub text: &'static str,
    pub reason: Reject,
    /// The request's framing (or coregate's own state) is in doubt: the connection closes
    /// whatever the request asked for.
    pub closes: bool,
    pub detail: Detail<'a>,
}

/// Fields an answer carries besides its framing.
#[derive(Clone, Copy)]
pub enum Detail<'a> {
    None,
    /// 405: `Allow`.
    Allow(MethodSet),
    /// 401 / 403: `WWW-Authenticate`.
    Challenge(Challenge<'a>),
    /// 503 with no endpoint available: `Retry-After` in seconds.
    RetryAfter(u64),
    /// 308: `Location: https://host[:port]path[?query]`.
    Https {
        host: &'a [u8],
        port: u16,
        path: &'a [u8],
        query: Option<&'a [u8]>,
    },
    /// 429: `Retry-After`, `RateLimit-Policy` and `RateLimit`, formatted from the limiter's
    /// decision when the answer is written.
    RateLimited {
        limiter: &'a RefCell<Limiter>,
        decision: Decision,
    },
}

impl Refusal<'static> {
    /// A refusal that leaves the connection usable when the request allows.
    pub const fn of_policy(status: u16, text: &'static str, reason: Reject) -> Refusal<'static> {
        Refusal {
            status,
            text,
            reason,
            closes: false,
            detail: Detail::None,
        }
    }

    /// A refusal after which nothing more is read from the connection.
    pub const fn closing(status: u16, text: &'static str, reason: Reject) -> Refusal<'static> {
        Refusal {
            closes: true,
            ..Refusal::of_policy(status, text, reason)
        }
    }

    pub const NOT_FOUND: Refusal<'static> =
        Refusal::of_policy(404, "no route for this request", Reject::NoRoute);
    pub const BODY_TOO_LARGE: Refusal<'static> =
        Refusal::closing(413, "request body too large", Reject::BodyTooLarge);
    pub const HEAD_TIMEOUT: Refusal<'static> = Refusal::closing(
        408,
        "request head not received in time",
        Reject::ClientTimeout,
    );
    pub const BODY_TIMEOUT: Refusal<'static> = Refusal::closing(
        408,
        "request body not received in time",
        Reject::ClientTimeout,
    );
    pub const NO_BUFFER: Refusal<'static> =
        Refusal::closing(503, "proxy out of buffers, try again", Reject::Unavailable);
    pub const HEAD_TOO_LARGE: Refusal<'static> = Refusal::closing(
        431,
        "forwarded request head too large",
        Reject::HeadersTooLarge,
    );
    pub const CONNECT: Refusal<'static> = Refusal::closing(
        501,
        "CONNECT is not supported by this reverse proxy",
        Reject::NotImplemented,
    );
    pub const DIRECT_TOO_LARGE: Refusal<'static> = Refusal::closing(
        500,
        "configured response too large for a buffer",
        Reject::Unavailable,
    );

    pub const REDIRECT_HTTPS: Refusal<'static> = Refusal::of_policy(
        308,
        "this resource is served over https",
        Reject::RedirectHttps,
    );

    pub fn method_not_allowed(allow: MethodSet) -> Refusal<'static> {
        Refusal {
            detail: Detail::Allow(allow),
            ..Refusal::of_policy(405, "method not allowed", Reject::MethodNotAllowed)
        }
    }

    /// 400 for a request whose path, body framing or fields break a rule.
    pub const fn bad_request(text: &'static str) -> Refusal<'static> {
        Refusal::closing(400, text, Reject::BadRequest)
    }

    /// The parser's refusal of a head.
    pub fn of_head(err: RequestError) -> Refusal<'static> {
        let reason = match err.status {
            414 => Reject::UriTooLong,
            431 => Reject::HeadersTooLarge,
            413 => Reject::BodyTooLarge,
            400 => Reject::BadRequest,
            _ => Reject::NotImplemented,
        };
        Refusal::closing(err.status, err.reason, reason)
    }

    /// The answer to a failed exchange, by the side at fault: 504 for an upstream timeout, 502
    /// for any other upstream failure, 503 when coregate ran out of buffers, 408 / 400 / 413
    /// for a request body that came too slowly, malformed or too large; `None` when the client
    /// is gone and there is no one to answer. The text is the error's own sentence.
    pub fn of_error(err: &Error) -> Option<Refusal<'static>> {
        Some(match (err.side, err.kind) {
            (Side::Internal, _) => Refusal::NO_BUFFER,
            (Side::Downstream, ErrorKind::Timeout) => Refusal::BODY_TIMEOUT,
            (Side::Downstream, ErrorKind::Protocol) => Refusal::bad_request(err.message),
            (Side::Downstream, ErrorKind::Limit) => Refusal::BODY_TOO_LARGE,
            (Side::Downstream, _) => return None,
            (_, ErrorKind::Timeout) => Refusal::of_policy(504, err.message, Reject::GatewayTimeout),
            _ => Refusal::of_policy(502, err.message, Reject::BadGateway),
        })
    }
}

impl<'a> Refusal<'a> {
    pub fn with_detail(self, detail: Detail<'a>) -> Refusal<'a> {
        Refusal { detail, ..self }
    }
}

/// Whether the request's body is off the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyState {
    /// Read to its end (or there was none): the next bytes are the next request.
    Consumed,
    /// Some of it may still arrive: reading on would take it for a request.
    Unread,
}

/// Whether the client connection carries another request after an answer: only when the head
/// was parsed and asked to keep the connection, the body is off the connection and the shard
/// is not draining.
pub fn stays_open(request: Option<&Request>, body: BodyState, draining: bool) -> bool {
    request.is_some_and(|request| request.keep_alive) && body == BodyState::Consumed && !draining
}

/// An answer written and ready to send.
pub struct Answer {
    buf: Buf,
    len: u32,
    status: u16,
    close: bool,
}

/// Writes the answer to `refusal` (counted in the metrics), closing the connection when the
/// refusal or [`stays_open`] says so. `None` when no buffer is free: the connection then just
/// closes.
pub fn answer_refusal(
    shard: &Shard,
    refusal: &Refusal<'_>,
    request: Option<&Request>,
    body: BodyState,
) -> Result<Answer, u16> {
    shard.metrics.reject(refusal.reason);
    let close = refusal.closes || !stays_open(request, body, shard.draining());
    let head_only = request.is_some_and(|request| request.method == Method::Head);
    let Some(mut buf) = shard.io.pool().take() else {
        return Err(refusal.status);
    };
    match write_refusal(refusal, close, head_only, buf.as_mut_slice()) {
        Ok(len) => Ok(Answer {
            buf,
            len: len as u32,
            status: refusal.status,
            close,
        }),
        Err(_) => Err(refusal.status),
    }
}

/// Writes a refusal's head and (unless `head_only`) its text; returns the length.
fn write_refusal(
    refusal: &Refusal<'_>,
    close: bool,
    head_only: bool,
    out: &mut [u8],
) -> Result<usize, http1::HeadTooLarge> {
    let mut detail = [0u8; 512];
    let mut written = DetailText::new(&mut detail);
    let mut fields: [(&str, &str); 3] = [("", ""); 3];
    let count = written.fill(&refusal.detail, &mut fields);
    let len = http1::write_response(refusal.status, refusal.text, close, &fields[..count], out)?;
    Ok(if head_only {
        len - refusal.text.len() - 1
    } else {
        len
    })
}

/// The text of a detail's fields, formatted into a stack buffer (no allocation).
struct DetailText<'b> {
    out: &'b mut [u8],
}

impl<'b> DetailText<'b> {
    fn new(out: &'b mut [u8]) -> DetailText<'b> {
        DetailText { out }
    }

    /// Writes each field of `detail` and fills `fields` with them; returns how many.
    fn fill<'f>(&'f mut self, detail: &Detail<'_>, fields: &mut [(&'f str, &'f str); 3]) -> usize {
        let mut rest: &'f mut [u8] = self.out;
        let mut count = 0;
        let mut push = |name: &'static str, value: std::fmt::Arguments<'_>| {
            let (text, after) = format_into(std::mem::take(&mut rest), value);
            rest = after;
            if let Some(text) = text {
                fields[count] = (name, text);
                count += 1;
            }
        };
        match detail {
            Detail::None => {}
            Detail::Allow(allow) => push("allow", format_args!("{}", AllowList(*allow))),
            Detail::Challenge(challenge) => {
                push("www-authenticate", format_args!("{challenge}"));
            }
            Detail::RetryAfter(seconds) => push("retry-after", format_args!("{seconds}")),
            Detail::Https {
                host,
                port,
                path,
                query,
            } => {
                let port = PortSuffix(*port);
                let (mark, query) = query.map_or(("", &b""[..]), |q| ("?", q));
                push(
                    "location",
                    format_args!(
                        "https://{}{port}{}{mark}{}",
                        Ascii(host),
                        Ascii(path),
                        Ascii(query)
                    ),
                );
            }
            Detail::RateLimited { limiter, decision } => {
                let limiter = limiter.borrow();
                if let Some(retry_after) = decision.retry_after() {
                    push(
                        "retry-after",
                        format_args!("{}", Ascii(retry_after.as_bytes())),
                    );
                }
                let policy = limiter.policy_value();
                push(
                    "ratelimit-policy",
                    format_args!("{}", Ascii(policy.as_bytes())),
                );
                let limit = limiter.rate_limit_value(decision);
                push("ratelimit", format_args!("{}", Ascii(limit.as_bytes())));
            }
        }
        count
    }
}

/// Formats `value` at the start of `out`; returns the text (when it fit and is a safe field
/// value: visible ASCII and spaces) and the rest of `out`.
fn format_into<'o>(
    out: &'o mut [u8],
    value: std::fmt::Arguments<'_>,
) -> (Option<&'o str>, &'o mut [u8]) {
    let capacity = out.len();
    let mut cursor: &mut [u8] = &mut out[..];
    let fitted = std::io::Write::write_fmt(&mut cursor, value).is_ok();
    let len = capacity - cursor.len();
    let (text, rest) = out.split_at_mut(len);
    let safe = text
        .iter()
        .all(|&b| b == b' ' || b == b'\t' || b.is_ascii_graphic());
    let text = (fitted && safe)
        .then(|| std::str::from_utf8(text).ok())
        .flatten();
    (text, rest)
}

/// `:port` in a URL, empty for https's own 443.
struct PortSuffix(u16);

impl std::fmt::Display for PortSuffix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            443 => Ok(()),
            port => write!(f, ":{port}"),
        }
    }
}

/// `GET, HEAD, ...` for the `Allow` field.
struct AllowList(MethodSet);

impl std::fmt::Display for AllowList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names = self.0.iter().filter_map(|method| method.as_str());
        if let Some(first) = names.next() {
            f.write_str(first)?;
        }
        for name in names {
            write!(f, ", {name}")?;
        }
        Ok(())
    }
}

/// Bytes already checked as ASCII field values, written as they are.
struct Ascii<'b>(&'b [u8]);

impl std::fmt::Display for Ascii<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(std::str::from_utf8(self.0).unwrap_or(""))
    }
}

/// Writes a route's direct answer: its status, configured fields, the route's response edits,
/// `content-length` and the body (omitted for HEAD). A status that has no content (204, 304,
/// 1xx; RFC 9110 sec. 8.6) carries neither: validation refuses a body for one. `None` if it
/// does not fit a buffer.
pub fn answer_direct(
    shard: &Shard,
    response: &DirectResponse,
    edits: &Edits,
    request: &Request,
    close: bool,
) -> Option<Answer> {
    let mut buf = shard.io.pool().take()?;
    let len = write_direct(response, edits, request, close, buf.as_mut_slice())?;
    Some(Answer {
        buf,
        len: len as u32,
        status: response.status,
        close,
    })
}

fn write_direct(
    response: &DirectResponse,
    edits: &Edits,
    request: &Request,
    close: bool,
    out: &mut [u8],
) -> Option<usize> {
    let mut w = HeadWriter::new(out);
    let reason = http1::reason_phrase(response.status).unwrap_or("");
    w.status_line(Version::Http11, response.status, reason.as_bytes());
    for (name, value) in &response.headers {
        if !edits.drops(name) {
            w.field(name, value);
        }
    }
    for (name, value) in &edits.add {
        w.field(name, value);
    }
    let has_content = http1::status_allows_content_length(response.status);
    if has_content {
        w.field_u64(b"content-length", response.body.len() as u64);
    }
    write_connection(&mut w, close, request.version);
    let head_len = w.finish().ok()?;
    if request.method == Method::Head || !has_content {
        return Some(head_len);
    }
    let end = head_len.checked_add(response.body.len())?;
    out.get_mut(head_len..end)?.copy_from_slice(&response.body);
    Some(end)
}

impl Session {
    /// Sends an answer coregate wrote; the connection goes on unless the answer closes it or
    /// the send failed.
    pub(super) async fn respond(&mut self, answer: Answer, outcome: &mut Outcome) -> Step {
        outcome.status = answer.status;
        let close = answer.close;
        let mut out = Outbound::new();
        out.push(answer.buf, 0, answer.len);
        let deadline = self.shard.io.now() + self.shard.snapshot().timeouts.send;
        match self.client.send(&mut out, Some(deadline)).await {
            Ok(()) => {
                outcome.bytes += answer.len as u64;
                if close { Step::Close } else { Step::Continue }
            }
            Err(_) => Step::Close,
        }
    }

    /// Answers from the route itself. The connection stays open only if the request's body
    /// (if any) is already here to skip.
    pub(super) async fn answer_route(
        &mut self,
        request: &Request,
        response: &DirectResponse,
        edits: &Edits,
        outcome: &mut Outcome,
    ) -> Step {
        let body = match request.body {
            RequestBody::None => BodyState::Consumed,
            RequestBody::Length(length) if length <= self.rb.len() as u64 => {
                self.rb.consume(length as usize);
                BodyState::Consumed
            }
            _ => BodyState::Unread,
        };
        let close = !stays_open(Some(request), body, self.shard.draining());
        let answer = answer_direct(&self.shard, response, edits, request, close);
        match answer {
            Some(answer) => self.respond(answer, outcome).await,
            None => {
                self.refuse(
                    &Refusal::DIRECT_TOO_LARGE,
                    Some(request),
                    BodyState::Unread,
                    outcome,
                )
                .await
            }
        }
    }

    /// Answers `refusal` and says what the connection does next. Writes synchronously, so the
    /// refusal (which may borrow the request's head) is gone before the send awaits.
    pub(super) fn refuse<'a>(
        &'a mut self,
        refusal: &Refusal<'_>,
        request: Option<&Request>,
        body: BodyState,
        outcome: &'a mut Outcome,
    ) -> impl Future<Output = Step> + 'a {
        let answer = answer_refusal(&self.shard, refusal, request, body);
        self.send_refusal(answer, outcome)
    }

    /// Sends a written refusal; without one (no buffer was free) the connection just closes.
    pub(super) async fn send_refusal(
        &mut self,
        answer: Result<Answer, u16>,
        outcome: &mut Outcome,
    ) -> Step {
        match answer {
            Ok(answer) => self.respond(answer, outcome).await,
            Err(status) => {
                outcome.status = status;
                Step::Close
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(refusal: &Refusal<'_>, close: bool) -> String {
        let mut out = [0u8; 2048];
        let len = write_refusal(refusal, close, false, &mut out).unwrap();
        String::from_utf8(out[..len].to_vec()).unwrap()
    }

    #[test]
    fn allow_lists_methods_in_order() {
        let set: MethodSet = [Method::Post, Method::Get].into_iter().collect();
        let text = written(&Refusal::method_not_allowed(set), false);
        assert!(text.contains("allow: GET, POST\r\n"), "{text}");
    }

    #[test]
    fn no_endpoint_says_when_to_come_back() {
        let refusal = super::super::pick::OVERFLOW.with_detail(Detail::RetryAfter(7));
        let text = written(&refusal, false);
        assert!(text.starts_with("HTTP/1.1 503 "), "{text}");
        assert!(text.contains("retry-after: 7\r\n"), "{text}");
    }

    #[test]
    fn a_closing_refusal_says_so() {
        let text = written(&Refusal::BODY_TOO_LARGE, true);
        assert!(text.starts_with("HTTP/1.1 413 "), "{text}");
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(text.ends_with("request body too large\n"), "{text}");
    }

    #[test]
    fn the_connection_stays_open_only_when_everything_allows() {
        let request = Request {
            method: Method::Get,
            version: Version::Http11,
            keep_alive: true,
            body: http1::RequestBody::None,
            expect_continue: false,
        };
        assert!(stays_open(Some(&request), BodyState::Consumed, false));
        assert!(!stays_open(Some(&request), BodyState::Unread, false));
        assert!(!stays_open(Some(&request), BodyState::Consumed, true));
        assert!(!stays_open(None, BodyState::Consumed, false));
        let closing = Request {
            keep_alive: false,
            ..request
        };
        assert!(!stays_open(Some(&closing), BodyState::Consumed, false));
    }
}
