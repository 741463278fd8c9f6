//! `forward`: sends the request upstream and waits for the response head. Takes a pooled
//! connection to the picked endpoint (or connects), sends the head and the body bytes at hand
//! in one write, streams the rest of the body, and reads the response head.
//!
//! Every attempt ends in one place ([`Session::forward`]), which
//! 1. tells the upstream group how it went (`Observed`: passive outlier detection; an
//!    ejection this shard makes is reported to the control plane, which tells every shard);
//! 2. classifies a failure ([`Failed`]) from its [`Error`] (side, kind, whether the upstream
//!    cannot have processed the request) and the stage it failed at;
//! 3. asks the one retry rule, [`retry::next`] (`upstream/retry.rs`), whether and where to
//!    try again: the same endpoint on a fresh connection (a stale pooled one), or another
//!    endpoint of the upstream, within the route's retries, its deadline and the upstream's
//!    retry budget.
//!
//! The request's bytes are kept for another attempt only while one may follow after they were
//! sent (an idempotent method, or one the route allows, whose whole body is at hand); otherwise
//! they are freed as soon as they are sent.

use std::time::{Duration, Instant};

use crate::error::{Error, ErrorKind, Side};
use crate::http1::{CONTINUE_100, ChunkedDecoder, RequestBody};
use crate::io::{Buf, Outbound, ReadBuf};
use crate::snapshot::{RouteTarget, Snapshot};
use crate::upstream::load::{Connecting, Retrying};
use crate::upstream::retry::{self, Attempts, Failed, Next};
use crate::upstream::{Checkout, Choice, Endpoint, InFlight, Observed, Tried, UpstreamGroup};

use super::decoded::Decoded;
use super::head::{self, WrittenHead};
use super::pick::OVERFLOW;
use super::record::Outcome;
use super::relay::{self, Ends, Pace, RelayError, Stop};
use super::respond::{BodyState, Refusal};
use super::response::{ResponsePlan, no_buffer};
use super::upgrade::Protocols;
use super::{Request, Session, Step};

/// What the synchronous phases decided for a request that goes upstream.
pub struct Forwarding<'s> {
    pub target: &'s RouteTarget,
    pub upstream: &'s UpstreamGroup,
    /// The endpoint picked, and the request's key (a retry picks again from it).
    pub choice: Choice,
    /// The head written for the upstream.
    pub head: Buf,
    pub written: WrittenHead,
    /// The protocols of an upgrade coregate relays.
    pub upgrade: Option<Protocols>,
}

/// What the upstream is asked.
pub struct Asked<'a> {
    pub request: &'a Request,
    pub upgrade: Option<&'a Protocols>,
    pub target: &'a RouteTarget,
    pub upstream: &'a UpstreamGroup,
    /// The request can be sent again as it was: an idempotent method (or one the route's retry
    /// policy allows), the whole body at hand.
    pub replayable: bool,
    /// Keep the sent bytes for an attempt after a send (a reset, a timeout or a listed status
    /// may be retried).
    pub keep_sent: bool,
    /// No attempt waits for a response head past this (the policy's overall deadline).
    pub deadline: Option<Instant>,
}

/// A request the upstream answered: what the relay of the response needs.
pub struct Exchange {
    pub checkout: Checkout,
    /// Bytes of the response received after its head.
    pub urb: ReadBuf,
    pub plan: ResponsePlan,
    /// The upstream answered (or closed) before it had the whole request body: its connection
    /// may take the rest for another request, so it is not reused (RFC 9112 sec. 9.3).
    pub answered_early: bool,
    /// How long the response body may pause (the upstream's body timeout).
    pub body_timeout: Duration,
    /// The request counted in flight to its endpoint (least_request reads it) until the
    /// exchange ends.
    pub in_flight: InFlight,
    /// The connection counted against the upstream's `max_connections` while busy.
    pub busy: Connecting,
}

/// A failed attempt: the error, whether the client's body is still on its connection, and how
/// the retry rule sees it.
struct Failure {
    error: Error,
    body: BodyState,
    failed: Failed,
    /// Answer this instead of what the error maps to (a breaker that refused).
    refusal: Option<Refusal<'static>>,
}

