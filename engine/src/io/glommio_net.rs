//! The glommio mechanism: glommio's own `TcpListener`/`TcpStream` (readiness via glommio's rings,
//! then `recv`/`send` system calls). Kept as the baseline `runtime.io = "glommio"` selects.
//!
//! Deadlines map to glommio's per-stream read/write timeouts, which allocate a timer per
//! operation inside glommio: this mechanism is for comparison, not for the allocation-free path.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Instant;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};

use super::{BufferPool, Outbound, socket};

/// Wraps the shard's bound `SO_REUSEPORT` socket.
pub(super) fn listener(fd: OwnedFd) -> TcpListener {
    // SAFETY: the descriptor is a listening TCP socket we own; glommio takes it over.
    unsafe { TcpListener::from_raw_fd(socket::release(fd)) }
}

pub(super) async fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let stream = listener.accept().await.map_err(io::Error::from)?;
    // glommio does not set TCP_NODELAY on accepted streams.
    stream.set_nodelay(true).map_err(io::Error::from)?;
    let peer = stream.peer_addr().map_err(io::Error::from)?;
    Ok((stream, peer))
}

pub(super) async fn connect(addr: SocketAddr, deadline: Instant) -> io::Result<TcpStream> {
    let left = remaining(Some(deadline))?.unwrap_or_default();
    let stream = TcpStream::connect_timeout(addr, left)
        .await
        .map_err(io::Error::from)?;
    stream.set_nodelay(true).map_err(io::Error::from)?;
    Ok(stream)
}

pub(super) async fn recv(
    stream: &mut TcpStream,
    into: &mut [u8],
    deadline: Option<Instant>,
) -> io::Result<usize> {
    stream
        .set_read_timeout(remaining(deadline)?)
        .map_err(io::Error::from)?;
    stream.read(into).await
}

/// Writes every part, leaving `out` as it was; parts that fit are first gathered into one buffer
/// so the peer gets one segment (glommio's stream has no vectored write).
pub(super) async fn send(
    stream: &mut TcpStream,
    out: &mut Outbound,
    pool: &Rc<BufferPool>,
    deadline: Option<Instant>,
) -> io::Result<()> {
    stream
        .set_write_timeout(remaining(deadline)?)
        .map_err(io::Error::from)?;
    let total = out.len_bytes();
    let parts = out.iter().count();
    if parts > 1 && total <= pool.buf_size() {
        if let Some(mut joined) = pool.take() {
            let mut at = 0;
            for part in out.iter() {
                let bytes = &part.buf.as_slice()[part.start as usize..part.end as usize];
                joined.as_mut_slice()[at..at + bytes.len()].copy_from_slice(bytes);
                at += bytes.len();
            }
            return stream.write_all(&joined.as_slice()[..at]).await;
        }
    }
    for part in out.iter() {
        stream
            .write_all(&part.buf.as_slice()[part.start as usize..part.end as usize])
            .await?;
    }
    Ok(())
}

/// Time left until `deadline`; an error once it passed.
fn remaining(deadline: Option<Instant>) -> io::Result<Option<std::time::Duration>> {
    match deadline {
        None => Ok(None),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
            } else {
                Ok(Some(left))
            }
        }
    }
}
