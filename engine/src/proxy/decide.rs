//! The synchronous phases over a parsed HTTP/1.1 head: the protocol-neutral [`RequestView`]
//! is built from the head, `route`, `admit` and `pick` decide, and for a request that goes
//! upstream the forwarded head is written. All of it runs before any await: the head's spans
//! and the shard's field scratch are valid only until then.

use crate::context::Scheme;
use crate::http1::{Field, Method, RequestHead, TargetForm};
use crate::request::{Body, Fields, RequestView};
use crate::shard::Scratch;
use crate::snapshot::{Action, DirectResponse, Edits, Snapshot};

use super::admit::{Admitted, Credentials, admit};
use super::forward::Forwarding;
use super::head::{self, RequestHeadInput};
use super::pick::pick;
use super::record::Outcome;
use super::respond::{Answer, BodyState, Detail, Refusal, answer_refusal};
use super::route::{Routed, forwarded_path, route, routing_path};
use super::upgrade;
use super::{Request, Session};

/// What to do with a parsed request.
pub enum Decision<'s> {
    /// coregate answers itself: a refusal, written (`Err`: no buffer to write it, close).
    Refused(Result<Answer, u16>),
    /// The route answers with its configured response, edited by its response edits.
    Direct(&'s DirectResponse, &'s Edits),
    /// Forward upstream.
    Forward(Forwarding<'s>),
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

/// A field that must appear once, sent twice: coregate would vet one copy while the upstream
/// may read the other (the class of a repeated `Host` or `Content-Length`, RFC 9112 sec. 3.2
/// and 6.3), so such a request is refused rather than forwarded with either copy.
fn repeated_singleton(head: &RequestHead) -> Option<Refusal<'static>> {
    if head.repeated.authorization {
        return Some(Refusal::bad_request("repeated Authorization field"));
    }
    if head.repeated.request_id {
        return Some(Refusal::bad_request("repeated X-Request-Id field"));
    }
    None
}

/// `308` to the request's URL on `https` (a `redirect_https` route reached over plain HTTP):
/// the host without its port, the path and query as the client sent them.
fn redirect_https<'b>(
    head: &RequestHead,
    buf: &'b [u8],
    authority: &'b [u8],
    port: u16,
) -> Refusal<'b> {
    let host = match authority.last() {
        // `[::1]` or `[::1]:8080`: the port follows the bracket.
        _ if authority.starts_with(b"[") => authority
            .iter()
            .position(|&b| b == b']')
            .map_or(authority, |end| &authority[..=end]),
        _ => authority
            .iter()
            .position(|&b| b == b':')
            .map_or(authority, |colon| &authority[..colon]),
    };
    if host.is_empty() {
        return Refusal::bad_request("no host to redirect to https");
    }
    Refusal::REDIRECT_HTTPS.with_detail(Detail::Https {
        host,
        port,
        path: head.path.of(buf),
        query: head.query.map(|q| q.of(buf)),
    })
}

/// A request's id: the client's when it is safe to pass on, else one made here.
struct RequestId<'b> {
    client: Option<&'b [u8]>,
    made: [u8; 32],
}

impl RequestId<'_> {
    fn bytes(&self) -> &[u8] {
        self.client.unwrap_or(&self.made)
    }
}