/// The request body as it stands once the head is queued.
struct Body {
    /// Bytes of a `Content-Length` body still to come.
    remaining: u64,
    decoder: ChunkedDecoder,
    /// Data bytes of a chunked body queued behind the head (the route's `max_body_bytes`
    /// counts them with what streams after).
    data_queued: u64,
    /// Consumed: the whole body is queued behind the head.
    state: BodyState,
}

/// Where a request stands between attempts.
struct Tries {
    index: usize,
    tried: Tried,
    attempts: Attempts,
    /// The next attempt replaces a stale pooled connection: it opens a new one, since the
    /// pool's other connections to the endpoint may have been closed with it.
    fresh_connection: bool,
    /// The retry in flight, counted against the upstream's budget until the request ends.
    retrying: Option<Retrying>,
}

/// Where one attempt goes.
struct Destination<'e> {
    endpoint: &'e Endpoint,
    /// Connect anew even if the endpoint's pool holds an idle connection.
    fresh_connection: bool,
}

/// What an attempt's outcome says of its endpoint, for outlier detection.
fn observed(attempted: &Result<Exchange, Failure>) -> Option<Observed> {
    match attempted {
        Ok(exchange) if exchange.plan.status >= 500 => Some(Observed::ServerError),
        Ok(_) => Some(Observed::Success),
        // A breaker that refused says nothing about the endpoint.
        Err(failure) if failure.refusal.is_some() => None,
        Err(failure) => match failure.failed {
            Failed::Connect | Failed::Reset | Failed::Timeout => Some(Observed::GatewayFailure),
            Failed::Other if failure.error.side == Side::Upstream => Some(Observed::GatewayFailure),
            _ => None,
        },
    }
}

impl Session {
    /// Sends the request and returns once the upstream's response head arrived; on failure the
    /// client is answered (502, 503, 504, ...) and the step after that is returned.
    pub(super) async fn forward(
        &mut self,
        snapshot: &Snapshot,
        request: &Request,
        forwarding: Forwarding<'_>,
        outcome: &mut Outcome,
    ) -> Result<Exchange, Step> {
        let Forwarding {
            target,
            upstream,
            choice,
            head,
            written,
            upgrade,
        } = forwarding;
        let mut out = Outbound::new();
        out.push(head, 0, written.len as u32);
        let mut body = match self.queue_body_at_hand(request, target, &mut out) {
            Ok(body) => body,
            Err(refusal) => {
                return Err(self
                    .refuse(&refusal, Some(request), BodyState::Unread, outcome)
                    .await);
            }
        };
        if request.expect_continue
            && body.state == BodyState::Unread
            && self.rb.is_empty()
            && self.send_continue(snapshot).await.is_err()
        {
            return Err(Step::Close);
        }
        if let Err(error) = self
            .buffer_body(snapshot, request, target, written, &mut out, &mut body)
            .await
        {
            let failure = Failure {
                error,
                body: BodyState::Unread,
                failed: Failed::Other,
                refusal: None,
            };
            return Err(self.fail(failure, request, outcome).await);
        }
        let policy = &target.retry;
        let replayable = (request.method.is_idempotent() || policy.non_idempotent)
            && body.state == BodyState::Consumed;
        let asked = Asked {
            request,
            upgrade: upgrade.as_ref(),
            target,
            upstream,
            replayable,
            keep_sent: policy.retries > 0 && policy.on.after_send(),
            deadline: policy.deadline.map(|d| self.shard.io.now() + d),
        };
        let mut tries = Tries {
            index: choice.index,
            tried: Tried::default(),
            attempts: Attempts {
                retries: 0,
                replaced_stale: false,
                resendable: replayable,
                out_of_time: false,
            },
            fresh_connection: false,
            retrying: None,
        };
        loop {
            if !tries.tried.contains(tries.index) {
                tries.tried.add(tries.index);
            }
            let to = Destination {
                endpoint: upstream.endpoint(tries.index),
                fresh_connection: std::mem::take(&mut tries.fresh_connection),
            };
            outcome.endpoint = Some(to.endpoint.addr());
            let attempted = self
                .attempt(snapshot, &asked, to, &mut out, &mut body, outcome)
                .await;
            if let Some(observed) = observed(&attempted) {
                self.observe(upstream, tries.index, observed);
            }
            let failure = match attempted {
                Ok(exchange) => {
                    let status = exchange.plan.status;
                    if !policy.on.retries_status(status) {
                        return Ok(exchange);
                    }
                    // A listed status: retried when the rule allows, else relayed as it is.
                    match self.retry(&asked, &choice, &mut tries, Failed::Status(status)) {
                        true => continue,
                        false => return Ok(exchange),
                    }
                }
                Err(failure) => failure,
            };
            if failure.refusal.is_none() && self.retry(&asked, &choice, &mut tries, failure.failed)
            {
                let wait = retry::backoff(policy, tries.attempts.retries, upstream.rng().next());
                if !wait.is_zero() {
                    self.shard.io.sleep(wait).await;
                }
                continue;
            }
            return Err(self.fail(failure, request, outcome).await);
        }
    }

