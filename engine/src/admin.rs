//! The admin API: a small HTTP/1.1 server on the control plane's own threads, never on a shard
//! and never on a data listener. [`ADMIN_WORKERS`] threads (started by `runtime`) take turns
//! accepting; each answers one connection at a time, with a deadline, and closes after every
//! response: it serves operators and scrapers, not traffic. A slow or idle client ties up one
//! worker for at most [`REQUEST_DEADLINE`], and a reload or scrape in progress another, so
//! `/healthz` and `/readyz` still answer at once.
//!
//! | endpoint | method | answers |
//! |---|---|---|
//! | `/healthz` | GET, HEAD | `200 ok`: the process is up |
//! | `/readyz` | GET, HEAD | `200` once every shard runs the current configuration, else `503` |
//! | `/config` | GET | the effective configuration (TOML) and the generation each shard runs |
//! | `/reload` | POST | reloads the configuration file: `200`, or `400` with every mistake, `409` when only a restart can apply it, `503` when a shard did not acknowledge |
//! | `/metrics` | GET | Prometheus text format, merged from every shard |
//! | `/upstreams` | GET | JSON: each shard's view of each upstream endpoint (state, weight share, ejection, requests in flight) and each upstream's load |
//!
//! With `admin.token` set, every endpoint but `/healthz` and `/readyz` (which probes call)
//! wants `Authorization: Bearer <token>`, compared in constant time; otherwise `401`.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::plane::{ControlPlane, ReloadError};
use crate::http1::{self, Field, HeadScanner, Limits, Method, Parsed};
use crate::upstream::Overflow;

/// Threads serving the admin API.
pub const ADMIN_WORKERS: usize = 4;

/// A request must arrive whole within this; then the connection is dropped.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(5);

/// How long writing a response may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the accept loop checks whether the process is stopping.
const STOP_POLL: Duration = Duration::from_millis(100);

/// The largest admin request head.
const MAX_HEAD: usize = 8 * 1024;

/// One admin worker: serves the (shared, non-blocking) listener until the control plane
/// stops.
pub fn serve(listener: TcpListener, plane: Arc<ControlPlane>) {
    if let Err(err) = listener.set_nonblocking(true) {
        eprintln!("coregate: admin listener: {err}; the admin API is off");
        return;
    }
    while !plane.stopping() {
        match listener.accept() {
            // A client that goes away or sends garbage gets what it sent: nothing to report.
            Ok((stream, _)) => drop(handle(stream, &plane)),
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                wait_readable(&listener, STOP_POLL);
            }
            Err(err) => {
                eprintln!("coregate: admin listener: accept: {err}");
                std::thread::sleep(STOP_POLL);
            }
        }
    }
}

fn wait_readable(listener: &TcpListener, timeout: Duration) {
    let mut fds = [libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe {
        libc::poll(fds.as_mut_ptr(), 1, timeout.as_millis() as libc::c_int);
    }
}

/// A response: status, content type, body.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    allow: Option<&'static str>,
    challenge: bool,
}

impl Reply {
    fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
            allow: None,
            challenge: false,
        }
    }
}

fn handle(mut stream: TcpStream, plane: &ControlPlane) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let deadline = Instant::now() + REQUEST_DEADLINE;
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    let mut scanner = HeadScanner::new();
    let mut fields = vec![Field::EMPTY; 64];
    let limits = Limits {
        max_request_line: 2048,
        max_head_bytes: MAX_HEAD,
        max_headers: 64,
    };
    let (method, path, head_only, authorized) = loop {
        match http1::parse_request(&buf[..len], &mut scanner, &limits, &mut fields) {
            Ok(Parsed::Complete(head)) => {
                let path = String::from_utf8_lossy(head.path.of(&buf)).into_owned();
                let authorized = authorized(plane, &buf, &fields[..head.field_count]);
                break (head.method, path, head.method == Method::Head, authorized);
            }
            Ok(Parsed::Partial) => {}
            Err(err) => {
                return respond(&mut stream, &Reply::text(err.status, err.reason), false);
            }
        }
        if len == buf.len() {
            return respond(
                &mut stream,
                &Reply::text(431, "request head too large"),
                false,
            );
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[len..])? {
            0 => return Ok(()),
            n => len += n,
        }
    };
    let reply = route(plane, method, &path, authorized);
    respond(&mut stream, &reply, head_only)
}

