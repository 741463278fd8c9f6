//! Active health checks as the health thread runs them: an HTTP/1.1 `GET` per endpoint, many
//! at once on non-blocking sockets and one `poll(2)`, so a check that hangs (an endpoint that
//! drops packets) delays no other check and no verdict.
//!
//! A check passes when a response's status line arrives within its timeout with a status the
//! upstream expects; anything else (refused, reset, timed out, garbage) fails it. The request
//! asks the endpoint to close (`connection: close`), so no connection outlives its check.
//!
//! These are the control plane's own sockets, on its own thread, like the admin API's: a
//! shard's sockets all go through its ring (`crate::io`), never through here.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::upstream::HealthCheck;

/// How long one round of the health thread waits on the checks in progress.
pub const POLL_WAIT: Duration = Duration::from_millis(10);

/// The most of a response read: its status line is all a check looks at.
const MAX_RESPONSE: usize = 1024;

/// Where a check is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Connecting,
    Sending,
    Receiving,
}

/// One check of one endpoint, in progress.
pub struct Probe {
    upstream: Box<str>,
    endpoint: SocketAddr,
    /// `None`: the check failed before it could start (no socket).
    stream: Option<TcpStream>,
    stage: Stage,
    request: Vec<u8>,
    written: usize,
    response: Vec<u8>,
    statuses: Vec<(u16, u16)>,
    deadline: Instant,
}

impl Probe {
    /// Starts checking `endpoint` of `upstream` (a non-blocking connect); ends by `deadline`.
    pub fn start(
        upstream: Box<str>,
        endpoint: SocketAddr,
        check: &HealthCheck,
        deadline: Instant,
    ) -> Probe {
        let host = match &check.host {
            Some(host) => host.to_string(),
            None => endpoint.to_string(),
        };
        let request = format!(
            "GET {} HTTP/1.1\r\nhost: {host}\r\nuser-agent: coregate-health-check\r\n\
             connection: close\r\n\r\n",
            check.path
        )
        .into_bytes();
        Probe {
            upstream,
            endpoint,
            stream: connect(endpoint),
            stage: Stage::Connecting,
            request,
            written: 0,
            response: Vec::new(),
            statuses: check.statuses.clone(),
            deadline,
        }
    }

    fn events(&self) -> i16 {
        match self.stage {
            Stage::Connecting | Stage::Sending => libc::POLLOUT,
            Stage::Receiving => libc::POLLIN,
        }
    }

    /// Moves on after `poll` said the socket is ready; `Some(passed)` once the check is over.
    fn advance(&mut self) -> Option<bool> {
        let stream = self.stream.as_mut()?;
        loop {
            match self.stage {
                Stage::Connecting => match stream.take_error() {
                    Ok(None) => self.stage = Stage::Sending,
                    _ => return Some(false),
                },
                Stage::Sending => match stream.write(&self.request[self.written..]) {
                    Ok(n) => {
                        self.written += n;
                        if self.written == self.request.len() {
                            self.stage = Stage::Receiving;
                        }
                    }
                    Err(err) if err.kind() == ErrorKind::WouldBlock => return None,
                    Err(_) => return Some(false),
                },
                Stage::Receiving => {
                    let mut chunk = [0u8; 512];
                    match stream.read(&mut chunk) {
                        Ok(0) => {
                            return Some(verdict(&self.response, &self.statuses) == Some(true));
                        }
                        Ok(n) => {
                            self.response.extend_from_slice(&chunk[..n]);
                            if let Some(passed) = verdict(&self.response, &self.statuses) {
                                return Some(passed);
                            }
                            if self.response.len() >= MAX_RESPONSE {
                                return Some(false);
                            }
                        }
                        Err(err) if err.kind() == ErrorKind::WouldBlock => return None,
                        Err(_) => return Some(false),
                    }
                }
            }
        }
    }
}

/// Whether the status line received so far passes; `None` until it is complete.
fn verdict(response: &[u8], statuses: &[(u16, u16)]) -> Option<bool> {
    let end = response.windows(2).position(|w| w == b"\r\n")?;
    Some(status(&response[..end]).is_some_and(|status| {
        statuses
            .iter()
            .any(|&(low, high)| (low..=high).contains(&status))
    }))
}

/// The status of an HTTP/1.x status line.
fn status(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/1.")?;
    let code = rest.get(2..5)?;
    if rest.get(1) != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

/// A non-blocking connect in progress, or `None` when it failed at once.
fn connect(endpoint: SocketAddr) -> Option<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(endpoint),
        Type::STREAM.cloexec(),
        Some(Protocol::TCP),
    )
    .ok()?;
    socket.set_nonblocking(true).ok()?;
    let _ = socket.set_nodelay(true);
    match socket.connect(&endpoint.into()) {
        Ok(()) => {}
        Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(_) => return None,
    }
    Some(socket.into())
}