    /// Decides whether the request is tried again after `failed`, and where (updating
    /// `tries`); counts the retry.
    fn retry(&self, asked: &Asked<'_>, choice: &Choice, tries: &mut Tries, failed: Failed) -> bool {
        let upstream = asked.upstream;
        let now = self.shard.io.now();
        tries.attempts.out_of_time = asked.deadline.is_some_and(|deadline| now >= deadline);
        match retry::next(&asked.target.retry, failed, &tries.attempts) {
            Next::Stop => return false,
            Next::SameEndpoint => {
                tries.attempts.replaced_stale = true;
                tries.fresh_connection = true;
            }
            Next::OtherEndpoint => {
                let Some(index) = upstream.pick_again(choice, &tries.tried, now) else {
                    return false;
                };
                // A request that was sent is retried within the upstream's budget; one whose
                // connect failed cost no upstream anything.
                if failed != Failed::Connect {
                    let settings = &upstream.settings;
                    match upstream
                        .load()
                        .retry(&settings.breakers, &settings.retry_budget)
                    {
                        Ok(retrying) => tries.retrying = Some(retrying),
                        Err(_) => return false,
                    }
                } else {
                    upstream.load().counted_retry();
                }
                tries.attempts.retries += 1;
                tries.index = index;
            }
        }
        self.shard.metrics.upstream_retry(failed.label());
        true
    }

    /// Counts an attempt's outcome with endpoint `index`; an ejection it causes is reported.
    fn observe(&self, upstream: &UpstreamGroup, index: usize, observed: Observed) {
        let now = self.shard.io.now();
        if let Some(trip) = upstream.observe(index, observed, now) {
            self.shard.report_ejection(upstream, index, trip);
        }
    }

