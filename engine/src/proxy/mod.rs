//! The request pipeline: one task per client connection, running its requests one after the
//! other (pipelined requests are answered in order).
//!
//! | phase | where | what happens |
//! |---|---|---|
//! | `read_head` | [`Session::read_head`] | receive until a whole head is in the connection buffer (keep-alive idle timeout before the first byte, then a total head deadline); parse it |
//! | `route` | [`Session::decide`] | normalise the path, look up host -> method -> path; 404 / 405 |
//! | `admit` | [`Session::decide`] | body limit (413); CONNECT refused (501) |
//! | `forward` head | [`forward::write_request_head`] | written synchronously from the parsed spans into a fresh buffer, before any await |
//! | `forward` | [`Session::forward`] | take a pooled upstream connection (or connect); send head and the body bytes at hand in one write; stream the rest of the body |
//! | response head | [`Session::read_response`] | receive and parse the upstream head; write the client's head |
//! | `relay` | [`relay`] | head and body bytes at hand leave in one write; the rest streams by length, chunked (re-framed) or until close |
//! | finish | [`Session::forward`] | the upstream connection goes back to its pool only after a complete, clean exchange; the client connection continues if both sides allow |
//! | record | [`Session::record`] | once per exchange, from its [`Outcome`]: responses by route and status class, latency, the access-log line |
//!
//! Early exits (400, 404, 405, 408, 413, 414, 431, 501, 502, 503, 504) all go through
//! [`respond`], which also decides once whether the client connection stays open: it closes
//! whenever the request's body was not consumed or its framing is in doubt.
//!
//! Retries: a request whose whole head and body were sent in one write, with an idempotent
//! method, is sent once more on a fresh connection when a *pooled* connection turns out dead
//! before any response byte (the upstream closed it while it idled).
//!
//! Steady state allocates nothing: heads, bodies and responses live in the shard's buffers, the
//! parse scratch is the shard's, the task's own state is fixed size.

pub mod forward;
pub mod relay;
pub mod respond;

use std::future::Future;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::access_log;
use crate::auth::VerifiedToken;
use crate::config::AuthMethod;
use crate::context::ConnContext;
use crate::frame::in_frame;
use crate::http1::{
    self, CONTINUE_100, ChunkedDecoder, HeadScanner, Method, Parsed, RequestBody, RequestHead,
    ResponseBody, TargetForm, Version,
};
use crate::io::{Buf, Conn, Outbound, ReadBuf};
use crate::metrics::{Reject, RouteStatsId};
use crate::router::{Lookup, Normalized, Params, normalize_path};
use crate::shard::{Action, RouteTarget, Scratch, Shard, Snapshot, Timeouts, UpstreamTimeouts};
use crate::upstream::{Checkout, EndpointPool};

use forward::{ClientFraming, RequestHeadInput, ResponseHeadInput};
use relay::{Ends, Pace, RelayError, Stop};
use respond::{Early, send_early};

/// What a connection does after an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read the next request.
    Continue,
    /// Close the client connection.
    Close,
}

/// Serves one client connection until it closes.
///
/// While the connection idles between requests, this task holds only the [`Session`] and a
/// pending receive; each exchange runs in a frame from the shard's pool (see [`crate::frame`]),
/// so the state of a request in progress costs memory only while a request is in progress.
///
/// Not an `async fn`: its arguments would stay in the task's future beside the session they are
/// moved into, and that future is what every idle connection costs.
pub fn serve(shard: Rc<Shard>, client: Conn, context: ConnContext) -> impl Future<Output = ()> {
    let key = shard.register(client.raw_fd());
    let mut session = Session {
        shard,
        client,
        context,
        rb: ReadBuf::new(),
        scanner: HeadScanner::new(),
        key,
        served: 0,
        first_byte: None,
    };
    // The session is captured and used in place (an `async fn` taking it would copy it again).
    async move {
        let frames = session.shard.frames().clone();
        loop {
            if session.rb.is_empty() && session.wait_for_request().await == Step::Close {
                break;
            }
            if in_frame(&frames, session.exchange()).await == Step::Close {
                break;
            }
            session.served += 1;
        }
        session.shard.unregister(session.key);
    }
}

/// One client connection's state between requests: a few words, no buffer while idle.
struct Session {
    shard: Rc<Shard>,
    client: Conn,
    /// The listener that accepted the connection.
    context: ConnContext,
    rb: ReadBuf,
    scanner: HeadScanner,
    /// Key in the shard's connection registry.
    key: usize,
    /// Requests answered so far on this connection.
    served: u64,
    /// When the first byte of the request being read arrived.
    first_byte: Option<Instant>,
}

/// What outlives the parsed head of a request.
#[derive(Clone, Copy)]
struct Request {
    method: Method,
    version: Version,
    keep_alive: bool,
    body: RequestBody,
    expect_continue: bool,
    head_len: usize,
    /// The protocols the client asked to switch to, when coregate relays the request
    /// (`Upgrade`); the connection becomes a tunnel if the upstream answers `101` with one of
    /// them.
    upgrade: Option<Protocols>,
}

/// The value of a request's `Upgrade` field, kept for checking the upstream's `101` (the head
/// it came from is gone by then). Longer lists than this are not relayed.
#[derive(Clone, Copy)]
struct Protocols {
    bytes: [u8; Protocols::MAX],
    len: u8,
}

impl Protocols {
    const MAX: usize = 64;

    fn new(value: &[u8]) -> Option<Protocols> {
        let mut bytes = [0u8; Protocols::MAX];
        bytes.get_mut(..value.len())?.copy_from_slice(value);
        Some(Protocols {
            bytes,
            len: value.len() as u8,
        })
    }

