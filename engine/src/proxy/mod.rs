//! The request pipeline: one task per client connection, running its requests one after the
//! other (pipelined requests are answered in order). `Session::run_exchange` is the list of
//! phases; each phase is a verb and a file:
//!
//! | phase | file | what happens |
//! |---|---|---|
//! | `handshake` | `handshake.rs` | once per connection of a TLS listener: the TLS handshake, its facts into the connection's context |
//! | `read_head` | `read_head.rs` | wait for a request holding no buffer (keep-alive or header timeout), receive until a whole head is buffered (header deadline from its first byte), parse it |
//! | `decide` | `decide.rs` | synchronously, over the parsed head: build the protocol-neutral [`RequestView`](crate::request::RequestView), then `route`, `admit`, `pick`, and write the forwarded head |
//! | `route` | `route.rs` | normalise the path; host -> method -> path lookup (400 / 404 / 405) |
//! | `admit` | `admit.rs` | declared body size (413), API key or JWT (401 / 403), rate limit (429) |
//! | `pick` | `pick.rs` | the endpoint of the route's upstream, chosen by its policy given the request |
//! | `forward` | `forward.rs` | take a pooled upstream connection (or connect); receive a body within `request_buffering` whole first (a chunked one decoded in `decoded.rs`, then declared by its length); send head and body at hand in one write; stream the rest of the body; read the response head (`response.rs`); retry once when the error allows |
//! | `relay` | `relay.rs` | the response head and body bytes at hand in one write, then the rest by length, chunked (re-framed) or until close; the upstream connection goes back to its pool only after a clean exchange |
//! | `tunnel` | `upgrade.rs` | after a `101`: the two connections joined |
//! | `respond` | `respond.rs` | every answer coregate writes itself (refusals, failures, a route's direct answer), and the one rule for whether the connection stays open |
//! | `record` | `record.rs` | once per exchange, from its `Outcome`: responses by route and status class, latency, the access-log line |
//!
//! `head.rs` writes the heads coregate sends (the forwarded request, the client's response).
//! `park.rs` lets a connection idle for a second between requests wait without its task.
//!
//! Early exits (400, 401, 403, 404, 405, 408, 413, 414, 429, 431, 500, 501, 502, 503, 504) all
//! go through `respond`, which also decides once whether the client connection stays open: it
//! closes whenever the request's body was not consumed or its framing is in doubt.
//!
//! Retries are decided in `forward.rs` from the failed attempt's error: a request that can be
//! sent again as it was (idempotent, whole body at hand) is sent once more on a fresh
//! connection when a *pooled* connection turns out dead before any response byte (the upstream
//! closed it while it idled).
//!
//! Steady state allocates nothing: heads, bodies and responses live in the shard's buffers, the
//! parse scratch is the shard's, the task's own state is fixed size.

mod admit;
mod decide;
mod decoded;
mod forward;
mod handshake;
pub mod head;
mod park;
mod pick;
mod read_head;
mod record;
mod relay;
mod respond;
mod response;
mod route;
mod upgrade;

use std::future::Future;
use std::rc::Rc;
use std::time::Instant;

use crate::context::ConnContext;
use crate::frame::in_frame;
use crate::http1::{HeadScanner, Method, RequestBody, RequestHead, Version};
use crate::io::{Conn, ReadBuf};
use crate::shard::Shard;
use crate::snapshot::Snapshot;

use decide::Decision;
use record::Outcome;

pub use park::{PARK_AFTER, ParkedTable, parked_entry_bytes, revive_parked, trim_after_parking};

/// What a connection does after an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Read the next request.
    Continue,
    /// Close the client connection.
    Close,
}

/// What a connection waiting between requests does next.
enum Idle {
    /// Serve the request whose first bytes arrived.
    Request,
    /// Close: the client closed or went quiet, or the shard drains.
    Close,
    /// Park until the keep-alive deadline (see `park.rs`).
    Park(Instant),
    /// Wait again (nothing was received).
    Wait,
}

/// How a connection task's requests ended.
enum Ended {
    Closed,
    /// Parked until the keep-alive deadline.
    Parked(Instant),
}