    /// Queues the body bytes that arrived with the head behind it; refuses a chunked body
    /// that is malformed or already over the route's limit.
    fn queue_body_at_hand(
        &mut self,
        request: &Request,
        target: &RouteTarget,
        out: &mut Outbound,
    ) -> Result<Body, Refusal<'static>> {
        let pool = self.shard.io.pool();
        let mut body = Body {
            remaining: 0,
            decoder: ChunkedDecoder::new(),
            data_queued: 0,
            state: BodyState::Consumed,
        };
        match request.body {
            RequestBody::None => {}
            RequestBody::Length(length) => {
                let at_hand = length.min(self.rb.len() as u64) as usize;
                if !out.take_from(&mut self.rb, at_hand, pool) {
                    return Err(Refusal::NO_BUFFER);
                }
                body.remaining = length - at_hand as u64;
            }
            // Left for `buffer_chunked_body`.
            RequestBody::Chunked if buffers_chunked(target) => {
                body.state = BodyState::Unread;
            }
            RequestBody::Chunked => {
                let mut frame = pool.take().ok_or(Refusal::NO_BUFFER)?;
                let step =
                    relay::rechunk(&mut body.decoder, &mut self.rb, frame.as_mut_slice(), true)
                        .map_err(|err| Refusal::bad_request(err.reason()))?;
                if target.max_body_bytes.is_some_and(|max| step.data > max) {
                    return Err(Refusal::BODY_TOO_LARGE);
                }
                if step.written > 0 {
                    out.push(frame, 0, step.written as u32);
                }
                body.data_queued = step.data;
                if step.stop != Stop::Done {
                    body.state = BodyState::Unread;
                }
            }
        }
        if body.remaining > 0 {
            body.state = BodyState::Unread;
        }
        Ok(body)
    }

    /// Receives the rest of a `Content-Length` body no larger than the route's
    /// `request_buffering` behind the queued head, so that head and body leave in one write (an
    /// upstream then reads the request at once rather than piece by piece at the client's
    /// pace, and the request can be retried whole). Stops early, leaving the rest to be
    /// streamed, when no part or buffer is left for the next piece. A chunked body is
    /// [buffer_chunked_body](Self::buffer_chunked_body)'s.
    async fn buffer_body(
        &mut self,
        snapshot: &Snapshot,
        request: &Request,
        target: &RouteTarget,
        written: WrittenHead,
        out: &mut Outbound,
        body: &mut Body,
    ) -> Result<(), Error> {
        let length = match request.body {
            RequestBody::None => return Ok(()),
            RequestBody::Chunked if !buffers_chunked(target) => return Ok(()),
            RequestBody::Chunked => {
                return self
                    .buffer_chunked_body(snapshot, target, written, out, body)
                    .await
                    .map_err(body_error);
            }
            RequestBody::Length(length) => length,
        };
        if body.remaining == 0 || length > target.request_buffering {
            return Ok(());
        }
        let pool = self.shard.io.pool().clone();
        while body.remaining > 0 && !out.is_full() {
            let deadline = self.shard.io.now() + snapshot.timeouts.body;
            relay::receive_more(&mut self.client, &mut self.rb, deadline)
                .await
                .map_err(body_error)?;
            let take = body.remaining.min(self.rb.len() as u64) as usize;
            if !out.pack_from(&mut self.rb, take, &pool) {
                break;
            }
            body.remaining -= take as u64;
        }
        if body.remaining == 0 {
            body.state = BodyState::Consumed;
        }
        Ok(())
    }

    /// Receives a chunked body whole when its data ends within the route's
    /// `request_buffering`, and then declares it by its length: the head's framing line
    /// becomes `content-length` and the decoded data leaves behind it in one write, as behind
    /// NGINX (which upstreams that take no chunked request bodies rely on). Chunk extensions
    /// and trailers are dropped, as when streaming. A body that turns out larger, or has no
    /// buffer or part left for its next piece, goes on as chunks: what was decoded is framed
    /// as chunks and the rest streams.
    async fn buffer_chunked_body(
        &mut self,
        snapshot: &Snapshot,
        target: &RouteTarget,
        written: WrittenHead,
        out: &mut Outbound,
        body: &mut Body,
    ) -> Result<(), RelayError> {
        let pool = self.shard.io.pool().clone();
        let mut decoded = Decoded::default();
        while body.data_queued <= target.request_buffering {
            let Some(room) = decoded.room(&pool) else {
                break;
            };
            let step = relay::rechunk(&mut body.decoder, &mut self.rb, room, false)
                .map_err(RelayError::Framing)?;
            decoded.filled(step.written);
            body.data_queued += step.data;
            let data = body.data_queued;
            if target.max_body_bytes.is_some_and(|max| data > max) {
                return Err(RelayError::TooLarge);
            }
            match step.stop {
                Stop::Done => {
                    out.rewrite_first(|head, len| {
                        head::reframe_as_length(head, WrittenHead { len, ..written }, data)
                    });
                    if !decoded.queue_plain(out) {
                        return Err(RelayError::NoBuffer);
                    }
                    body.state = BodyState::Consumed;
                    return Ok(());
                }
                Stop::OutputFull => {}
                Stop::NeedInput => {
                    let deadline = self.shard.io.now() + snapshot.timeouts.body;
                    relay::receive_more(&mut self.client, &mut self.rb, deadline).await?;
                }
            }
        }
        if !decoded.queue_as_chunks(out) {
            return Err(RelayError::NoBuffer);
        }
        Ok(())
    }

    /// Tells a client waiting for `100 Continue` to send its body.
    async fn send_continue(&mut self, snapshot: &Snapshot) -> Result<(), ()> {
        let mut interim = self.shard.io.pool().take().ok_or(())?;
        interim.as_mut_slice()[..CONTINUE_100.len()].copy_from_slice(CONTINUE_100);
        let mut out = Outbound::new();
        out.push(interim, 0, CONTINUE_100.len() as u32);
        let deadline = self.shard.io.now() + snapshot.timeouts.send;
        self.client
            .send(&mut out, Some(deadline))
            .await
            .map_err(|_| ())
    }

    /// One attempt: a connection, the queued head and body, the rest of the body, the response
    /// head.
    async fn attempt(
        &mut self,
        snapshot: &Snapshot,
        asked: &Asked<'_>,
        to: Destination<'_>,
        out: &mut Outbound,
        body: &mut Body,
        outcome: &mut Outcome,
    ) -> Result<Exchange, Failure> {
        let endpoint = to.endpoint;
        let shard = self.shard.clone();
        let upstream = asked.upstream;
        let timeouts = upstream.timeouts;
        let unread = body.state;
        let fail = |error: Error, failed: Failed| Failure {
            error,
            body: unread,
            failed,
            refusal: None,
        };
        let started = shard.io.now();
        let in_flight = endpoint.start(upstream.load());
        let (mut checkout, busy) = self.connection(asked, &to, started, unread).await?;
        let sent = checkout
            .conn()
            .send(out, Some(started + timeouts.body))
            .await;
        if sent.is_err() {
            // On a pooled connection: one the upstream dropped while it idled.
            return Err(if checkout.reused() {
                fail(UPSTREAM_CLOSED.retryable(), Failed::Stale)
            } else {
                fail(UPSTREAM_CLOSED, Failed::Reset)
            });
        }
        // What was sent is kept only while it may be sent again (see `retry::next`).
        if !(asked.replayable && (checkout.reused() || asked.keep_sent)) {
            out.clear();
        }
        let mut answered_early = false;
        if body.state == BodyState::Unread {
            out.clear();
            answered_early = self
                .relay_body(snapshot, asked, &mut checkout, out, body)
                .await
                .map_err(|error| fail(error, Failed::Reset))?;
            body.state = BodyState::Consumed;
        }
        let mut urb = ReadBuf::new();
        let now = shard.io.now();
        let mut deadline = earliest(now + timeouts.response, asked.deadline);
        if let Some(per_try) = asked.target.retry.per_try_timeout {
            deadline = deadline.min(now + per_try);
        }
        let reused = checkout.reused();
        let plan = self
            .read_response(&mut checkout, &mut urb, asked, snapshot, deadline)
            .await
            .map_err(|error| {
                let failed = match error.kind {
                    _ if error.side != Side::Upstream => Failed::Other,
                    ErrorKind::Closed if reused && error.retryable => Failed::Stale,
                    ErrorKind::Closed | ErrorKind::Io => Failed::Reset,
                    ErrorKind::Timeout => Failed::Timeout,
                    _ => Failed::Other,
                };
                Failure {
                    error,
                    body: BodyState::Consumed,
                    failed,
                    refusal: None,
                }
            })?;
        outcome.upstream_time = Some(shard.io.now().saturating_duration_since(started));
        Ok(Exchange {
            checkout,
            urb,
            plan,
            answered_early,
            body_timeout: timeouts.body,
            in_flight,
            busy,
        })
    }

    /// A connection to the attempt's endpoint, counted as busy: a pooled one unless the
    /// attempt needs a fresh one, else a new connection within the upstream's breakers.
    /// `unread`: where the request body stands, for the failure.
    async fn connection(
        &self,
        asked: &Asked<'_>,
        to: &Destination<'_>,
        started: Instant,
        unread: BodyState,
    ) -> Result<(Checkout, Connecting), Failure> {
        let fail = |error: Error, failed: Failed, refusal| Failure {
            error,
            body: unread,
            failed,
            refusal,
        };
        let upstream = asked.upstream;
        let load = upstream.load();
        let pooled = match to.fresh_connection {
            true => None,
            false => to.endpoint.pool().take_idle(started),
        };
        if let Some(checkout) = pooled {
            return Ok((checkout, load.busy_connection()));
        }
        let mut connecting = load
            .connecting(&upstream.settings.breakers)
            .map_err(|_| fail(OVERFLOWED, Failed::Other, Some(OVERFLOW)))?;
        let deadline = earliest(started + upstream.timeouts.connect, asked.deadline);
        let checkout = to
            .endpoint
            .pool()
            .connect(&self.shard.io, deadline)
            .await
            .map_err(|err| fail(connect_error(&err), Failed::Connect, None))?;
        connecting.connected();
        Ok((checkout, connecting))
    }

    /// Streams the rest of the request body upstream; returns whether the upstream spoke
    /// before the body was complete.
    async fn relay_body(
        &mut self,
        snapshot: &Snapshot,
        asked: &Asked<'_>,
        checkout: &mut Checkout,
        out: &mut Outbound,
        body: &mut Body,
    ) -> Result<bool, Error> {
        let shard = self.shard.clone();
        let pool = shard.io.pool().clone();
        let mut ends = Ends {
            from: &mut self.client,
            from_rb: &mut self.rb,
            to: checkout.conn(),
            out,
            pool: &pool,
            io: &shard.io,
            pace: Pace {
                read: snapshot.timeouts.body,
                write: asked.upstream.timeouts.body,
            },
            sent: 0,
            watch_sink: true,
            sink_spoke: false,
        };
        let relayed = match asked.request.body {
            RequestBody::Length(_) => relay::by_length(&mut ends, body.remaining).await,
            RequestBody::Chunked => {
                let limit = asked
                    .target
                    .max_body_bytes
                    .map(|max| max.saturating_sub(body.data_queued));
                relay::chunked(&mut ends, &mut body.decoder, limit, true)
                    .await
                    .map(|_| ())
            }
            RequestBody::None => Ok(()),
        };
        let spoke = ends.sink_spoke;
        relayed.map(|()| spoke).map_err(body_error)
    }

    /// Answers a failed exchange (or just closes, when the client is gone).
    async fn fail(&mut self, failure: Failure, request: &Request, outcome: &mut Outcome) -> Step {
        match failure
            .refusal
            .or_else(|| Refusal::of_error(&failure.error))
        {
            Some(refusal) => {
                self.refuse(&refusal, Some(request), failure.body, outcome)
                    .await
            }
            None => Step::Close,
        }
    }
}