    /// Whether `chosen` (a `101`'s `Upgrade`) is one of these, compared as tokens without
    /// regard to case (RFC 9110 sec. 7.8), and is not `h2c`.
    fn offers(&self, chosen: &[u8]) -> bool {
        let chosen = chosen.trim_ascii();
        !names_h2c(chosen)
            && self.bytes[..self.len as usize]
                .split(|&b| b == b',')
                .any(|offered| offered.trim_ascii().eq_ignore_ascii_case(chosen))
    }
}

/// What to do with a request, decided synchronously right after its head was parsed.
enum Decision<'s> {
    Early {
        early: Early,
        close: bool,
    },
    Respond {
        target: &'s RouteTarget,
    },
    Forward {
        target: &'s RouteTarget,
        upstream: usize,
        endpoint: Rc<EndpointPool>,
        head: Buf,
        head_len: usize,
    },
}

/// How reading the upstream's response head can fail.
enum ResponseFailure {
    /// Closed or reset before any byte: a pooled connection the upstream had dropped.
    ClosedEarly,
    Timeout,
    Invalid,
    HeadTooLarge,
    NoBuffer,
}

/// The client's response, decided from the upstream's head.
struct ResponsePlan {
    status: u16,
    /// A `101` to an upgrade request: the connections become a tunnel after the head.
    switching: bool,
    body: ResponseBody,
    framing: ClientFraming,
    upstream_keep_alive: bool,
    close: bool,
    head: Buf,
    head_len: usize,
}

/// NGINX's status for a request whose client closed the connection before the answer.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// What one exchange did, filled in as it goes and recorded once when it ends: the metrics and
/// the access log read nothing else. Lives in the exchange's frame, never in an idle session.
struct Outcome {
    /// When the first byte of the request arrived.
    started: Instant,
    /// The parsed request; `None` when its head was refused or never completed.
    request: Option<Request>,
    /// The status answered; 0 while nothing was.
    status: u16,
    route: Option<RouteStatsId>,
    endpoint: Option<SocketAddr>,
    /// Response bytes written to the client.
    bytes: u64,
    /// From sending the request upstream to having its response head.
    upstream_time: Option<Duration>,
    /// When the answer was complete, if that is before the exchange ends (a `101` is complete
    /// when sent; the tunnel after it is not part of its latency).
    finished: Option<Instant>,
    /// The request's text fields, copied only when the access log is on.
    log: LogFields,
}

impl Outcome {
    fn new(started: Instant) -> Outcome {
        Outcome {
            started,
            request: None,
            status: 0,
            route: None,
            endpoint: None,
            bytes: 0,
            upstream_time: None,
            finished: None,
            log: LogFields::new(),
        }
    }

    fn elapsed(&self, shard: &Shard) -> Duration {
        self.finished
            .unwrap_or_else(|| shard.io.now())
            .saturating_duration_since(self.started)
    }
}

/// The request's text an access-log line shows, copied out of the connection buffer while the
/// head is parsed (the buffer is reused before the line is written). Fixed size, each field cut
/// at [`access_log::MAX_FIELD_BYTES`]: no allocation, whatever the request.
///
/// The bytes start uninitialised: every exchange builds one, and zeroing 2.5 KiB per request
/// for a log that may be off is a cost for nothing. Only what [`LogFields::set`] wrote is ever
/// read.
struct LogFields {
    bytes: [MaybeUninit<u8>; LogField::COUNT * access_log::MAX_FIELD_BYTES],
    lens: [u16; LogField::COUNT],
}

#[derive(Clone, Copy)]
enum LogField {
    Method,
    Target,
    RequestId,
    Referer,
    UserAgent,
}

impl LogField {
    const COUNT: usize = 5;
}

impl LogFields {
    fn new() -> LogFields {
        LogFields {
            bytes: [const { MaybeUninit::uninit() }; LogField::COUNT * access_log::MAX_FIELD_BYTES],
            lens: [0; LogField::COUNT],
        }
    }

    fn set(&mut self, field: LogField, value: &[u8]) {
        let len = value.len().min(access_log::MAX_FIELD_BYTES);
        let start = field as usize * access_log::MAX_FIELD_BYTES;
        let slot = &mut self.bytes[start..start + len];
        for (dst, &src) in slot.iter_mut().zip(&value[..len]) {
            dst.write(src);
        }
        if len < value.len() && len >= 3 {
            for (dst, &src) in slot[len - 3..].iter_mut().zip(b"...") {
                dst.write(src);
            }
        }
        self.lens[field as usize] = len as u16;
    }

    fn get(&self, field: LogField) -> &[u8] {
        let start = field as usize * access_log::MAX_FIELD_BYTES;
        let len = self.lens[field as usize] as usize;
        let written = &self.bytes[start..start + len];
        // SAFETY: `set` initialised the first `len` bytes of this field's range before setting
        // `len`; the other bytes are never read.
        unsafe { std::slice::from_raw_parts(written.as_ptr().cast::<u8>(), len) }
    }

    /// Copies what the line needs from a parsed head, with the request's id (the client's when
    /// it was safe to keep, else the one coregate made).
    fn capture(&mut self, buf: &[u8], head: &RequestHead, fields: &[http1::Field], id: &[u8]) {
        self.set(LogField::Method, head.method_span.of(buf));
        self.set(LogField::Target, head.target.of(buf));
        self.set(LogField::RequestId, id);
        self.set(LogField::Referer, b"");
        self.set(LogField::UserAgent, b"");
        for field in &fields[..head.field_count.min(fields.len())] {
            let name = field.name.of(buf);
            if name.eq_ignore_ascii_case(b"user-agent") {
                self.set(LogField::UserAgent, field.value.of(buf));
            } else if name.eq_ignore_ascii_case(b"referer") {
                self.set(LogField::Referer, field.value.of(buf));
            }
        }
    }
}

