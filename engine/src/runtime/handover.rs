//! Handing the listening sockets of a running coregate to the process that replaces it (a
//! binary upgrade), as HAProxy's `expose-fd listeners` and Envoy's hot restart do.
//!
//! Owns the unix socket a running process offers its listeners on, the messages both sides
//! exchange, and what the new process does with the sockets it receives. The sockets are the
//! same kernel objects in both processes (`SCM_RIGHTS` passes open file descriptions, not
//! copies): connections queued in a socket's accept queue stay there, whichever process
//! accepts them, so nothing is refused or reset while the two processes overlap.
//!
//! The exchange, on a `SOCK_SEQPACKET` socket (one message per send, so a descriptor always
//! travels with the line that names it):
//!
//! ```text
//! new -> old   takeover 1 <pid>
//! old -> new   listener <name> <addr> <index> <count>   + socket <index> of that listener
//!              ...                                         (every socket of every listener)
//!              admin <addr>                              + the admin listener, if any
//!              end
//! new -> old   serving <pid>        once every shard of the new process serves
//! old -> new   draining             the old process stops accepting and drains
//! ```
//!
//! `coregate upgrade` asks the running process to start its successor: `upgrade 1`, answered
//! `started <pid>`, then `done <pid>` or `failed <why>`.
//!
//! Matching, in the new process: a listener of the new configuration takes the sockets of the
//! old listener of the same name when the address agrees (same IP; same port, or port 0 in
//! the new file). Socket `k` goes to shard `k mod shards`: with as many shards as before,
//! each shard gets the socket of the same index. With more shards, the new ones get sockets
//! of their own on the same address (joining the `SO_REUSEPORT` group). With fewer, the extra
//! sockets are kept and shared out (closing one would reset the connections in its queue), so
//! some shards serve two sockets' share of new connections until the next full restart.
//! Listeners that are new, renamed or moved are bound afresh; old listeners the new file no
//! longer has are closed once the old process has drained.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use socket2::{Domain, MaybeUninitSlice, MsgHdr, MsgHdrMut, SockAddr, Socket, Type};

use crate::config::ListenerConfig;
use crate::control::ListenerSocket;
use crate::control::plane::ControlPlane;
use crate::io::{ListenOptions, socket};

/// The protocol's version, in the first message of each side.
const VERSION: u32 = 1;

/// The longest message: a listener's name (64 bytes at most) and address fit many times.
const MAX_MESSAGE: usize = 1024;

/// How long the old process waits for its successor to serve after handing it the sockets:
/// the successor's own start-up timeout, with room for loading and resolving its file.
pub const SERVING_TIMEOUT: Duration = Duration::from_secs(60);

/// How long either side waits for a message that should come at once.
const STEP_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the offering thread looks at its stop flag while no one connects.
const ACCEPT_POLL: Duration = Duration::from_millis(200);

/// A `SOCK_SEQPACKET` unix socket.
struct Packets(Socket);