/// Whether a chunked body to `target` is received whole first (`buffer_chunked_body`) rather
/// than streamed from what arrived with its head.
fn buffers_chunked(target: &RouteTarget) -> bool {
    target.request_buffering > 0
}

/// The earlier of `at` and an optional deadline.
fn earliest(at: Instant, deadline: Option<Instant>) -> Instant {
    deadline.map_or(at, |deadline| deadline.min(at))
}

/// A breaker refused a new connection (answered 503 through [`OVERFLOW`]).
const OVERFLOWED: Error = Error::new(
    ErrorKind::Limit,
    Side::Upstream,
    "upstream at its limit, try again",
);

/// The upstream closed or reset the connection while the request went out.
const UPSTREAM_CLOSED: Error = Error::new(
    ErrorKind::Closed,
    Side::Upstream,
    "upstream closed or reset the connection",
);

/// A connection attempt that failed: a timeout is answered 504, anything else 502.
fn connect_error(err: &std::io::Error) -> Error {
    let kind = if err.kind() == std::io::ErrorKind::TimedOut {
        ErrorKind::Timeout
    } else {
        ErrorKind::Connect
    };
    let message = match kind {
        ErrorKind::Timeout => "upstream did not answer in time",
        // A TLS upstream whose handshake failed (logged with the reason by the pool).
        _ if err.kind() == std::io::ErrorKind::InvalidData => "upstream TLS handshake failed",
        _ => "upstream unavailable",
    };
    Error {
        os: err.raw_os_error(),
        ..Error::new(kind, Side::Upstream, message)
    }
}

/// What stopped a request body on its way upstream, and whose fault it was.
fn body_error(err: RelayError) -> Error {
    match err {
        RelayError::Source(err) if err.kind() == std::io::ErrorKind::TimedOut => Error::new(
            ErrorKind::Timeout,
            Side::Downstream,
            "request body not received in time",
        ),
        RelayError::Source(_) | RelayError::SourceClosed => Error::new(
            ErrorKind::Closed,
            Side::Downstream,
            "client closed the connection",
        ),
        RelayError::Sink => UPSTREAM_CLOSED,
        RelayError::Framing(err) => Error::new(ErrorKind::Protocol, Side::Downstream, err.reason()),
        RelayError::TooLarge => {
            Error::new(ErrorKind::Limit, Side::Downstream, "request body too large")
        }
        RelayError::NoBuffer => no_buffer(),
    }
}