/// The checks in progress.
#[derive(Default)]
pub struct Prober {
    probes: Vec<Probe>,
}

impl Prober {
    pub fn add(&mut self, probe: Probe) {
        self.probes.push(probe);
    }

    pub fn is_empty(&self) -> bool {
        self.probes.is_empty()
    }

    /// Waits up to `wait` for any check to make progress; returns the checks that ended:
    /// `(upstream, endpoint, passed)`.
    pub fn poll(&mut self, wait: Duration) -> Vec<(Box<str>, SocketAddr, bool)> {
        let mut fds: Vec<libc::pollfd> = self
            .probes
            .iter()
            .map(|probe| libc::pollfd {
                fd: probe.stream.as_ref().map_or(-1, |s| s.as_raw_fd()),
                events: probe.events(),
                revents: 0,
            })
            .collect();
        let nothing_to_wait_for = self.probes.iter().any(|p| p.stream.is_none());
        let timeout = if nothing_to_wait_for {
            0
        } else {
            wait.as_millis().min(i32::MAX as u128) as i32
        };
        // SAFETY: `fds` is a valid array of `fds.len()` pollfd structures for the whole call.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        let now = Instant::now();
        let mut ended = Vec::new();
        let mut index = 0;
        self.probes.retain_mut(|probe| {
            let revents = fds.get(index).map_or(0, |fd| fd.revents);
            index += 1;
            let outcome = if probe.stream.is_none() {
                Some(false)
            } else if ready > 0 && revents != 0 {
                probe.advance()
            } else {
                None
            };
            let outcome = outcome.or_else(|| (now >= probe.deadline).then_some(false));
            match outcome {
                Some(passed) => {
                    ended.push((probe.upstream.clone(), probe.endpoint, passed));
                    false
                }
                None => true,
            }
        });
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn check(statuses: Vec<(u16, u16)>) -> HealthCheck {
        HealthCheck {
            path: "/healthz".into(),
            host: Some("api.internal".into()),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 1,
            fall: 1,
            statuses,
        }
    }

    fn run(prober: &mut Prober) -> Vec<(Box<str>, SocketAddr, bool)> {
        let mut ended = Vec::new();
        while !prober.is_empty() {
            ended.extend(prober.poll(POLL_WAIT));
        }
        ended
    }

    #[test]
    fn status_lines_are_read_strictly() {
        assert_eq!(status(b"HTTP/1.1 204 No Content"), Some(204));
        assert_eq!(status(b"HTTP/1.0 500"), Some(500));
        assert_eq!(status(b"HTTP/2 200"), None);
        assert_eq!(status(b"HTTP/1.1 20x"), None);
    }

    #[test]
    fn a_check_passes_on_an_expected_status_and_fails_otherwise() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let mut heads = Vec::new();
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut head = [0u8; 512];
                let n = stream.read(&mut head).unwrap();
                heads.push(String::from_utf8_lossy(&head[..n]).into_owned());
                let response = format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n");
                stream.write_all(response.as_bytes()).unwrap();
            }
            heads
        });
        let mut prober = Prober::default();
        let deadline = Instant::now() + Duration::from_secs(5);
        prober.add(Probe::start(
            "up".into(),
            addr,
            &check(vec![(200, 299)]),
            deadline,
        ));
        assert_eq!(run(&mut prober), vec![("up".into(), addr, true)]);
        prober.add(Probe::start(
            "up".into(),
            addr,
            &check(vec![(200, 299)]),
            deadline,
        ));
        assert_eq!(run(&mut prober), vec![("up".into(), addr, false)]);
        let heads = server.join().unwrap();
        assert!(
            heads[0].starts_with("GET /healthz HTTP/1.1\r\nhost: api.internal\r\n"),
            "{}",
            heads[0]
        );
    }

    #[test]
    fn a_refused_or_silent_endpoint_fails_within_the_timeout() {
        let refused = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        // Accepts (the kernel does) but never answers.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let mut prober = Prober::default();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(300);
        prober.add(Probe::start(
            "up".into(),
            refused,
            &check(vec![(200, 399)]),
            deadline,
        ));
        prober.add(Probe::start(
            "up".into(),
            silent_addr,
            &check(vec![(200, 399)]),
            deadline,
        ));
        let mut ended = run(&mut prober);
        ended.sort_by_key(|(_, addr, _)| *addr == silent_addr);
        assert_eq!(
            ended,
            vec![
                ("up".into(), refused, false),
                ("up".into(), silent_addr, false)
            ]
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