impl Packets {
    /// Listens at `path`, which must not exist.
    fn listen(path: &Path) -> io::Result<Packets> {
        let socket = Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None)?;
        socket.bind(&SockAddr::unix(path)?)?;
        socket.listen(16)?;
        Ok(Packets(socket))
    }

    fn connect(path: &Path) -> io::Result<Packets> {
        let socket = Socket::new(Domain::UNIX, Type::SEQPACKET.cloexec(), None)?;
        socket.connect(&SockAddr::unix(path)?)?;
        Ok(Packets(socket))
    }

    /// The next connection, or `None` when none came within `timeout`.
    fn accept(&self, timeout: Duration) -> io::Result<Option<Packets>> {
        let mut fds = [libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout.as_millis() as libc::c_int) };
        if ready <= 0 {
            return Ok(None);
        }
        let (socket, _) = self.0.accept()?;
        Ok(Some(Packets(socket)))
    }

    /// Sends one message, with a descriptor attached when given.
    fn send(&self, text: &str, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let bufs = [IoSlice::new(text.as_bytes())];
        let mut control = [0u8; CONTROL_SPACE];
        let msg = MsgHdr::new().with_buffers(&bufs);
        let msg = match fd {
            None => msg,
            Some(fd) => {
                let len = rights(&mut control, fd.as_raw_fd());
                msg.with_control(&control[..len])
            }
        };
        self.0.sendmsg(&msg, libc::MSG_NOSIGNAL)?;
        Ok(())
    }

    /// The next message and the descriptor it carried; `None` when the other side closed.
    /// Gives up with `TimedOut` after `timeout`.
    fn recv(&self, timeout: Duration) -> io::Result<Option<(String, Option<OwnedFd>)>> {
        self.0.set_read_timeout(Some(timeout))?;
        let mut data = [MaybeUninit::<u8>::uninit(); MAX_MESSAGE];
        let mut control = [MaybeUninit::<u8>::uninit(); CONTROL_SPACE];
        let mut bufs = [MaybeUninitSlice::new(&mut data)];
        let mut msg = MsgHdrMut::new()
            .with_buffers(&mut bufs)
            .with_control(&mut control);
        let len = match self.0.recvmsg(&mut msg, libc::MSG_CMSG_CLOEXEC) {
            Ok(len) => len,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no answer in time"));
            }
            Err(err) => return Err(err),
        };
        let control_len = msg.control_len();
        let truncated = msg.flags().is_truncated();
        // SAFETY: recvmsg initialised the first `control_len` bytes of `control`.
        let control: &[u8] =
            unsafe { std::slice::from_raw_parts(control.as_ptr().cast(), control_len) };
        let fd = received_fd(control);
        if len == 0 && fd.is_none() {
            return Ok(None);
        }
        if truncated {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "message too long",
            ));
        }
        // SAFETY: recvmsg initialised the first `len` bytes of `data`.
        let bytes: &[u8] = unsafe { std::slice::from_raw_parts(data.as_ptr().cast(), len) };
        let text = String::from_utf8_lossy(bytes).into_owned();
        Ok(Some((text, fd)))
    }
}

/// Room for one `SCM_RIGHTS` message carrying one descriptor.
const CONTROL_SPACE: usize = 64;

/// Writes an `SCM_RIGHTS` control message carrying `fd` into `buf`; returns its length.
fn rights(buf: &mut [u8; CONTROL_SPACE], fd: RawFd) -> usize {
    let fd_len = std::mem::size_of::<RawFd>() as u32;
    // SAFETY: CMSG_SPACE and CMSG_LEN only compute sizes.
    let (space, len) = unsafe { (libc::CMSG_SPACE(fd_len) as usize, libc::CMSG_LEN(fd_len)) };
    debug_assert!(space <= CONTROL_SPACE);
    // SAFETY: a msghdr whose control buffer is `buf` (at least CMSG_SPACE(4) bytes, checked
    // above), so CMSG_FIRSTHDR returns a header inside it and CMSG_DATA points at room for one
    // descriptor within `space`. Unaligned writes, as `buf` is a byte array.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_control = buf.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let header = libc::CMSG_FIRSTHDR(&msg);
        std::ptr::write_unaligned(
            header,
            libc::cmsghdr {
                cmsg_len: len as _,
                cmsg_level: libc::SOL_SOCKET,
                cmsg_type: libc::SCM_RIGHTS,
            },
        );
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<RawFd>(), fd);
    }
    space
}

/// The descriptor an `SCM_RIGHTS` control message carries, taking ownership of it. Any other
/// descriptors in it (a misbehaving peer) are closed.
fn received_fd(control: &[u8]) -> Option<OwnedFd> {
    let header_len = std::mem::size_of::<libc::cmsghdr>();
    if control.len() < header_len {
        return None;
    }
    // SAFETY: `control` holds at least one header, read unaligned.
    let header: libc::cmsghdr = unsafe { std::ptr::read_unaligned(control.as_ptr().cast()) };
    if header.cmsg_level != libc::SOL_SOCKET || header.cmsg_type != libc::SCM_RIGHTS {
        return None;
    }
    // SAFETY: CMSG_LEN only computes a size.
    let data_start = unsafe { libc::CMSG_LEN(0) } as usize;
    let data_end = (header.cmsg_len as usize).min(control.len());
    let fd_len = std::mem::size_of::<RawFd>();
    let mut fds = Vec::new();
    let mut at = data_start;
    while at + fd_len <= data_end {
        // SAFETY: within the received control bytes; descriptors are written unaligned.
        let fd: RawFd = unsafe { std::ptr::read_unaligned(control[at..].as_ptr().cast()) };
        // SAFETY: the kernel just installed this descriptor in our table for us.
        fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
        at += fd_len;
    }
    let mut fds = fds.into_iter();
    let first = fds.next();
    drop(fds.collect::<Vec<_>>());
    first
}

// ---------------------------------------------------------------------------------------------
// The new process: take the sockets, then say when it serves.