impl Session {
    /// One request and its response, from the first byte of the head to the last byte of the
    /// answer; recorded (metrics, access log) once, when it ends.
    async fn exchange(&mut self) -> Step {
        let snapshot = self.shard.snapshot();
        let started = self
            .first_byte
            .take()
            .unwrap_or_else(|| self.shard.io.now());
        let mut outcome = Outcome::new(started);
        let step = self.run_exchange(&snapshot, &mut outcome).await;
        self.record(&outcome);
        step
    }

    async fn run_exchange(&mut self, snapshot: &Snapshot, outcome: &mut Outcome) -> Step {
        let (request, decision) = match self.read_head(snapshot, outcome).await {
            Ok(decided) => decided,
            Err(step) => return step,
        };
        self.rb.consume(request.head_len);
        match decision {
            Decision::Early { early, close } => {
                let close = close || self.shard.draining();
                send_early(
                    &self.shard,
                    &mut self.client,
                    &early,
                    close,
                    request.method == Method::Head,
                    outcome,
                )
                .await;
                if close { Step::Close } else { Step::Continue }
            }
            Decision::Respond { target } => self.respond_direct(&request, target, outcome).await,
            Decision::Forward {
                target,
                upstream,
                endpoint,
                head,
                head_len,
            } => {
                self.forward(
                    snapshot, &request, target, upstream, endpoint, head, head_len, outcome,
                )
                .await
            }
        }
    }

    /// Counts the exchange and writes its access-log line. A request whose head was read but
    /// that got no answer (the client left first) counts as 499, as NGINX logs it.
    fn record(&self, outcome: &Outcome) {
        let shard = &self.shard;
        let status = match (&outcome.request, outcome.status) {
            // The connection ended before a head arrived: nothing was asked.
            (None, 0) => return,
            (Some(_), 0) => CLIENT_CLOSED_REQUEST,
            (_, status) => status,
        };
        let total_time = outcome.elapsed(shard);
        shard.metrics.response(outcome.route, status, total_time);
        if !shard.log.enabled() {
            return;
        }
        // A request refused before its head parsed (400, 408, 414, 431) is logged with `-` for
        // what is not known: those are the lines an attack leaves.
        let fields = &outcome.log;
        let (method, version) = match &outcome.request {
            Some(request) => (request.method, Some(request.version)),
            None => (Method::Other, None),
        };
        let parsed = outcome.request.is_some();
        shard.metrics.with_route_name(outcome.route, |route_name| {
            shard.log.write(&access_log::Entry {
                time: std::time::SystemTime::now(),
                client: self.client.peer_addr(),
                request_id: fields.get(LogField::RequestId),
                method,
                method_text: if parsed {
                    fields.get(LogField::Method)
                } else {
                    b"-"
                },
                target: if parsed {
                    fields.get(LogField::Target)
                } else {
                    b"-"
                },
                version,
                route: route_name,
                upstream: outcome.endpoint,
                status,
                bytes: outcome.bytes,
                upstream_time: outcome.upstream_time,
                total_time,
                referer: fields.get(LogField::Referer),
                user_agent: fields.get(LogField::UserAgent),
            })
        });
    }

    /// Waits, holding no buffer, for the first bytes of the next request: up to the header
    /// timeout for a connection's first request, the keep-alive timeout after that. An idle
    /// connection that times out, closes or is shut down by a drain just ends.
    async fn wait_for_request(&mut self) -> Step {
        if self.shard.draining() {
            return Step::Close;
        }
        // A block, so the copied timeouts are not kept in the future across the wait.
        let wait = {
            let timeouts = &self.shard.snapshot().timeouts;
            if self.served == 0 {
                timeouts.header
            } else {
                timeouts.keepalive
            }
        };
        self.shard.set_idle(self.key, true);
        let received = self
            .client
            .recv_later(&mut self.rb, Some(self.shard.io.now() + wait))
            .await;
        self.shard.set_idle(self.key, false);
        match received {
            Ok(n) if n > 0 => {
                self.first_byte = Some(self.shard.io.now());
                Step::Continue
            }
            _ => Step::Close,
        }
    }

