//! Socket creation and options, with socket2: the shard's `SO_REUSEPORT` listeners, accepted
//! client sockets and upstream sockets. Only the io module calls this.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// How a listener socket is set up.
#[derive(Clone, Copy, Debug)]
pub struct ListenOptions {
    /// Length of the accept queue (`listen(2)` backlog; the kernel caps it at somaxconn).
    pub backlog: u32,
    /// `TCP_DEFER_ACCEPT`: wake the accept only once the client sent data.
    pub defer_accept: bool,
}

/// Binds a listening socket that other shards bind too (`SO_REUSEPORT`): the kernel spreads new
/// connections over the shards' sockets by a hash of the 4-tuple.
pub fn bind_listener(addr: SocketAddr, options: ListenOptions) -> io::Result<OwnedFd> {
    let fd = bind_unlistened(addr, options)?;
    listen(&fd, options.backlog)?;
    Ok(fd)
}

/// Starts listening on a socket [`bind_unlistened`] bound. Until then it takes no connection
/// (none queues on it), so a socket that is dropped before listening resets no client.
pub fn listen(fd: &OwnedFd, backlog: u32) -> io::Result<()> {
    SockRef::from(fd).listen(backlog.min(i32::MAX as u32) as i32)
}

/// Creates and binds a `SO_REUSEPORT` listener socket with its options, without listening.
pub fn bind_unlistened(addr: SocketAddr, options: ListenOptions) -> io::Result<OwnedFd> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    // Inherited by accepted sockets on Linux; set again on each accepted socket to be certain.
    socket.set_nodelay(true)?;
    if options.defer_accept {
        let seconds: libc::c_int = 1;
        // SAFETY: setsockopt with a valid int option value.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_DEFER_ACCEPT,
                &seconds as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// Prepares an accepted socket: `TCP_NODELAY`, so a response written in one piece leaves at once
/// instead of waiting for the peer's delayed ACK (40 ms on Linux).
pub fn configure_accepted(fd: RawFd) -> io::Result<()> {
    // SAFETY: `fd` is a live socket owned by the caller; SockRef does not close it.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = SockRef::from(&fd);
    sock.set_nodelay(true)
}

/// The peer address of a connected socket.
pub fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: as above.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = SockRef::from(&fd);
    sock.peer_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "peer is not an IP socket"))
}

/// The local address of a socket.
pub fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: as above.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let sock = SockRef::from(&fd);
    sock.local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "not an IP socket"))
}

/// A new socket for an upstream connection, in blocking mode (io_uring does its own readiness
/// handling; a non-blocking socket would make it return `EAGAIN` instead) with `TCP_NODELAY`.
pub fn upstream_socket(addr: SocketAddr) -> io::Result<OwnedFd> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )?;
    socket.set_nodelay(true)?;
    Ok(socket.into())
}

/// Shuts a connected socket down in both directions, from outside the task that owns it: its
/// pending receive completes with end-of-file and the task closes it (used to drain idle
/// keep-alive connections).
pub fn shutdown(fd: RawFd) {
    // SAFETY: shutdown(2) on a descriptor the caller knows to be open; errors are irrelevant.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// Takes ownership of a descriptor returned by the kernel (accept).
///
/// # Safety
/// `fd` must be open and owned by nobody else.
pub unsafe fn own(fd: RawFd) -> OwnedFd {
    // SAFETY: forwarded to the caller.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Gives up ownership, for handing a descriptor to glommio or the ring.
pub fn release(fd: OwnedFd) -> RawFd {
    fd.into_raw_fd()
}