/// One listener as the old process ran it, with its sockets in index order.
#[derive(Debug)]
pub struct InheritedListener {
    pub name: Box<str>,
    pub addr: SocketAddr,
    pub sockets: Vec<OwnedFd>,
}

/// What the old process handed over.
#[derive(Debug, Default)]
pub struct Inherited {
    pub listeners: Vec<InheritedListener>,
    pub admin: Option<(SocketAddr, TcpListener)>,
}

impl Inherited {
    /// Takes the sockets of `name` if they are on the address `bind` asks for (same IP, and
    /// same port unless `bind` says port 0).
    pub(crate) fn take_listener(
        &mut self,
        name: &str,
        bind: SocketAddr,
    ) -> Option<InheritedListener> {
        let index = self
            .listeners
            .iter()
            .position(|l| &*l.name == name && same_address(l.addr, bind))?;
        Some(self.listeners.remove(index))
    }

    /// Takes the admin listener if it is on the address `bind` asks for.
    pub(crate) fn take_admin(&mut self, bind: SocketAddr) -> Option<TcpListener> {
        match self.admin.take() {
            Some((addr, listener)) if same_address(addr, bind) => Some(listener),
            other => {
                self.admin = other;
                None
            }
        }
    }
}

fn same_address(running: SocketAddr, bind: SocketAddr) -> bool {
    running.ip() == bind.ip() && (bind.port() == 0 || bind.port() == running.port())
}

/// A takeover in progress, from the new process's side.
pub struct Takeover {
    conn: Packets,
    /// The sockets received.
    pub inherited: Inherited,
}

impl Takeover {
    /// Connects to the running process at `path` and receives its listening sockets.
    pub fn connect(path: &Path) -> Result<Takeover, String> {
        let fail = |what: &str, err: io::Error| {
            format!(
                "takeover from the process at {}: {what}: {err}",
                path.display()
            )
        };
        let conn = Packets::connect(path).map_err(|err| fail("cannot connect", err))?;
        conn.send(&format!("takeover {VERSION} {}", std::process::id()), None)
            .map_err(|err| fail("cannot ask", err))?;
        let mut inherited = Inherited::default();
        loop {
            let Some((line, fd)) = conn
                .recv(STEP_TIMEOUT)
                .map_err(|err| fail("no answer", err))?
            else {
                return Err(format!(
                    "takeover from the process at {}: it closed the connection before handing \
                     over every socket",
                    path.display()
                ));
            };
            match parse_offer(&line, fd)? {
                Offer::Listener {
                    name,
                    addr,
                    index,
                    count,
                    fd,
                } => {
                    let at = match inherited.listeners.iter().position(|l| l.name == name) {
                        Some(at) => at,
                        None => {
                            inherited.listeners.push(InheritedListener {
                                name,
                                addr,
                                sockets: Vec::with_capacity(count),
                            });
                            inherited.listeners.len() - 1
                        }
                    };
                    let listener = &mut inherited.listeners[at];
                    if index != listener.sockets.len() {
                        return Err(format!(
                            "takeover: socket {index} of listener {:?} came out of order",
                            listener.name
                        ));
                    }
                    listener.sockets.push(fd);
                }
                Offer::Admin { addr, fd } => {
                    inherited.admin = Some((addr, TcpListener::from(fd)));
                }
                Offer::End => break,
                Offer::Refused(why) => {
                    return Err(format!(
                        "the process at {} refused the takeover: {why}",
                        path.display()
                    ));
                }
            }
        }
        Ok(Takeover { conn, inherited })
    }

    /// Tells the old process this one serves; it then stops accepting and drains. Returns once
    /// it acknowledged.
    pub fn serving(self) -> Result<(), String> {
        self.conn
            .send(&format!("serving {}", std::process::id()), None)
            .map_err(|err| format!("cannot tell the old process this one serves: {err}"))?;
        match self.conn.recv(STEP_TIMEOUT) {
            Ok(Some((line, _))) if line == "draining" => Ok(()),
            Ok(other) => Err(format!(
                "the old process answered {:?} instead of draining",
                other.map(|(line, _)| line)
            )),
            Err(err) => Err(format!("the old process did not confirm it drains: {err}")),
        }
    }
}

/// One message of the old process to the new.
enum Offer {
    Listener {
        name: Box<str>,
        addr: SocketAddr,
        index: usize,
        count: usize,
        fd: OwnedFd,
    },
    Admin {
        addr: SocketAddr,
        fd: OwnedFd,
    },
    End,
    Refused(String),
}