    /// Receives until a whole head is buffered (within the header timeout counted from its first
    /// byte), then decides what to do with the request.
    async fn read_head<'s>(
        &mut self,
        snapshot: &'s Snapshot,
        outcome: &mut Outcome,
    ) -> Result<(Request, Decision<'s>), Step> {
        let deadline = outcome.started + snapshot.timeouts.header;
        loop {
            let parsed = {
                let mut scratch = self.shard.scratch();
                http1::parse_request(
                    self.rb.data(),
                    &mut self.scanner,
                    &snapshot.limits,
                    &mut scratch.fields,
                )
            };
            match parsed {
                Ok(Parsed::Complete(head)) => return Ok(self.decide(snapshot, &head, outcome)),
                Ok(Parsed::Partial) => {}
                Err(err) => {
                    return Err(self
                        .refuse_head(&Early::from_request_error(err), outcome)
                        .await);
                }
            }
            match self.client.recv(&mut self.rb, Some(deadline)).await {
                Ok(0) => return Err(Step::Close),
                Ok(_) => {}
                Err(err) => {
                    let early = match err.kind() {
                        io::ErrorKind::TimedOut => Early::HEAD_TIMEOUT,
                        io::ErrorKind::OutOfMemory => Early::NO_BUFFER,
                        _ => return Err(Step::Close),
                    };
                    return Err(self.refuse_head(&early, outcome).await);
                }
            }
        }
    }

    /// Answers a request whose head could not be read or parsed, and closes: what follows on
    /// the connection cannot be trusted.
    async fn refuse_head(&mut self, early: &Early, outcome: &mut Outcome) -> Step {
        self.shard.metrics.request();
        send_early(&self.shard, &mut self.client, early, true, false, outcome).await;
        Step::Close
    }

    /// Routes and admits a parsed request and, when it goes upstream, writes the forwarded head.
    /// Synchronous: the head's spans and the shard's scratch are valid only until the next await.
    fn decide<'s>(
        &self,
        snapshot: &'s Snapshot,
        head: &RequestHead,
        outcome: &mut Outcome,
    ) -> (Request, Decision<'s>) {
        let shard = &self.shard;
        shard.metrics.request();
        let request = Request {
            method: head.method,
            version: head.version,
            keep_alive: head.keep_alive,
            body: head.body,
            expect_continue: head.expect_continue,
            head_len: head.head_len,
            upgrade: None,
        };
        outcome.request = Some(request);
        // The client's own id is passed on; otherwise one is made here, for the forwarded
        // request and the log line alike.
        let client_id = head
            .request_id
            .map(|id| id.of(self.rb.data()))
            .filter(|id| is_safe_request_id(id));
        let mut request_id = [0u8; 32];
        if client_id.is_none() {
            forward::request_id(
                shard.request_id_seed,
                shard.next_request_number(),
                &mut request_id,
            );
        }
        if shard.log.enabled() {
            outcome.log.capture(
                self.rb.data(),
                head,
                &shard.scratch().fields,
                client_id.unwrap_or(&request_id),
            );
        }
        // A body left unread would be taken for the next request: close after answering early.
        let body_follows = !matches!(head.body, RequestBody::None | RequestBody::Length(0));
        let refuse = |early: Early| Decision::Early {
            early,
            close: body_follows || !head.keep_alive,
        };
        if head.method == Method::Connect {
            return (
                request,
                Decision::Early {
                    early: Early::CONNECT,
                    close: true,
                },
            );
        }

        let mut scratch = shard.scratch();
        let Scratch { fields, path } = &mut *scratch;
        // The scratch holds `max_headers` slots; past `field_count` lie an earlier request's
        // fields, whose spans mean nothing in this buffer.
        let fields = &fields[..head.field_count];
        let buf = self.rb.data();
        let raw_path = head.path.of(buf);
        let routed: &[u8] = match head.form {
            TargetForm::Asterisk => b"*",
            _ => match normalize_path(raw_path, path) {
                Ok(Normalized::Unchanged) => raw_path,
                Ok(Normalized::Rewritten) => path.as_slice(),
                Err(err) => {
                    let refusal = Early::new(400, err.as_str(), Reject::BadRequest);
                    return (
                        request,
                        Decision::Early {
                            early: refusal,
                            close: true,
                        },
                    );
                }
            },
        };
        let host = head.route_host().map_or(&b""[..], |host| host.of(buf));
        let mut params = Params::new();
        let (target, matched_prefix_len) =
            match snapshot
                .routes
                .lookup(host, head.method, routed, &mut params)
            {
                Lookup::Matched {
                    target,
                    matched_prefix_len,
                } => {
                    outcome.route = Some(target.stats);
                    (target, matched_prefix_len)
                }
                Lookup::NotFound => return (request, refuse(Early::NOT_FOUND)),
                Lookup::MethodNotAllowed { allow } => {
                    return (request, refuse(Early::method_not_allowed(allow)));
                }
            };
        if let (RequestBody::Length(length), Some(max)) = (head.body, target.max_body_bytes)
            && length > max
        {
            return (
                request,
                Decision::Early {
                    early: Early::BODY_TOO_LARGE,
                    close: true,
                },
            );
        }
        // admit: who the client is (when the route wants to know), then its rate limit.
        let mut token_cache: Option<std::cell::RefMut<'_, crate::auth::jwt::TokenCache>> = None;
        let owned_token;
        let mut identity: Option<&[u8]> = None;
        let mut token: Option<&VerifiedToken> = None;
        let policy = target
            .auth
            .and_then(|i| Some((i, snapshot.config.auth.get(i)?)));
        if let Some((index, policy)) = policy {
            let authorization = field_value(buf, fields, b"authorization");
            match &policy.method {
                AuthMethod::ApiKey(keys) => {
                    let presented = field_value(buf, fields, keys.header_name().as_bytes());
                    match keys.authenticate(presented, authorization) {
                        Ok(who) => identity = Some(who.as_bytes()),
                        Err(_) => {
                            let mut early = Early::UNAUTHORIZED_KEY;
                            early
                                .fields
                                .push_display("www-authenticate", keys.challenge());
                            return (request, refuse(early));
                        }
                    }
                }
                AuthMethod::Jwt { verifier, .. } => {
                    let now = unix_seconds();
                    let verified = match snapshot.token_caches.get(index).and_then(Option::as_ref) {
                        Some(cache) => verifier.authenticate_cached(
                            &mut **token_cache.insert(cache.borrow_mut()),
                            authorization,
                            now,
                        ),
                        // Without a cache, each request verifies its token.
                        None => match verifier.authenticate(authorization, now) {
                            Ok(verified) => {
                                owned_token = verified;
                                Ok(&owned_token)
                            }
                            Err(rejection) => Err(rejection),
                        },
                    };
                    match verified {
                        Ok(verified) => {
                            identity = Some(verified.identity.as_bytes());
                            token = Some(verified);
                        }
                        Err(rejection) => {
                            let reason = if rejection.status() == 403 {
                                Reject::Forbidden
                            } else {
                                Reject::Unauthorized
                            };
                            let mut early =
                                Early::new(rejection.status(), rejection.description(), reason);
                            early.fields.push_display(
                                "www-authenticate",
                                rejection.challenge(verifier.realm()),
                            );
                            return (request, refuse(early));
                        }
                    }
                }
            }
        }
        if let Some(limiter) = &target.limiter {
            let mut limiter = limiter.borrow_mut();
            let key = {
                let spec = limiter.key_spec();
                let header = spec
                    .header_name()
                    .and_then(|name| field_value(buf, fields, name.as_bytes()));
                spec.key_for(
                    self.client.peer_addr().ip().to_canonical(),
                    header,
                    identity,
                )
            };
            let now = shard
                .io
                .now()
                .saturating_duration_since(shard.limit_clock.origin)
                .as_nanos() as u64;
            let decision = limiter.check(key, now);
            if let Some(retry_after) = decision.retry_after() {
                let early = Early::RATE_LIMITED
                    .with_field("retry-after", retry_after.as_bytes())
                    .with_field("ratelimit-policy", limiter.policy_value().as_bytes())
                    .with_field("ratelimit", limiter.rate_limit_value(&decision).as_bytes());
                return (request, refuse(early));
            }
        }

        let (upstream, rewrite) = match &target.action {
            Action::Respond { .. } => return (request, Decision::Respond { target }),
            Action::Forward { upstream, rewrite } => (*upstream, rewrite),
        };
        let endpoint = snapshot.upstreams[upstream].0.pick().clone();
        let Some(mut head_buf) = shard.io.pool().take() else {
            return (
                request,
                Decision::Early {
                    early: Early::NO_BUFFER,
                    close: true,
                },
            );
        };
        // A protocol switch is relayed for requests without a body, never to h2c (RFC 9113
        // sec. 3.1 removed it; a proxy passing it on lets a client smuggle HTTP/2 past routing).
        let upgrade = head
            .upgrade
            .map(|protocol| protocol.of(buf))
            .filter(|protocol| {
                matches!(head.body, RequestBody::None | RequestBody::Length(0))
                    && !names_h2c(protocol)
            });
        let protocols = upgrade.and_then(Protocols::new);
        let upgrade = upgrade.filter(|_| protocols.is_some());
        let request = Request {
            upgrade: protocols,
            ..request
        };
        outcome.request = Some(request);
        let input = RequestHeadInput {
            path: routed,
            matched_prefix_len,
            rewrite,
            edits: &target.request_headers,
            client_ip: self.client.peer_addr().ip(),
            scheme: self.context.scheme(),
            client_trusted: snapshot
                .config
                .forwarding
                .trusts(self.client.peer_addr().ip()),
            endpoint: endpoint.addr(),
            request_id: client_id.unwrap_or(&request_id),
            replace_request_id: head.request_id.is_some() && client_id.is_none(),
            upgrade,
            identity: policy
                .and_then(|(_, policy)| policy.identity_header.as_deref())
                .zip(identity)
                .map(|(name, value)| (name.as_bytes(), value)),
            claims: token.map_or(&[], |token| &token.headers[..]),
        };
        match forward::write_request_head(head_buf.as_mut_slice(), buf, head, fields, &input) {
            Ok(head_len) => (
                request,
                Decision::Forward {
                    target,
                    upstream,
                    endpoint,
                    head: head_buf,
                    head_len,
                },
            ),
            Err(_) => (
                request,
                Decision::Early {
                    early: Early::HEAD_TOO_LARGE,
                    close: true,
                },
            ),
        }
    }

    /// Answers from the route itself.
    async fn respond_direct(
        &mut self,
        request: &Request,
        target: &RouteTarget,
        outcome: &mut Outcome,
    ) -> Step {
        let Action::Respond {
            status,
            body,
            headers,
        } = &target.action
        else {
            unreachable!("respond_direct is only called for Respond routes")
        };
        // Keep the connection only if the request's body (if any) is already here to skip.
        let body_consumed = match request.body {
            RequestBody::None => true,
            RequestBody::Length(length) if length <= self.rb.len() as u64 => {
                self.rb.consume(length as usize);
                true
            }
            _ => false,
        };
        let close = !request.keep_alive || !body_consumed || self.shard.draining();
        let built = respond::direct_response(
            &self.shard,
            *status,
            body,
            headers,
            &target.response_headers,
            request.method,
            close,
            request.version,
        );
        let Some((buf, len)) = built else {
            let early = Early::new(
                500,
                "configured response too large for a buffer",
                Reject::Unavailable,
            );
            send_early(&self.shard, &mut self.client, &early, true, false, outcome).await;
            return Step::Close;
        };
        let mut out = Outbound::new();
        out.push(buf, 0, len as u32);
        outcome.status = *status;
        let sent = self
            .client
            .send(
                &mut out,
                Some(self.shard.io.now() + self.shard.snapshot().timeouts.send),
            )
            .await;
        if sent.is_ok() {
            outcome.bytes = len as u64;
        }
        if sent.is_err() || close {
            Step::Close
        } else {
            Step::Continue
        }
    }

    /// Sends the request upstream, relays the response back.
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &mut self,
        snapshot: &Snapshot,
        request: &Request,
        target: &RouteTarget,
        upstream: usize,
        endpoint: Rc<EndpointPool>,
        head: Buf,
        head_len: usize,
        outcome: &mut Outcome,
    ) -> Step {
        let shard = self.shard.clone();
        outcome.endpoint = Some(endpoint.addr());
        let pool = shard.io.pool().clone();
        let timeouts = snapshot.timeouts;
        let upstream_timeouts: UpstreamTimeouts = snapshot.upstreams[upstream].1;
        let mut out = Outbound::new();
        out.push(head, 0, head_len as u32);

        // The body bytes already here travel with the head.
        let mut remaining = 0u64;
        let mut decoder = ChunkedDecoder::new();
        let body_complete = match request.body {
            RequestBody::None => true,
            RequestBody::Length(length) => {
                let at_hand = length.min(self.rb.len() as u64) as usize;
                if !out.take_from(&mut self.rb, at_hand, &pool) {
                    return self.fail(&Early::NO_BUFFER, true, request, outcome).await;
                }
                remaining = length - at_hand as u64;
                remaining == 0
            }
            RequestBody::Chunked => {
                let Some(mut frame) = pool.take() else {
                    return self.fail(&Early::NO_BUFFER, true, request, outcome).await;
                };
                match relay::rechunk(&mut decoder, &mut self.rb, frame.as_mut_slice(), true) {
                    Ok(step) => {
                        if target.max_body_bytes.is_some_and(|max| step.data > max) {
                            return self
                                .fail(&Early::BODY_TOO_LARGE, true, request, outcome)
                                .await;
                        }
                        if step.written > 0 {
                            out.push(frame, 0, step.written as u32);
                        }
                        step.stop == Stop::Done
                    }
                    Err(err) => {
                        let refusal = Early::new(400, chunk_error_text(err), Reject::BadRequest);
                        return self.fail(&refusal, true, request, outcome).await;
                    }
                }
            }
        };
        if request.expect_continue && !body_complete && self.rb.is_empty() {
            let Some(mut interim) = pool.take() else {
                return self.fail(&Early::NO_BUFFER, true, request, outcome).await;
            };
            interim.as_mut_slice()[..CONTINUE_100.len()].copy_from_slice(CONTINUE_100);
            let mut continue_out = Outbound::new();
            continue_out.push(interim, 0, CONTINUE_100.len() as u32);
            if self
                .client
                .send(&mut continue_out, Some(shard.io.now() + timeouts.send))
                .await
                .is_err()
            {
                return Step::Close;
            }
        }
        let retryable = request.method.is_idempotent() && body_complete;
        // A body that did not fully arrive cannot be skipped: the client connection ends with
        // this exchange unless the body is relayed completely.
        let mut body_relayed = body_complete;
        // The upstream answered (or closed) before it had the whole body.
        let mut answered_early = false;

        let mut attempt = 0;
        let (mut checkout, mut urb, plan) = loop {
            attempt += 1;
            let now = shard.io.now();
            let mut checkout = match endpoint.take_idle(now) {
                Some(checkout) => checkout,
                None => match endpoint
                    .connect(&shard.io, now + upstream_timeouts.connect)
                    .await
                {
                    Ok(checkout) => checkout,
                    Err(err) => {
                        let early = if err.kind() == io::ErrorKind::TimedOut {
                            Early::UPSTREAM_TIMEOUT
                        } else {
                            Early::UPSTREAM_REFUSED
                        };
                        return self.fail(&early, !body_relayed, request, outcome).await;
                    }
                },
            };
            let may_retry = retryable && checkout.reused() && attempt == 1;
            let attempt_started = now;
            if checkout
                .conn()
                .send(&mut out, Some(now + upstream_timeouts.body))
                .await
                .is_err()
            {
                if may_retry {
                    shard.metrics.upstream_retry();
                    continue;
                }
                return self
                    .fail(&Early::UPSTREAM_FAILED, !body_relayed, request, outcome)
                    .await;
            }
            // Keep the sent head and body only while a retry may still need them.
            if !may_retry {
                out.clear();
            }
            if !body_relayed {
                out.clear();
                let pace = Pace {
                    read: timeouts.body,
                    write: upstream_timeouts.body,
                };
                let mut ends = Ends {
                    from: &mut self.client,
                    from_rb: &mut self.rb,
                    to: checkout.conn(),
                    out: &mut out,
                    pool: &pool,
                    io: &shard.io,
                    pace,
                    sent: 0,
                    watch_sink: true,
                    sink_spoke: false,
                };
                let relayed = match request.body {
                    RequestBody::Length(_) => relay::by_length(&mut ends, remaining).await,
                    RequestBody::Chunked => {
                        let limit = target.max_body_bytes;
                        relay::chunked(&mut ends, &mut decoder, limit, true)
                            .await
                            .map(|_| ())
                    }
                    RequestBody::None => Ok(()),
                };
                answered_early = ends.sink_spoke;
                if let Err(err) = relayed {
                    let early = match err {
                        RelayError::Source(err) if err.kind() == io::ErrorKind::TimedOut => {
                            Early::BODY_TIMEOUT
                        }
                        RelayError::Source(_) | RelayError::SourceClosed => return Step::Close,
                        RelayError::Sink(_) => Early::UPSTREAM_FAILED,
                        RelayError::Framing(err) => {
                            Early::new(400, chunk_error_text(err), Reject::BadRequest)
                        }
                        RelayError::TooLarge => Early::BODY_TOO_LARGE,
                        RelayError::NoBuffer => Early::NO_BUFFER,
                    };
                    return self.fail(&early, true, request, outcome).await;
                }
                body_relayed = true;
            }
            let mut urb = ReadBuf::new();
            let deadline = shard.io.now() + upstream_timeouts.response;
            match self
                .read_response(&mut checkout, &mut urb, request, target, snapshot, deadline)
                .await
            {
                Ok(plan) => {
                    outcome.upstream_time =
                        Some(shard.io.now().saturating_duration_since(attempt_started));
                    break (checkout, urb, plan);
                }
                Err(ResponseFailure::ClosedEarly) if may_retry => {
                    shard.metrics.upstream_retry();
                    continue;
                }
                Err(failure) => {
                    let early = match failure {
                        ResponseFailure::Timeout => Early::UPSTREAM_TIMEOUT,
                        ResponseFailure::ClosedEarly => Early::UPSTREAM_FAILED,
                        ResponseFailure::Invalid => Early::UPSTREAM_INVALID,
                        ResponseFailure::HeadTooLarge => Early::RESPONSE_TOO_LARGE,
                        ResponseFailure::NoBuffer => Early::NO_BUFFER,
                    };
                    return self.fail(&early, false, request, outcome).await;
                }
            }
        };
        out.clear();

        if plan.switching {
            return self
                .tunnel(&mut checkout, &mut urb, plan, &timeouts, outcome)
                .await;
        }

        // Relay the response: its head and the body bytes at hand in one write, then the rest.
        out.push(plan.head, 0, plan.head_len as u32);
        let pace = Pace {
            read: upstream_timeouts.body,
            write: timeouts.send,
        };
        let mut ends = Ends {
            from: checkout.conn(),
            from_rb: &mut urb,
            to: &mut self.client,
            out: &mut out,
            pool: &pool,
            io: &shard.io,
            pace,
            sent: 0,
            watch_sink: false,
            sink_spoke: false,
        };
        outcome.status = plan.status;
        let relayed = match (plan.body, plan.framing) {
            (_, ClientFraming::None) | (ResponseBody::None, _) => {
                relay::by_length(&mut ends, 0).await
            }
            (ResponseBody::Length(length), _) => relay::by_length(&mut ends, length).await,
            (ResponseBody::Chunked, framing) => {
                let reframe = framing == ClientFraming::Chunked;
                relay::chunked(&mut ends, &mut ChunkedDecoder::new(), None, reframe)
                    .await
                    .map(|_| ())
            }
            (ResponseBody::CloseDelimited, framing) => {
                relay::until_close(&mut ends, framing == ClientFraming::Chunked).await
            }
        };
        outcome.bytes = ends.sent;
        match relayed {
            Ok(()) => {
                // An upstream that answered before it had the whole body may take the rest for
                // another request: its connection is not reused (RFC 9112 sec. 9.3).
                let reusable = plan.upstream_keep_alive
                    && urb.is_empty()
                    && plan.body != ResponseBody::CloseDelimited
                    && !answered_early;
                if reusable {
                    endpoint.give_back(checkout, shard.io.now());
                }
                if plan.close {
                    Step::Close
                } else {
                    Step::Continue
                }
            }
            // The client left, or the upstream failed mid-body: the client connection closes
            // so a truncated body is never mistaken for a complete one.
            Err(_) => Step::Close,
        }
    }

    /// After a `101`: sends the client the switch (with whatever the upstream already sent of
    /// the new protocol), the upstream whatever the client sent behind its request, then joins
    /// the two connections until both finish or they idle out. Neither connection carries HTTP
    /// again.
    async fn tunnel(
        &mut self,
        checkout: &mut Checkout,
        urb: &mut ReadBuf,
        plan: ResponsePlan,
        timeouts: &Timeouts,
        outcome: &mut Outcome,
    ) -> Step {
        let shard = self.shard.clone();
        let pool = shard.io.pool().clone();
        outcome.status = plan.status;
        let mut out = Outbound::new();
        out.push(plan.head, 0, plan.head_len as u32);
        if !urb.is_empty() && !out.take_from(urb, urb.len(), &pool) {
            return Step::Close;
        }
        let sent_head = out.len_bytes() as u64;
        if self
            .client
            .send(&mut out, Some(shard.io.now() + timeouts.send))
            .await
            .is_err()
        {
            return Step::Close;
        }
        outcome.bytes = sent_head;
        out.clear();
        if !self.rb.is_empty() {
            let early = self.rb.len();
            if !out.take_from(&mut self.rb, early, &pool) {
                return Step::Close;
            }
            let sent = checkout
                .conn()
                .send(&mut out, Some(shard.io.now() + timeouts.send))
                .await;
            out.clear();
            if sent.is_err() {
                return Step::Close;
            }
        }
        // The exchange's latency is the switch itself; the tunnel's life is not a response time.
        outcome.finished = Some(shard.io.now());
        let (carried, _ended) =
            crate::io::tunnel::join(&mut self.client, checkout.conn(), timeouts.tunnel_idle).await;
        outcome.bytes += carried.backward;
        Step::Close
    }

    /// Answers an early exit after routing; `close` also when the request body was not read.
    async fn fail(
        &mut self,
        early: &Early,
        body_unread: bool,
        request: &Request,
        outcome: &mut Outcome,
    ) -> Step {
        let close = body_unread || !request.keep_alive || self.shard.draining();
        send_early(
            &self.shard,
            &mut self.client,
            early,
            close,
            request.method == Method::Head,
            outcome,
        )
        .await;
        if close { Step::Close } else { Step::Continue }
    }

    /// Receives and parses the upstream's response head and writes the client's head.
    async fn read_response(
        &self,
        checkout: &mut Checkout,
        urb: &mut ReadBuf,
        request: &Request,
        target: &RouteTarget,
        snapshot: &Snapshot,
        deadline: Instant,
    ) -> Result<ResponsePlan, ResponseFailure> {
        let mut scanner = HeadScanner::new();
        loop {
            if !urb.is_empty() {
                let planned = {
                    let mut scratch = self.shard.scratch();
                    let parsed = http1::parse_response(
                        urb.data(),
                        &mut scanner,
                        &snapshot.limits,
                        &mut scratch.fields,
                        request.method,
                    );
                    match parsed {
                        Ok(Parsed::Complete(head)) if head.is_interim() => Some(Err(head.head_len)),
                        Ok(Parsed::Complete(head)) => Some(Ok(self.plan_response(
                            &head,
                            &scratch.fields,
                            urb.data(),
                            request,
                            target,
                        )?)),
                        Ok(Parsed::Partial) => None,
                        Err(_) => return Err(ResponseFailure::Invalid),
                    }
                };
                match planned {
                    // 1xx other than 101: coregate answered `Expect` itself; drop and read on.
                    Some(Err(interim_len)) => {
                        urb.consume(interim_len);
                        continue;
                    }
                    Some(Ok((plan, head_len))) => {
                        urb.consume(head_len);
                        return Ok(plan);
                    }
                    None => {}
                }
            }
            // Nothing of the answer can be there yet the first time: wait for readiness first.
            let received = if urb.is_empty() {
                checkout.conn().recv_later(urb, Some(deadline)).await
            } else {
                checkout.conn().recv(urb, Some(deadline)).await
            };
            match received {
                Ok(0) if urb.is_empty() => return Err(ResponseFailure::ClosedEarly),
                Ok(0) => return Err(ResponseFailure::Invalid),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                    return Err(ResponseFailure::Timeout);
                }
                Err(err) if err.kind() == io::ErrorKind::OutOfMemory => {
                    return Err(ResponseFailure::NoBuffer);
                }
                Err(_) if urb.is_empty() => return Err(ResponseFailure::ClosedEarly),
                Err(_) => return Err(ResponseFailure::Invalid),
            }
        }
    }

    /// Chooses the client's framing and writes the client's response head.
    fn plan_response(
        &self,
        head: &http1::ResponseHead,
        fields: &[http1::Field],
        buf: &[u8],
        request: &Request,
        target: &RouteTarget,
    ) -> Result<(ResponsePlan, usize), ResponseFailure> {
        // A switch nobody asked for (or to a protocol nobody named) is a broken upstream.
        let switching_to = match (head.status, head.upgrade, &request.upgrade) {
            (101, Some(chosen), Some(offered)) if offered.offers(chosen.of(buf)) => {
                Some(chosen.of(buf))
            }
            (101, _, _) => return Err(ResponseFailure::Invalid),
            _ => None,
        };
        let framing = ClientFraming::for_response(head.body, request.version);
        let close =
            !request.keep_alive || framing == ClientFraming::UntilClose || self.shard.draining();
        let mut buf_out = self
            .shard
            .io
            .pool()
            .take()
            .ok_or(ResponseFailure::NoBuffer)?;
        let input = ResponseHeadInput {
            framing,
            switching_to,
            close,
            client_version: request.version,
            edits: &target.response_headers,
        };
        let head_len =
            forward::write_response_head(buf_out.as_mut_slice(), buf, head, fields, &input)
                .map_err(|_| ResponseFailure::HeadTooLarge)?;
        Ok((
            ResponsePlan {
                status: head.status,
                switching: switching_to.is_some(),
                body: head.body,
                framing,
                upstream_keep_alive: head.keep_alive,
                close,
                head: buf_out,
                head_len,
            },
            head.head_len,
        ))
    }
}