impl Session {
    /// Decides what to do with a parsed request: routes and admits it, and for a request that
    /// goes upstream, picks the endpoint and writes the head to send.
    pub(super) fn decide<'s>(
        &self,
        snapshot: &'s Snapshot,
        head: &RequestHead,
        request: &Request,
        outcome: &mut Outcome,
    ) -> Decision<'s> {
        let shard = &self.shard;
        shard.metrics.request();
        let buf = self.rb.data();
        let mut scratch = shard.scratch();
        let Scratch {
            fields,
            path,
            forwarded,
        } = &mut *scratch;
        // The scratch holds `max_headers` slots; past `field_count` lie an earlier request's
        // fields, whose spans mean nothing in this buffer.
        let head_fields = &fields[..head.field_count];
        let id = self.request_id(head, buf);
        outcome.capture(
            shard,
            head.method_span.of(buf),
            head.target.of(buf),
            id.bytes(),
            Fields::new(buf, head_fields),
        );
        // A body left unread would be taken for the next request: refused requests with one
        // close the connection.
        let unread = if Body::from(head.body).follows() {
            BodyState::Unread
        } else {
            BodyState::Consumed
        };
        let parsed = Parsed {
            head,
            fields: head_fields,
            id: &id,
        };
        match self.run_phases(snapshot, &parsed, path, forwarded, outcome) {
            Ok(decision) => decision,
            Err(refusal) => {
                Decision::Refused(answer_refusal(shard, &refusal, Some(request), unread))
            }
        }
    }

    /// `route`, `admit` and `pick` over the request's view, and the forwarded head.
    fn run_phases<'s>(
        &self,
        snapshot: &'s Snapshot,
        parsed: &Parsed<'_>,
        path_scratch: &mut Vec<u8>,
        forwarded_scratch: &mut Vec<u8>,
        outcome: &mut Outcome,
    ) -> Result<Decision<'s>, Refusal<'s>> {
        let head = parsed.head;
        let buf = self.rb.data();
        if head.method == Method::Connect {
            return Err(Refusal::CONNECT);
        }
        if let Some(refusal) = repeated_singleton(head) {
            return Err(refusal);
        }
        let view = RequestView {
            method: head.method,
            scheme: self.context.scheme(),
            authority: head.route_host().map_or(&b""[..], |host| host.of(buf)),
            path: routing_path(head.form, head.path.of(buf), path_scratch)?,
            query: head.query.map(|query| query.of(buf)),
            fields: Fields::new(buf, parsed.fields),
            body: Body::from(head.body),
            client: self.client.peer_addr().ip(),
        };
        let routed = route(snapshot, &view)?;
        outcome.route = Some(routed.target.stats);
        if let Some(port) = routed.target.redirect_https
            && view.scheme == Scheme::Http
        {
            // Written here: the answer borrows the request's bytes, which a refusal returned
            // from this function may not.
            let refusal = redirect_https(head, buf, view.authority, port);
            let unread = if view.body.follows() {
                BodyState::Unread
            } else {
                BodyState::Consumed
            };
            let request = Request::of(head);
            return Ok(Decision::Refused(answer_refusal(
                &self.shard,
                &refusal,
                Some(&request),
                unread,
            )));
        }
        let mut credentials = Credentials::default();
        let admitted = admit(
            &self.shard,
            snapshot,
            routed.target,
            &view,
            &mut credentials,
            self.context.client_identity().map(str::as_bytes),
        )?;
        let upstream = match &routed.target.action {
            Action::Respond(response) => {
                return Ok(Decision::Direct(response, &routed.target.response_headers));
            }
            Action::Forward { upstream, .. } => *upstream,
        };
        let path = match head.form {
            TargetForm::Asterisk => view.path,
            _ => forwarded_path(&routed, view.path, forwarded_scratch)?,
        };
        let forward = Forward {
            parsed,
            view: &view,
            path,
            routed: &routed,
            admitted: &admitted,
        };
        Ok(Decision::Forward(
            self.plan_forward(snapshot, upstream, &forward)?,
        ))
    }

    /// The client's `X-Request-Id` when it is safe to keep, else a new one.
    fn request_id<'b>(&self, head: &RequestHead, buf: &'b [u8]) -> RequestId<'b> {
        let client = head
            .request_id
            .map(|id| id.of(buf))
            .filter(|id| is_safe_request_id(id));
        let mut made = [0u8; 32];
        if client.is_none() {
            head::request_id(
                self.shard.request_id_seed,
                self.shard.next_request_number(),
                &mut made,
            );
        }
        RequestId { client, made }
    }

    /// Picks the endpoint and writes the head it is sent.
    fn plan_forward<'s>(
        &self,
        snapshot: &'s Snapshot,
        upstream: usize,
        forward: &Forward<'_, 's>,
    ) -> Result<Forwarding<'s>, Refusal<'static>> {
        let Forward {
            parsed,
            view,
            path,
            routed,
            admitted,
        } = *forward;
        let Parsed { head, fields, id } = *parsed;
        let picked = pick(snapshot, upstream, view, self.shard.io.now())?;
        let endpoint = picked.upstream.endpoint(picked.choice.index).addr();
        let mut out = self.shard.io.pool().take().ok_or(Refusal::NO_BUFFER)?;
        let buf = self.rb.data();
        let relayed = upgrade::relayed(head.upgrade, buf, view.body);
        let client_ip = self.client.peer_addr().ip();
        let input = RequestHeadInput {
            path,
            edits: &routed.target.request_headers,
            client_ip,
            scheme: view.scheme,
            client_trusted: snapshot.forwarding.trusts(client_ip),
            untrusted_drop: &snapshot.forwarding.untrusted_drop,
            forwarded_header: snapshot.forwarding.forwarded_header(),
            endpoint,
            request_id: id.bytes(),
            replace_request_id: head.request_id.is_some() && id.client.is_none(),
            upgrade: relayed.map(|(protocols, _)| protocols),
            identity: admitted.identity_header.zip(admitted.identity),
            claims: admitted.token.map_or(&[], |token| &token.headers[..]),
            client_cert: snapshot
                .tls_listener(&self.context.listener.name)
                .and_then(|listener| listener.client_cert_header.as_deref())
                .map(|name| {
                    let identity = self.context.client_identity().map(str::as_bytes);
                    (name.as_bytes(), identity)
                }),
        };
        let written = head::write_request_head(out.as_mut_slice(), buf, head, fields, &input)
            .map_err(|_| Refusal::HEAD_TOO_LARGE)?;
        Ok(Forwarding {
            target: routed.target,
            upstream: picked.upstream,
            choice: picked.choice,
            head: out,
            written,
            upgrade: relayed.map(|(_, protocols)| protocols),
        })
    }
}

/// The parsed head, with its fields and the request's id.
#[derive(Clone, Copy)]
struct Parsed<'a> {
    head: &'a RequestHead,
    /// The head's own fields (not the rest of the scratch).
    fields: &'a [Field],
    id: &'a RequestId<'a>,
}

/// What writing the forwarded head draws on.
#[derive(Clone, Copy)]
struct Forward<'a, 's> {
    parsed: &'a Parsed<'a>,
    view: &'a RequestView<'a>,
    /// The path to forward (the route's rewrite applied).
    path: &'a [u8],
    routed: &'a Routed<'s>,
    admitted: &'a Admitted<'a>,
}
