//! Reading the upstream's response head and deciding the client's response from it: status,
//! framing, whether the connections stay open, a protocol switch, and the head written for the
//! client (by [`super::head::write_response_head`]).

use std::io;
use std::time::Instant;

use crate::error::{Error, ErrorKind, Side};
use crate::http1::{self, HeadScanner, Parsed, ResponseBody};
use crate::io::{Buf, ReadBuf};
use crate::snapshot::Snapshot;
use crate::upstream::Checkout;

use super::Session;
use super::forward::Asked;
use super::head::{self, ClientFraming, ResponseHeadInput};

/// The client's response, decided from the upstream's head.
pub struct ResponsePlan {
    pub status: u16,
    /// A `101` to an upgrade request: the connections become a tunnel after the head.
    pub switching: bool,
    pub body: ResponseBody,
    pub framing: ClientFraming,
    pub upstream_keep_alive: bool,
    pub close: bool,
    pub head: Buf,
    pub head_len: usize,
}

/// The upstream closed (or reset) before sending a byte of its answer. On a pooled connection
/// that is an upstream that dropped the connection while it idled: it never saw the request.
fn closed_early(reused: bool) -> Error {
    let err = Error::new(
        ErrorKind::Closed,
        Side::Upstream,
        "upstream closed or reset the connection",
    );
    if reused { err.retryable() } else { err }
}

const INVALID: Error = Error::new(
    ErrorKind::Protocol,
    Side::Upstream,
    "upstream sent an invalid response",
);

impl Session {
    /// Receives and parses the upstream's response head (dropping interim 1xx answers other
    /// than a switch) and writes the client's head.
    pub(super) async fn read_response(
        &self,
        checkout: &mut Checkout,
        urb: &mut ReadBuf,
        asked: &Asked<'_>,
        snapshot: &Snapshot,
        deadline: Instant,
    ) -> Result<ResponsePlan, Error> {
        let mut scanner = HeadScanner::new();
        loop {
            if !urb.is_empty()
                && let Some(plan) = self.parse_response(urb, &mut scanner, asked, snapshot)?
            {
                return Ok(plan);
            }
            // Nothing of the answer can be there yet the first time: wait for readiness first.
            let received = if urb.is_empty() {
                checkout.conn().recv_later(urb, Some(deadline)).await
            } else {
                checkout.conn().recv(urb, Some(deadline)).await
            };
            match received {
                Ok(0) if urb.is_empty() => return Err(closed_early(checkout.reused())),
                Ok(0) => return Err(INVALID),
                Ok(_) => {}
                Err(err) if err.kind() == io::ErrorKind::TimedOut => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        Side::Upstream,
                        "upstream did not answer in time",
                    ));
                }
                Err(err) if err.kind() == io::ErrorKind::OutOfMemory => {
                    return Err(no_buffer());
                }
                Err(_) if urb.is_empty() => return Err(closed_early(checkout.reused())),
                Err(_) => return Err(INVALID),
            }
        }
    }

    /// Parses what arrived; `None` until a final head is complete. Interim answers (1xx other
    /// than a switch) are dropped: coregate answered `Expect` itself.
    fn parse_response(
        &self,
        urb: &mut ReadBuf,
        scanner: &mut HeadScanner,
        asked: &Asked<'_>,
        snapshot: &Snapshot,
    ) -> Result<Option<ResponsePlan>, Error> {
        loop {
            let planned = {
                let mut scratch = self.shard.scratch();
                let parsed = http1::parse_response(
                    urb.data(),
                    scanner,
                    &snapshot.limits,
                    &mut scratch.fields,
                    asked.request.method,
                )
                .map_err(|_| INVALID)?;
                match parsed {
                    Parsed::Partial => return Ok(None),
                    Parsed::Complete(head) if head.is_interim() => Err(head.head_len),
                    Parsed::Complete(head) => {
                        Ok(self.plan_response(&head, &scratch.fields, urb.data(), asked)?)
                    }
                }
            };
            match planned {
                Err(interim_len) => {
                    urb.consume(interim_len);
                    if urb.is_empty() {
                        return Ok(None);
                    }
                }
                Ok((plan, head_len)) => {
                    urb.consume(head_len);
                    return Ok(Some(plan));
                }
            }
        }
    }

    /// Chooses the client's framing and writes the client's response head.
    fn plan_response(
        &self,
        head: &http1::ResponseHead,
        fields: &[http1::Field],
        buf: &[u8],
        asked: &Asked<'_>,
    ) -> Result<(ResponsePlan, usize), Error> {
        let request = asked.request;
        // A switch nobody asked for (or to a protocol nobody named) is a broken upstream.
        let switching_to = match (head.status, head.upgrade, asked.upgrade) {
            (101, Some(chosen), Some(offered)) if offered.offers(chosen.of(buf)) => {
                Some(chosen.of(buf))
            }
            (101, _, _) => return Err(INVALID),
            _ => None,
        };
        let framing = ClientFraming::for_response(head.body, request.version);
        let close =
            !request.keep_alive || framing == ClientFraming::UntilClose || self.shard.draining();
        let mut out = self.shard.io.pool().take().ok_or_else(no_buffer)?;
        let input = ResponseHeadInput {
            framing,
            switching_to,
            close,
            client_version: request.version,
            edits: &asked.target.response_headers,
        };
        let head_len = head::write_response_head(out.as_mut_slice(), buf, head, fields, &input)
            .map_err(|_| {
                Error::new(
                    ErrorKind::Limit,
                    Side::Upstream,
                    "upstream response head too large",
                )
            })?;
        let plan = ResponsePlan {
            status: head.status,
            switching: switching_to.is_some(),
            body: head.body,
            framing,
            upstream_keep_alive: head.keep_alive,
            close,
            head: out,
            head_len,
        };
        Ok((plan, head.head_len))
    }
}

/// coregate's own buffers ran out: answered 503, never retried.
pub fn no_buffer() -> Error {
    Error::new(
        ErrorKind::Limit,
        Side::Internal,
        "proxy out of buffers, try again",
    )
}
