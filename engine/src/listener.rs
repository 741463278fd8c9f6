//! The accept loop of one listener on one shard: takes client connections from the shard's
//! `SO_REUSEPORT` socket and starts a connection task for each, up to the shard's connection cap.
//!
//! Never more accepts are in flight than the room left below the cap, so at the cap the kernel
//! keeps new clients in its backlog; none is accepted and then closed. At the cap, or when the
//! process runs out of descriptors (EMFILE/ENFILE) or memory, the loop stops taking connections
//! and retries after a pause that doubles up to [`MAX_BACKOFF`]; it never spins and never
//! exits. Draining ends the loop, and so does the listener's own stop event (a reload removed
//! or changed the listener, a successor process took its socket over): the connections its
//! accepts already took are served, the socket closes, and the clients still in the backlog
//! wait for whoever accepts next.
//!
//! On a TLS listener each connection starts its TLS session here, with the server
//! configuration of the shard's current snapshot (certificates as of the latest reload); the
//! handshake itself runs in the connection's task (`proxy/handshake.rs`), so a slow client's
//! handshake never holds up the accept loop.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::future;

use crate::context::{ConnContext, ListenerInfo, Scheme};
use crate::event::LocalEvent;
use crate::io::{Conn, HandshakeFailure, Listener};
use crate::proxy;
use crate::shard::Shard;
use crate::task::spawn;

/// First pause after running out of descriptors or reaching the connection cap.
pub const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// Longest pause between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// Accepts on `listener` until the shard drains or `stop` fires; every connection is served
/// with `info` as its listener's facts.
pub async fn accept_loop(
    shard: Rc<Shard>,
    mut listener: Listener,
    info: Rc<ListenerInfo>,
    stop: Rc<LocalEvent>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        if shard.draining() || stop.has_fired() {
            break;
        }
        let (open, max) = (shard.open_connections(), shard.max_connections());
        if open >= max {
            listener.pause();
            shard.io.sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            continue;
        }
        let accepted = future::or(async { Some(listener.accept(max - open).await) }, async {
            future::or(shard.drain_started(), stop.wait()).await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(conn)) if shard.open_connections() >= shard.max_connections() => {
                // Another listener of the shard took the last room meanwhile: this one waits.
                listener.hold(conn);
            }
            Some(Ok(conn)) => {
                backoff = MIN_BACKOFF;
                start_serving(&shard, &info, conn);
            }
            Some(Err(err)) if is_resource_exhaustion(&err) => {
                eprintln!(
                    "coregate: shard {}: accept on {}: {err}; pausing {backoff:?}",
                    shard.index,
                    listener.local_addr()
                );
                shard.io.sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            // The shard's I/O is shutting down.
            Some(Err(err)) if err.raw_os_error() == Some(libc::ECANCELED) => break,
            // ECONNABORTED and friends: that client is gone, the next one is fine.
            Some(Err(_)) => {}
        }
    }
    // What accepts under way still took is served, not closed; dropping the listener then
    // closes its socket through the ring.
    for conn in listener.finish().await {
        start_serving(&shard, &info, conn);
    }
}

/// Starts the task that serves a new connection (its TLS session first, on a TLS listener).
fn start_serving(shard: &Rc<Shard>, info: &Rc<ListenerInfo>, mut conn: Conn) {
    if info.scheme == Scheme::Https {
        let snapshot = shard.snapshot();
        let started = snapshot
            .tls_config(&info.name)
            .map(|config| conn.start_tls(config.clone()));
        if !matches!(started, Some(Ok(()))) {
            // A reload removed the listener's TLS between its accept and now.
            shard.metrics.tls_failure(HandshakeFailure::Protocol);
            return;
        }
    }
    spawn(proxy::serve(
        shard.clone(),
        conn,
        ConnContext::new(info.clone()),
    ));
}

fn is_resource_exhaustion(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}