/// Serves one client connection until it closes or parks (`park.rs`).
///
/// While the connection idles between requests, this task holds only the `Session` and a
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
        // Boxed: the handshake's state is larger than an idle connection's, and lives only
        // until the handshake ends (frames are for exchanges, of one size).
        if session.client.is_tls() && Box::pin(session.handshake()).await == Step::Close {
            session.shard.unregister(session.key);
            return;
        }
        let ended = session.serve_requests(false).await;
        session.end(ended);
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
#[derive(Clone, Copy, Debug)]
struct Request {
    method: Method,
    version: Version,
    /// The head lets the connection carry another request.
    keep_alive: bool,
    body: RequestBody,
    /// The client waits for `100 Continue` before sending its body.
    expect_continue: bool,
}

impl Request {
    fn of(head: &RequestHead) -> Request {
        Request {
            method: head.method,
            version: head.version,
            keep_alive: head.keep_alive,
            body: head.body,
            expect_continue: head.expect_continue,
        }
    }
}

impl Session {
    /// Serves requests one after the other until the connection closes or idles long enough to
    /// park; `arrived`: the first request's bytes are here already (a revived connection).
    async fn serve_requests(&mut self, mut arrived: bool) -> Ended {
        loop {
            if !arrived && self.rb.is_empty() {
                match self.wait_for_request().await {
                    Idle::Request => {}
                    Idle::Wait => continue,
                    Idle::Close => return Ended::Closed,
                    Idle::Park(deadline) => return Ended::Parked(deadline),
                }
            }
            arrived = false;
            let frames = self.shard.frames().clone();
            if in_frame(&frames, self.exchange()).await == Step::Close {
                return Ended::Closed;
            }
            self.served += 1;
        }
    }

    /// Closes the connection, or parks it.
    fn end(self, ended: Ended) {
        match ended {
            Ended::Closed => self.shard.unregister(self.key),
            Ended::Parked(deadline) => self.park(deadline),
        }
    }

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

    /// The phases of one exchange, in order.
    async fn run_exchange(&mut self, snapshot: &Snapshot, outcome: &mut Outcome) -> Step {
        let (request, decision) = match self.read_head(snapshot, outcome).await {
            Ok(head) => {
                let request = Request::of(&head);
                outcome.parsed = Some((request.method, request.version));
                let decision = self.decide(snapshot, &head, &request, outcome);
                self.rb.consume(head.head_len);
                (request, decision)
            }
            Err(step) => return step,
        };
        let forwarding = match decision {
            Decision::Refused(answer) => return self.send_refusal(answer, outcome).await,
            Decision::Direct(response, edits) => {
                return self.answer_route(&request, response, edits, outcome).await;
            }
            Decision::Forward(forwarding) => forwarding,
        };
        let mut exchange = match self.forward(snapshot, &request, forwarding, outcome).await {
            Ok(exchange) => exchange,
            Err(step) => return step,
        };
        if exchange.plan.switching {
            let plan = exchange.plan;
            return self
                .tunnel(
                    &mut exchange.checkout,
                    &mut exchange.urb,
                    plan,
                    &snapshot.timeouts,
                    outcome,
                )
                .await;
        }
        self.relay(snapshot, exchange, outcome).await
    }
}

/// Bytes of a connection task's future: what an idle connection's task holds, besides the
/// executor's header.
pub fn connection_future_bytes() -> usize {
    future_size(serve)
}

/// Bytes of an exchange's future, the size of the shard's frames.
pub fn exchange_frame_bytes() -> usize {
    exchange_size(Session::exchange)
}

fn future_size<F, Fut>(_: F) -> usize
where
    F: Fn(Rc<Shard>, Conn, ConnContext) -> Fut,
{
    std::mem::size_of::<Fut>()
}

fn exchange_size<F, Fut>(_: F) -> usize
where
    F: FnOnce(&'static mut Session) -> Fut,
{
    std::mem::size_of::<Fut>()
}

#[cfg(test)]
mod tests {
    use super::future_size;

    /// The connection task is what an idle keep-alive connection costs (with its pending receive
    /// and the executor's task header); an exchange in progress lives in a pooled frame instead.
    #[test]
    fn an_idle_connection_task_stays_small() {
        // 312 bytes before TLS: the session (152, its listener context one word of it) and a
        // pending receive (120). TLS added two words to the session (the context's TLS facts,
        // the connection's record layer) and two to the receive (the layer, and whether
        // records or plaintext are received: `io/conn.rs`), the same future for both: 384.
        // Parking added two flags to the wait and a borrow of the session: 400. Past its first
        // second idle, a connection is parked and holds no task at all (`park.rs`).
        let size = future_size(super::serve);
        assert!(size <= 400, "the connection task's future is {size} bytes");
    }
}