fn chunk_error_text(err: http1::ChunkError) -> &'static str {
    match err {
        http1::ChunkError::InvalidSize => "invalid chunk size",
        http1::ChunkError::SizeOverflow => "chunk size too large",
        http1::ChunkError::InvalidExtension => "invalid chunk extension",
        http1::ChunkError::LineTooLong => "chunk size line too long",
        http1::ChunkError::MissingCrlf => "chunk data not followed by CRLF",
        http1::ChunkError::InvalidTrailer => "invalid trailer field",
        _ => "invalid chunked body",
    }
}

/// The value of the first field named `name` (lowercase) in a parsed head.
fn field_value<'b>(buf: &'b [u8], fields: &[http1::Field], name: &[u8]) -> Option<&'b [u8]> {
    fields
        .iter()
        .find(|field| field.name.of(buf).eq_ignore_ascii_case(name))
        .map(|field| field.value.of(buf))
}

/// The longest client `X-Request-Id` passed on.
const MAX_REQUEST_ID_BYTES: usize = 128;

/// Whether a client's `X-Request-Id` may be passed on (and logged) as it is: 1 to 128 letters,
/// digits and `-._:/+=` (UUIDs, trace ids, base64). Anything else is replaced by an id coregate
/// makes, so an id can never carry spaces, quotes or bytes that would forge a log field.
fn is_safe_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&id.len())
        && id
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._:/+=".contains(&b))
}

/// Wall-clock seconds since the Unix epoch, for token expiry.
fn unix_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

/// Whether an `Upgrade` value lists `h2c` among its protocols.
fn names_h2c(protocols: &[u8]) -> bool {
    protocols.split(|&b| b == b',').any(|protocol| {
        let name = protocol.trim_ascii();
        let name = name.split(|&b| b == b'/').next().unwrap_or(name);
        name.eq_ignore_ascii_case(b"h2c")
    })
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use crate::context::ConnContext;
    use crate::io::Conn;
    use crate::shard::Shard;

    fn future_size<F, Fut>(_: F) -> usize
    where
        F: Fn(Rc<Shard>, Conn, ConnContext) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// The connection task is what an idle keep-alive connection costs (with its pending receive
    /// and the executor's task header); an exchange in progress lives in a pooled frame instead.
    #[test]
    fn an_idle_connection_task_stays_small() {
        // 336 bytes at the time of writing: the session (144) and a pending receive (176).
        let size = future_size(super::serve);
        assert!(size <= 384, "the connection task's future is {size} bytes");
    }
}