fn parse_offer(line: &str, fd: Option<OwnedFd>) -> Result<Offer, String> {
    let bad = || format!("takeover: unexpected message {line:?}");
    let mut words = line.split(' ');
    match words.next() {
        Some("listener") => {
            let name = words.next().ok_or_else(bad)?.into();
            let addr = words.next().and_then(|a| a.parse().ok()).ok_or_else(bad)?;
            let index = words.next().and_then(|a| a.parse().ok()).ok_or_else(bad)?;
            let count = words.next().and_then(|a| a.parse().ok()).ok_or_else(bad)?;
            let fd = fd.ok_or_else(|| format!("takeover: {line:?} came without its socket"))?;
            Ok(Offer::Listener {
                name,
                addr,
                index,
                count,
                fd,
            })
        }
        Some("admin") => {
            let addr = words.next().and_then(|a| a.parse().ok()).ok_or_else(bad)?;
            let fd = fd.ok_or_else(|| format!("takeover: {line:?} came without its socket"))?;
            Ok(Offer::Admin { addr, fd })
        }
        Some("end") => Ok(Offer::End),
        Some("refused") => Ok(Offer::Refused(
            line.strip_prefix("refused ").unwrap_or("").to_owned(),
        )),
        _ => Err(bad()),
    }
}

/// The sockets of one listener for each shard: socket `k` to shard `k mod shards`, and a new
/// socket on the same address for each shard that got none. Returns the sockets per shard and
/// every socket in index order (the control plane keeps them for the next handover).
pub(crate) fn adopt(
    config: &ListenerConfig,
    inherited: InheritedListener,
    shards: usize,
) -> Result<(Vec<Vec<ListenerSocket>>, Vec<OwnedFd>), String> {
    let options = ListenOptions {
        backlog: config.backlog,
        defer_accept: config.defer_accept,
    };
    let mut sockets = inherited.sockets;
    while sockets.len() < shards {
        let fd = socket::bind_unlistened(inherited.addr, options).map_err(|err| {
            format!(
                "listener {:?}: cannot bind another socket on {}: {err}",
                config.name, inherited.addr
            )
        })?;
        sockets.push(fd);
    }
    let mut per_shard: Vec<Vec<ListenerSocket>> = (0..shards).map(|_| Vec::new()).collect();
    let mut copies = Vec::with_capacity(sockets.len());
    for (k, fd) in sockets.into_iter().enumerate() {
        copies.push(
            fd.try_clone()
                .map_err(|err| format!("listener {:?}: {err}", config.name))?,
        );
        per_shard[k % shards].push(ListenerSocket {
            config: config.clone(),
            fd,
        });
    }
    Ok((per_shard, copies))
}

// ---------------------------------------------------------------------------------------------
// The old process: offer the sockets, wait until the successor serves.

/// What the offering thread tells the process's main loop.
pub enum HandoverEvent {
    /// `coregate upgrade` asked for a successor: start one, and answer on the request.
    UpgradeAsked(UpgradeRequest),
    /// The successor serves: stop accepting and drain.
    HandedOver { pid: u32 },
    /// A takeover began but did not finish; this process keeps serving.
    TakeoverFailed(String),
}

/// A `coregate upgrade` waiting for its answer.
pub struct UpgradeRequest(Packets);

impl UpgradeRequest {
    /// Answers one line (`started <pid>`, `done <pid>`, `failed <why>`); an asker that went away
    /// is no reason to stop.
    pub fn answer(&self, line: &str) {
        let _ = self.0.send(line, None);
    }
}

