//! `forward`: sends the request upstream and waits for the response head. Takes a pooled
//! connection to the picked endpoint (or connects), sends the head and the body bytes at hand
//! in one write, streams the rest of the body, and reads the response head.
//!
//! Retries are decided in one place, [`retries`], from the failed attempt's [`Error`]: its
//! side, and whether the upstream cannot have processed the request (`retryable`: a pooled
//! connection the upstream had dropped while it idled), together with whether the request can
//! be sent again as it was (an idempotent method whose whole body is still at hand).

use std::rc::Rc;

use crate::error::{Error, ErrorKind, Side};
use crate::http1::{CONTINUE_100, ChunkedDecoder, RequestBody};
use crate::io::{Buf, Outbound, ReadBuf};
use crate::snapshot::{RouteTarget, Snapshot};
use crate::upstream::{Checkout, EndpointPool, UpstreamGroup};

use super::record::Outcome;
use super::relay::{self, Ends, Pace, RelayError, Stop};
use super::respond::{BodyState, Refusal};
use super::response::{ResponsePlan, no_buffer};
use super::upgrade::Protocols;
use super::{Request, Session, Step};

/// Attempts per request: the first, and one more on a fresh connection.
const MAX_ATTEMPTS: u32 = 2;

/// What the synchronous phases decided for a request that goes upstream.
pub struct Forwarding<'s> {
    pub target: &'s RouteTarget,
    pub upstream: &'s UpstreamGroup,
    pub endpoint: Rc<EndpointPool>,
    /// The head written for the upstream.
    pub head: Buf,
    pub head_len: usize,
    /// The protocols of an upgrade coregate relays.
    pub upgrade: Option<Protocols>,
}

/// What the upstream is asked, and where.
pub struct Asked<'a> {
    pub request: &'a Request,
    pub upgrade: Option<&'a Protocols>,
    pub target: &'a RouteTarget,
    pub upstream: &'a UpstreamGroup,
    pub endpoint: &'a Rc<EndpointPool>,
    /// The request can be sent again as it was: an idempotent method, the whole body at hand.
    pub replayable: bool,
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
    pub body_timeout: std::time::Duration,
}

/// A failed attempt: the error, and whether the client's body is still on its connection.
struct Failure {
    error: Error,
    body: BodyState,
}

/// The request body as it stands once the head is queued.
struct Body {
    /// Bytes of a `Content-Length` body still to come.
    remaining: u64,
    decoder: ChunkedDecoder,
    /// Consumed: the whole body is queued behind the head.
    state: BodyState,
}

/// Whether a failed attempt is tried again on a fresh connection: only upstream failures that
/// left the request unprocessed, of a request that can be sent again as it was, and only once.
fn retries(err: &Error, attempt: u32, replayable: bool) -> bool {
    attempt < MAX_ATTEMPTS && replayable && err.side == Side::Upstream && err.retryable
}

impl Session {
    /// Sends the request and returns once the upstream's response head arrived; on failure the
    /// client is answered (502, 504, ...) and the step after that is returned.
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
            endpoint,
            head,
            head_len,
            upgrade,
        } = forwarding;
        outcome.endpoint = Some(endpoint.addr());
        let mut out = Outbound::new();
        out.push(head, 0, head_len as u32);
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
        let asked = Asked {
            request,
            upgrade: upgrade.as_ref(),
            target,
            upstream,
            endpoint: &endpoint,
            replayable: request.method.is_idempotent() && body.state == BodyState::Consumed,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let attempted = self
                .attempt(snapshot, &asked, &mut out, &mut body, outcome)
                .await;
            match attempted {
                Ok(exchange) => return Ok(exchange),
                Err(failure) if retries(&failure.error, attempt, asked.replayable) => {
                    self.shard.metrics.upstream_retry();
                }
                Err(failure) => return Err(self.fail(failure, request, outcome).await),
            }
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
        out: &mut Outbound,
        body: &mut Body,
        outcome: &mut Outcome,
    ) -> Result<Exchange, Failure> {
        let shard = self.shard.clone();
        let endpoint = asked.endpoint;
        let timeouts = asked.upstream.timeouts;
        let unread = body.state;
        let fail = |error: Error| Failure {
            error,
            body: unread,
        };
        let started = shard.io.now();
        let mut checkout = match endpoint.take_idle(started) {
            Some(checkout) => checkout,
            None => endpoint
                .connect(&shard.io, started + timeouts.connect)
                .await
                .map_err(|err| fail(connect_error(&err)))?,
        };
        let sent = checkout
            .conn()
            .send(out, Some(started + timeouts.body))
            .await;
        if sent.is_err() {
            // On a pooled connection: one the upstream dropped while it idled.
            let error = UPSTREAM_CLOSED;
            return Err(fail(if checkout.reused() {
                error.retryable()
            } else {
                error
            }));
        }
        // What was sent is kept only while it may be sent again (see `retries`).
        if !(asked.replayable && checkout.reused()) {
            out.clear();
        }
        let mut answered_early = false;
        if body.state == BodyState::Unread {
            out.clear();
            answered_early = self
                .relay_body(snapshot, asked, &mut checkout, out, body)
                .await
                .map_err(fail)?;
            body.state = BodyState::Consumed;
        }
        let mut urb = ReadBuf::new();
        let deadline = shard.io.now() + timeouts.response;
        let plan = self
            .read_response(&mut checkout, &mut urb, asked, snapshot, deadline)
            .await
            .map_err(|error| Failure {
                error,
                body: BodyState::Consumed,
            })?;
        outcome.upstream_time = Some(shard.io.now().saturating_duration_since(started));
        Ok(Exchange {
            checkout,
            urb,
            plan,
            answered_early,
            body_timeout: timeouts.body,
        })
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
                let limit = asked.target.max_body_bytes;
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
        match Refusal::of_error(&failure.error) {
            Some(refusal) => {
                self.refuse(&refusal, Some(request), failure.body, outcome)
                    .await
            }
            None => Step::Close,
        }
    }
}

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