fn route(plane: &ControlPlane, method: Method, path: &str, authorized: bool) -> Reply {
    let read = matches!(method, Method::Get | Method::Head);
    let allowed = match path {
        "/healthz" | "/readyz" | "/config" | "/metrics" | "/upstreams" => read,
        "/reload" => method == Method::Post,
        _ => {
            return Reply::text(
                404,
                "no such admin endpoint; try /healthz /readyz /config /reload /metrics /upstreams",
            );
        }
    };
    if !allowed {
        let mut reply = Reply::text(405, "method not allowed");
        reply.allow = Some(if path == "/reload" {
            "POST"
        } else {
            "GET, HEAD"
        });
        return reply;
    }
    let protected = !matches!(path, "/healthz" | "/readyz");
    if protected && !authorized {
        let mut reply = Reply::text(
            401,
            "this endpoint needs Authorization: Bearer <admin.token>",
        );
        reply.challenge = true;
        return reply;
    }
    match path {
        "/healthz" => Reply::text(200, "ok"),
        "/readyz" => {
            let generations = plane.generations();
            let mut body = String::new();
            for (shard, _, generation) in &generations.shards {
                body.push_str(&format!("shard {shard}: generation {generation}\n"));
            }
            if generations.all_current() {
                Reply::text(
                    200,
                    format!("ready: generation {}\n{body}", generations.current),
                )
            } else {
                Reply::text(
                    503,
                    format!(
                        "not ready: not every shard runs generation {}\n{body}",
                        generations.current
                    ),
                )
            }
        }
        "/config" => {
            let mut reply = Reply::text(200, plane.config_text());
            reply.content_type = "application/toml";
            reply
        }
        "/metrics" => {
            let mut reply = Reply::text(200, plane.metrics_text());
            reply.content_type = "text/plain; version=0.0.4; charset=utf-8";
            reply
        }
        "/upstreams" => {
            let mut reply = Reply::text(200, upstreams(plane));
            reply.content_type = "application/json";
            reply
        }
        "/reload" => match plane.reload() {
            Ok(reloaded) => {
                eprintln!("coregate: {reloaded} (admin API)");
                Reply::text(200, reloaded.to_string())
            }
            Err(err) => {
                eprintln!("coregate: {err}");
                let status = match err {
                    ReloadError::Invalid(_) => 400,
                    ReloadError::NeedsRestart(_) | ReloadError::Bind(_) => 409,
                    ReloadError::Incomplete { .. } => 503,
                };
                Reply::text(status, err.to_string())
            }
        },
        _ => Reply::text(404, "no such admin endpoint"),
    }
}

/// Every shard's view of every upstream, as JSON (collected through the mailboxes).
fn upstreams(plane: &ControlPlane) -> String {
    let (reports, _) = plane.collect();
    let shards: Vec<serde_json::Value> = reports
        .iter()
        .map(|report| {
            let upstreams: Vec<serde_json::Value> = report
                .upstreams
                .iter()
                .map(|upstream| {
                    let load = &upstream.load;
                    let overflows: serde_json::Map<String, serde_json::Value> = Overflow::ALL
                        .iter()
                        .map(|o| (o.label().to_owned(), load.overflows[*o as usize].into()))
                        .collect();
                    let endpoints: Vec<serde_json::Value> = upstream
                        .endpoints
                        .iter()
                        .map(|e| {
                            serde_json::json!({
                                "address": e.endpoint.to_string(),
                                "state": e.standing.label(),
                                "weight": e.weight,
                                "share_percent": e.share_percent,
                                "ejected_for_ms": e.ejected_for.map(|d| d.as_millis() as u64),
                                "ejections": e.ejections,
                                "ejected_by_this_shard": e.trips,
                                "in_flight": e.in_flight,
                            })
                        })
                        .collect();
                    serde_json::json!({
                        "name": &*upstream.upstream,
                        "requests_in_flight": load.requests,
                        "pending": load.pending,
                        "connections_busy": load.connections,
                        "retries_in_flight": load.retries,
                        "retries": load.retried,
                        "overflows": overflows,
                        "endpoints": endpoints,
                    })
                })
                .collect();
            serde_json::json!({ "shard": report.shard, "upstreams": upstreams })
        })
        .collect();
    let mut text = serde_json::json!({ "shards": shards }).to_string();
    text.push('\n');
    text
}

/// Whether the request may use protected endpoints: no token configured, or the right one.
fn authorized(plane: &ControlPlane, buf: &[u8], fields: &[Field]) -> bool {
    let config = plane.config();
    let Some(token) = config
        .admin
        .as_ref()
        .and_then(|admin| admin.token.as_deref())
    else {
        return true;
    };
    fields.iter().any(|field| {
        field.name.of(buf).eq_ignore_ascii_case(b"authorization")
            && field
                .value
                .of(buf)
                .strip_prefix(b"Bearer ")
                .is_some_and(|presented| constant_time_eq(presented.trim_ascii(), token.as_bytes()))
    })
}

/// Compares without an early exit, so the time taken does not say how much of a guess was
/// right. (The length may show; the token's length is not the secret.)
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn respond(stream: &mut TcpStream, reply: &Reply, head_only: bool) -> io::Result<()> {
    let mut body = reply.body.clone();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\nconnection: close\r\n\
         cache-control: no-store\r\n",
        reply.status,
        http1::reason_phrase(reply.status).unwrap_or(""),
        reply.content_type,
        body.len()
    );
    if let Some(allow) = reply.allow {
        head.push_str(&format!("allow: {allow}\r\n"));
    }
    if reply.challenge {
        head.push_str("www-authenticate: Bearer realm=\"coregate-admin\"\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body.as_bytes())?;
    }
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_in_full() {
        assert!(constant_time_eq(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcdeX", b"0123456789abcdef"));
        assert!(!constant_time_eq(b"0123456789abcde", b"0123456789abcdef"));
    }
}