/// Offers this process's listeners on a unix socket, from a thread of its own.
pub(crate) struct Offering {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Offering {
    /// Listens at `path` (a stale socket file left by a process that is gone is replaced; a
    /// live process there is an error) and serves takeovers until dropped.
    pub(crate) fn start(
        path: &Path,
        plane: Arc<ControlPlane>,
        admin: Option<(SocketAddr, Arc<TcpListener>)>,
        events: Sender<HandoverEvent>,
        replace: bool,
    ) -> Result<Offering, String> {
        if !replace {
            refuse_if_offered(path)?;
        }
        let _ = std::fs::remove_file(path);
        let listener = Packets::listen(path)
            .map_err(|err| format!("cannot listen for upgrades at {}: {err}", path.display()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("coregate-handover".into())
            .spawn({
                let stop = stop.clone();
                move || offer_loop(listener, plane, admin, events, stop)
            })
            .map_err(|err| format!("cannot start the handover thread: {err}"))?;
        Ok(Offering {
            path: path.to_path_buf(),
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Offering {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // The socket file stays: after a handover it is the successor's.
    }
}

fn offer_loop(
    listener: Packets,
    plane: Arc<ControlPlane>,
    admin: Option<(SocketAddr, Arc<TcpListener>)>,
    events: Sender<HandoverEvent>,
    stop: Arc<AtomicBool>,
) {
    let mut handed_over: Option<u32> = None;
    while !stop.load(Ordering::Acquire) {
        let conn = match listener.accept(ACCEPT_POLL) {
            Ok(Some(conn)) => conn,
            Ok(None) => continue,
            Err(err) => {
                eprintln!("coregate: upgrade socket: accept: {err}");
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
        };
        let Ok(Some((line, _))) = conn.recv(STEP_TIMEOUT) else {
            continue;
        };
        let mut words = line.split(' ');
        let (kind, version) = (words.next(), words.next());
        if version != Some(&*VERSION.to_string()) {
            let _ = conn.send(
                &format!("refused this coregate speaks version {VERSION} of the handover"),
                None,
            );
            continue;
        }
        match kind {
            Some("upgrade") => {
                if let Some(pid) = handed_over {
                    let _ = conn.send(&format!("failed already handed over to pid {pid}"), None);
                    continue;
                }
                if events
                    .send(HandoverEvent::UpgradeAsked(UpgradeRequest(conn)))
                    .is_err()
                {
                    return;
                }
            }
            Some("takeover") => {
                if let Some(pid) = handed_over {
                    let _ = conn.send(&format!("refused already handed over to pid {pid}"), None);
                    continue;
                }
                let event = match offer(&conn, &plane, admin.as_ref()) {
                    Ok(pid) => {
                        handed_over = Some(pid);
                        HandoverEvent::HandedOver { pid }
                    }
                    Err(why) => HandoverEvent::TakeoverFailed(why),
                };
                if events.send(event).is_err() {
                    return;
                }
            }
            _ => {
                let _ = conn.send("refused unknown request", None);
            }
        }
    }
}

/// Hands every listening socket to the process on `conn` and waits until it serves; its pid.
fn offer(
    conn: &Packets,
    plane: &ControlPlane,
    admin: Option<&(SocketAddr, Arc<TcpListener>)>,
) -> Result<u32, String> {
    let send = |line: &str, fd: Option<BorrowedFd<'_>>| {
        conn.send(line, fd)
            .map_err(|err| format!("handing over the sockets: {err}"))
    };
    for (name, addr, sockets) in plane.handover_sockets() {
        let count = sockets.len();
        for (index, fd) in sockets.iter().enumerate() {
            use std::os::fd::AsFd;
            send(
                &format!("listener {name} {addr} {index} {count}"),
                Some(fd.as_fd()),
            )?;
        }
    }
    if let Some((addr, listener)) = admin {
        use std::os::fd::AsFd;
        send(&format!("admin {addr}"), Some(listener.as_fd()))?;
    }
    send("end", None)?;
    let deadline = Instant::now() + SERVING_TIMEOUT;
    let answer = conn
        .recv(deadline.saturating_duration_since(Instant::now()))
        .map_err(|err| format!("the new process did not say it serves: {err}"))?;
    match answer {
        Some((line, _)) => match line
            .strip_prefix("serving ")
            .and_then(|pid| pid.parse().ok())
        {
            Some(pid) => {
                let _ = conn.send("draining", None);
                Ok(pid)
            }
            None => Err(format!("the new process answered {line:?}")),
        },
        None => Err("the new process went away before it served".into()),
    }
}

/// An error when a live coregate offers its listeners at `path`: a second process started
/// there without taking over would share its ports (`SO_REUSEPORT` lets it). Check before
/// binding anything.
pub fn refuse_if_offered(path: &Path) -> Result<(), String> {
    match Packets::connect(path) {
        Ok(_) => Err(format!(
            "another coregate offers its listeners at {}: take them over with --takeover, or \
             give this one another --upgrade-socket",
            path.display()
        )),
        Err(_) => Ok(()),
    }
}

/// Asks the coregate at `path` to start its successor (`coregate upgrade`); calls `progress`
/// with each line it answers, and returns the last one.
pub fn request_upgrade(path: &Path, mut progress: impl FnMut(&str)) -> Result<String, String> {
    let conn = Packets::connect(path)
        .map_err(|err| format!("cannot reach coregate at {}: {err}", path.display()))?;
    conn.send(&format!("upgrade {VERSION}"), None)
        .map_err(|err| format!("cannot ask coregate at {}: {err}", path.display()))?;
    let deadline = Instant::now() + SERVING_TIMEOUT + STEP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match conn.recv(left) {
            Ok(Some((line, _))) => {
                progress(&line);
                if line.starts_with("done ")
                    || line.starts_with("failed ")
                    || line.starts_with("refused ")
                {
                    return Ok(line);
                }
            }
            Ok(None) => {
                return Err("the running coregate closed the connection without an answer".into());
            }
            Err(err) => return Err(format!("no answer from the running coregate: {err}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Packets, Packets) {
        let (a, b) = Socket::pair(Domain::UNIX, Type::SEQPACKET, None).expect("socketpair");
        (Packets(a), Packets(b))
    }

    #[test]
    fn a_descriptor_travels_with_its_line() {
        let (old, new) = pair();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        use std::os::fd::AsFd;
        old.send(&format!("admin {addr}"), Some(listener.as_fd()))
            .unwrap();
        old.send("end", None).unwrap();
        let (line, fd) = new.recv(STEP_TIMEOUT).unwrap().unwrap();
        assert_eq!(line, format!("admin {addr}"));
        let received = TcpListener::from(fd.expect("a descriptor"));
        // The same socket: a connection to it is accepted from either descriptor.
        assert_eq!(received.local_addr().unwrap(), addr);
        let _client = std::net::TcpStream::connect(addr).unwrap();
        received.accept().unwrap();
        let (line, fd) = new.recv(STEP_TIMEOUT).unwrap().unwrap();
        assert_eq!((line.as_str(), fd.is_none()), ("end", true));
        drop(old);
        assert!(new.recv(STEP_TIMEOUT).unwrap().is_none());
    }

    #[test]
    fn sockets_go_to_shard_k_mod_shards() {
        let config = ListenerConfig {
            name: "public".into(),
            bind: "127.0.0.1:0".parse().unwrap(),
            backlog: 16,
            defer_accept: false,
            tls: None,
        };
        let bind = |n: usize| -> InheritedListener {
            let first = socket::bind_unlistened(
                config.bind,
                ListenOptions {
                    backlog: 16,
                    defer_accept: false,
                },
            )
            .unwrap();
            let addr = socket::local_addr(first.as_raw_fd()).unwrap();
            let mut sockets = vec![first];
            for _ in 1..n {
                sockets.push(
                    socket::bind_unlistened(
                        addr,
                        ListenOptions {
                            backlog: 16,
                            defer_accept: false,
                        },
                    )
                    .unwrap(),
                );
            }
            InheritedListener {
                name: "public".into(),
                addr,
                sockets,
            }
        };
        // Fewer shards than sockets: every socket is kept, shared out.
        let (per_shard, copies) = adopt(&config, bind(3), 2).unwrap();
        assert_eq!(per_shard.iter().map(Vec::len).collect::<Vec<_>>(), [2, 1]);
        assert_eq!(copies.len(), 3);
        // More shards: the new ones get sockets of their own on the same address.
        let inherited = bind(1);
        let addr = inherited.addr;
        let (per_shard, copies) = adopt(&config, inherited, 3).unwrap();
        assert_eq!(
            per_shard.iter().map(Vec::len).collect::<Vec<_>>(),
            [1, 1, 1]
        );
        assert_eq!(copies.len(), 3);
        for sockets in &per_shard {
            assert_eq!(socket::local_addr(sockets[0].fd.as_raw_fd()).unwrap(), addr);
        }
    }

    #[test]
    fn listeners_match_by_name_and_address() {
        let addr: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let mut inherited = Inherited {
            listeners: vec![InheritedListener {
                name: "public".into(),
                addr,
                sockets: vec![],
            }],
            admin: None,
        };
        assert!(inherited.take_listener("other", addr).is_none());
        assert!(
            inherited
                .take_listener("public", "127.0.0.1:8081".parse().unwrap())
                .is_none()
        );
        assert!(
            inherited
                .take_listener("public", "0.0.0.0:8080".parse().unwrap())
                .is_none()
        );
        assert!(
            inherited
                .take_listener("public", "127.0.0.1:0".parse().unwrap())
                .is_some()
        );
        assert!(inherited.listeners.is_empty());
    }
}
