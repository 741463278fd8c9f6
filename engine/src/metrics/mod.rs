//! Per-shard counters and latency histogram. Each shard updates its own, with plain `Cell`s (no
//! atomics: nothing is shared); the control plane collects copies through the mailboxes.

pub mod names;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use hdrhistogram::Histogram;

/// Why the proxy answered a request itself with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Reject {
    /// 400: malformed request.
    BadRequest = 0,
    /// 404: no route.
    NoRoute,
    /// 405: route exists, method not allowed.
    MethodNotAllowed,
    /// 413: body over the limit.
    BodyTooLarge,
    /// 414: request line over the limit.
    UriTooLong,
    /// 431: header section over the limit.
    HeadersTooLarge,
    /// 408: the client was too slow sending its request.
    ClientTimeout,
    /// 502: upstream refused, reset or answered garbage.
    BadGateway,
    /// 503: no buffer or connection capacity left.
    Unavailable,
    /// 504: upstream too slow.
    GatewayTimeout,
    /// 501 / 417 and other refusals.
    NotImplemented,
}

impl Reject {
    pub const COUNT: usize = 11;

    pub const ALL: [Reject; Reject::COUNT] = [
        Reject::BadRequest,
        Reject::NoRoute,
        Reject::MethodNotAllowed,
        Reject::BodyTooLarge,
        Reject::UriTooLong,
        Reject::HeadersTooLarge,
        Reject::ClientTimeout,
        Reject::BadGateway,
        Reject::Unavailable,
        Reject::GatewayTimeout,
        Reject::NotImplemented,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reject::BadRequest => "bad_request",
            Reject::NoRoute => "no_route",
            Reject::MethodNotAllowed => "method_not_allowed",
            Reject::BodyTooLarge => "body_too_large",
            Reject::UriTooLong => "uri_too_long",
            Reject::HeadersTooLarge => "headers_too_large",
            Reject::ClientTimeout => "client_timeout",
            Reject::BadGateway => "bad_gateway",
            Reject::Unavailable => "unavailable",
            Reject::GatewayTimeout => "gateway_timeout",
            Reject::NotImplemented => "not_implemented",
        }
    }
}

/// A plain copy of a shard's counters, for collection and tests.
#[derive(Clone, Debug, Default)]
pub struct Counters {
    pub requests: u64,
    /// Responses by status class: index 1 = 1xx ... 5 = 5xx.
    pub responses_by_class: [u64; 6],
    pub rejected: [u64; Reject::COUNT],
    pub connections_accepted: u64,
    pub connections_open: u64,
    pub upstream_retries: u64,
}

/// One shard's metrics.
pub struct ShardMetrics {
    counters: RefCell<Counters>,
    /// Request latency in microseconds, first byte of the head to last byte of the response.
    latency: RefCell<Histogram<u64>>,
    open: Cell<u64>,
}

/// The histogram's range: 1 us to 10 minutes at 3 significant digits (about 0.1% error),
/// allocated once so recording never allocates.
const LATENCY_MAX_US: u64 = 600_000_000;

impl Default for ShardMetrics {
    fn default() -> Self {
        ShardMetrics {
            counters: RefCell::new(Counters::default()),
            latency: RefCell::new(
                Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
                    .expect("static histogram bounds are valid"),
            ),
            open: Cell::new(0),
        }
    }
}

impl ShardMetrics {
    pub fn request(&self) {
        self.counters.borrow_mut().requests += 1;
    }

    pub fn response(&self, status: u16, elapsed: Duration) {
        let class = (status / 100).min(5) as usize;
        self.counters.borrow_mut().responses_by_class[class] += 1;
        let micros = (elapsed.as_micros() as u64).clamp(1, LATENCY_MAX_US);
        // Within bounds by the clamp, so this cannot fail or allocate.
        let _ = self.latency.borrow_mut().record(micros);
    }

    pub fn reject(&self, reason: Reject) {
        self.counters.borrow_mut().rejected[reason as usize] += 1;
    }

    pub fn upstream_retry(&self) {
        self.counters.borrow_mut().upstream_retries += 1;
    }

    pub fn connection_opened(&self) {
        self.counters.borrow_mut().connections_accepted += 1;
        self.open.set(self.open.get() + 1);
    }

    pub fn connection_closed(&self) {
        self.open.set(self.open.get().saturating_sub(1));
    }

    pub fn open_connections(&self) -> u64 {
        self.open.get()
    }

    /// A copy of the counters.
    pub fn counters(&self) -> Counters {
        let mut counters = self.counters.borrow().clone();
        counters.connections_open = self.open.get();
        counters
    }

    /// A copy of the latency histogram (allocates; collection only).
    pub fn latency(&self) -> Histogram<u64> {
        self.latency.borrow().clone()
    }
}
