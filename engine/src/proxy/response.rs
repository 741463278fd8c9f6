//! Reading the upstream's response head and deciding the client's response from it: status,
//! framing, whether the connections stay open, a protocol switch, and the head written for the
//! client (by [`super::head::write_response_head`]).

use std::io;
use std::time::Instant;

use crate::error::{Error, ErrorKind, Side};
use crate::http1::{self, HeadScanner, Parsed, ResponseBody, Version};
use crate::io::{Buf, Expect, Outbound, ReadBuf};
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
    /// Bytes of interim (1xx) answers the client was sent before this one.
    pub interim_bytes: u64,
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

const HEAD_TOO_LARGE: Error = Error::new(
    ErrorKind::Limit,
    Side::Upstream,
    "upstream response head too large",
);

const INVALID: Error = Error::new(
    ErrorKind::Protocol,
    Side::Upstream,
    "upstream sent an invalid response",
);

/// What the bytes received so far hold.
enum Received {
    /// Not a whole head yet.
    Partial,
    /// An interim (1xx) head, consumed; written for the client when it is to be forwarded.
    Interim(Option<(Buf, usize)>),
    /// The final head, consumed and planned.
    Final(ResponsePlan),
}

impl Session {
    /// Receives and parses the upstream's response head and writes the client's head. Interim
    /// answers other than a switch go to an HTTP/1.1 client as they arrive (RFC 9110 sec.
    /// 15.2: a proxy forwards 1xx it did not ask for), except `100 Continue`: coregate answers
    /// `Expect` itself and never asks an upstream for one. An HTTP/1.0 client gets none.
    pub(super) async fn read_response(
        &mut self,
        checkout: &mut Checkout,
        urb: &mut ReadBuf,
        asked: &Asked<'_>,
        snapshot: &Snapshot,
        deadline: Instant,
    ) -> Result<ResponsePlan, Error> {
        let mut scanner = HeadScanner::new();
        let mut interim_bytes = 0u64;
        loop {
            if !urb.is_empty() {
                match self.parse_response(urb, &mut scanner, asked, snapshot)? {
                    Received::Final(mut plan) => {
                        plan.interim_bytes = interim_bytes;
                        return Ok(plan);
                    }
                    Received::Interim(Some((head, len))) => {
                        self.send_interim(head, len, snapshot).await?;
                        interim_bytes += len as u64;
                        continue;
                    }
                    Received::Interim(None) => continue,
                    Received::Partial => {}
                }
            }
            // Nothing of the answer can be there yet the first time: wait for readiness first.
            let received = if urb.is_empty() {
                checkout
                    .conn()
                    .recv_expecting(urb, Some(deadline), Expect::Soon)
                    .await
            } else {
                checkout.conn().recv(urb, Some(deadline)).await
            };
            // Once the client saw an interim answer, the request cannot be sent again.
            let unanswered = checkout.reused() && interim_bytes == 0;
            match received {
                Ok(0) if urb.is_empty() => return Err(closed_early(unanswered)),
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
                Err(_) if urb.is_empty() => return Err(closed_early(unanswered)),
                Err(_) => return Err(INVALID),
            }
        }
    }

    /// Sends the client an interim answer.
    async fn send_interim(
        &mut self,
        head: Buf,
        len: usize,
        snapshot: &Snapshot,
    ) -> Result<(), Error> {
        let mut out = Outbound::new();
        out.push(head, 0, len as u32);
        let deadline = self.shard.io.now() + snapshot.timeouts.send;
        self.client
            .send(&mut out, Some(deadline))
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Closed,
                    Side::Downstream,
                    "client closed the connection",
                )
            })
    }

    /// Parses what arrived: at most one head, consumed from `urb` when complete.
    fn parse_response(
        &self,
        urb: &mut ReadBuf,
        scanner: &mut HeadScanner,
        asked: &Asked<'_>,
        snapshot: &Snapshot,
    ) -> Result<Received, Error> {
        let mut scratch = self.shard.scratch();
        let parsed = http1::parse_response(
            urb.data(),
            scanner,
            &snapshot.limits,
            &mut scratch.fields,
            asked.request.method,
        )
        .map_err(|_| INVALID)?;
        let head = match parsed {
            Parsed::Partial => return Ok(Received::Partial),
            Parsed::Complete(head) => head,
        };
        let received = if head.is_interim() {
            let forwarded = head.status != 100 && asked.request.version == Version::Http11;
            let written = match forwarded {
                true => Some(self.write_interim(&head, &scratch.fields, urb.data())?),
                false => None,
            };
            Received::Interim(written)
        } else {
            Received::Final(self.plan_response(&head, &scratch.fields, urb.data(), asked)?)
        };
        urb.consume(head.head_len);
        Ok(received)
    }

    /// Writes an interim answer for the client.
    fn write_interim(
        &self,
        head: &http1::ResponseHead,
        fields: &[http1::Field],
        buf: &[u8],
    ) -> Result<(Buf, usize), Error> {
        let mut out = self.shard.io.pool().take().ok_or_else(no_buffer)?;
        let len = head::write_interim_head(out.as_mut_slice(), buf, head, fields)
            .map_err(|_| HEAD_TOO_LARGE)?;
        Ok((out, len))
    }

    /// Chooses the client's framing and writes the client's response head.
    fn plan_response(
        &self,
        head: &http1::ResponseHead,
        fields: &[http1::Field],
        buf: &[u8],
        asked: &Asked<'_>,
    ) -> Result<ResponsePlan, Error> {
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
            .map_err(|_| HEAD_TOO_LARGE)?;
        let plan = ResponsePlan {
            status: head.status,
            switching: switching_to.is_some(),
            body: head.body,
            framing,
            upstream_keep_alive: head.keep_alive,
            close,
            head: out,
            head_len,
            interim_bytes: 0,
        };
        Ok(plan)
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
