//! Binary upgrades as operators run them: `coregate run --upgrade-socket`, then `coregate
//! upgrade` (or SIGUSR2). Under keep-alive and new-connection load no connection is refused,
//! no answer is cut short and no request fails; a request and a WebSocket tunnel in flight on
//! the old process finish there; the old process exits 0; the new one serves on the same
//! port, whatever the shard counts of the two.
//!
//! A keep-alive connection the old process closes while it is idle (the drain closes idle
//! connections, as any HTTP/1.1 server may) is reopened and the request sent again, as RFC
//! 9112 section 9.3.1 lets clients do for a request that got no byte of an answer; the test
//! counts these reconnections apart.
//!
//! A *new* connection closed before a byte of its answer is a failure too. The old process's
//! accept loops stop by cancelling their accepts on the ring, and a connection the kernel
//! handed to an accept in the instant before the cancel took effect is served by the old
//! process (`io::Listener::finish`), as is a new connection's first request that was on its
//! way when the drain began. Refused connections, answers cut short, wrong answers, and
//! anything on a connection that had answers before are failures.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The test's own directory under the temporary directory.
fn dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coregate-upgrade-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Orphans (the successor, once the process that started it exits) become this process's
/// children, so the test can wait for them.
fn adopt_orphans() {
    // SAFETY: prctl with an integer argument.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Waits for process `pid` (a child or an adopted orphan) to exit; its exit code.
fn wait_pid(pid: i32) -> i32 {
    let mut status = 0;
    // SAFETY: waitpid on a process of ours with a valid status pointer.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid, "waitpid({pid})");
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    }
}

/// Kills the processes a test started when it ends early (a failed assertion), so none is
/// left serving.
struct Reaper(Vec<i32>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for &pid in &self.0 {
                signal(pid, libc::SIGKILL);
            }
        }
    }
}

fn signal(pid: i32, signal: i32) {
    // SAFETY: sending a signal to a process this test started.
    unsafe { libc::kill(pid, signal) };
}

// ---------------------------------------------------------------------------------------------
// The upstream

/// An upstream: `/slow` answers once released, `/ws` switches protocols and echoes, anything
/// else answers `ok` at once; keep-alive throughout.
struct Upstream {
    addr: SocketAddr,
    slow_seen: Arc<AtomicUsize>,
    release: Arc<AtomicBool>,
}

impl Upstream {
    fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let slow_seen = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(AtomicBool::new(false));
        let (seen, go) = (slow_seen.clone(), release.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (seen, go) = (seen.clone(), go.clone());
                thread::spawn(move || serve_upstream(stream, &seen, &go));
            }
        });
        Upstream {
            addr,
            slow_seen,
            release,
        }
    }
}

fn serve_upstream(mut stream: TcpStream, slow_seen: &AtomicUsize, release: &AtomicBool) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
        }
        let path = request_line.split(' ').nth(1).unwrap_or("/").to_owned();
        if path == "/ws" {
            let _ = stream.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
            );
            let mut buf = [0u8; 1024];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if stream.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        let body: &[u8] = if path == "/slow" {
            slow_seen.fetch_add(1, Ordering::SeqCst);
            while !release.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(5));
            }
            b"slow and complete"
        } else {
            b"ok"
        };
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
        if stream.write_all(head.as_bytes()).is_err() || stream.write_all(body).is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// coregate

/// A coregate started by the test, its stderr read line by line.
struct Daemon {
    child: Child,
    lines: Receiver<String>,
    /// Every line so far, for messages.
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn start(config: &PathBuf, socket: &PathBuf) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_coregate"))
            .args(["run", "--config"])
            .arg(config)
            .arg("--upgrade-socket")
            .arg(socket)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let keep = log.clone();
        thread::spawn(move || {
            for line in stderr.lines() {
                let Ok(line) = line else { return };
                keep.lock().unwrap().push(line.clone());
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Daemon { child, lines, log }
    }

    /// Waits for a line containing `needle` (from any of the processes sharing the stderr).
    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        panic!(
            "coregate never printed {needle:?}; it printed:\n{}",
            self.log.lock().unwrap().join("\n")
        );
    }

    fn addr(&self) -> SocketAddr {
        let line = self.wait_for("listener \"public\" on http://");
        line.split("http://")
            .nth(1)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

/// Runs `coregate upgrade`; the new process's pid.
fn upgrade(socket: &PathBuf) -> i32 {
    let out = Command::new(env!("CARGO_BIN_EXE_coregate"))
        .args(["upgrade", "--upgrade-socket"])
        .arg(socket)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "coregate upgrade failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .strip_prefix("upgraded: pid ")
        .and_then(|rest| rest.split(' ').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("unexpected answer: {stdout}"))
}

fn write_config(path: &PathBuf, cores: &str, upstream: SocketAddr) {
    std::fs::write(
        path,
        format!(
            r#"
[runtime]
cores = "{cores}"
buffers_per_shard = 256

[runtime.glommio]
io_memory = "256KiB"

[timeouts]
drain = "10s"

[[listener]]
name = "public"
bind = "127.0.0.1:0"

[[upstream]]
name = "up"
endpoints = ["{upstream}"]

[[route]]
path_prefix = "/"
upstream = "up"
"#
        ),
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Load

/// What the load saw.
#[derive(Default)]
struct Tally {
    ok: AtomicUsize,
    /// Keep-alive connections closed by the server while idle, whose request was sent again.
    reconnects: AtomicUsize,
    /// New connections closed before a byte of their answer (see the module docs).
    unanswered: Mutex<Vec<String>>,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        self.failures.lock().unwrap().push(what);
    }
}

/// Why reading a response ended early.
enum Incomplete {
    /// Closed or reset before a byte of the response arrived.
    Nothing(std::io::Error),
    Partial(String),
}

/// Sends `request` and reads one response; its status and body, and whether the server will
/// close.
fn exchange(stream: &mut TcpStream, request: &[u8]) -> Result<(u16, Vec<u8>, bool), Incomplete> {
    if let Err(err) = stream.write_all(request) {
        return Err(Incomplete::Nothing(err));
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) if got.is_empty() => {
                return Err(Incomplete::Nothing(ErrorKind::UnexpectedEof.into()));
            }
            Ok(0) => return Err(Incomplete::Partial("closed in the head".into())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) if got.is_empty() => return Err(Incomplete::Nothing(err)),
            Err(err) => return Err(Incomplete::Partial(format!("{err} in the head"))),
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let closing = head.contains("connection: close");
    let mut body = got[head_end..].to_vec();
    while body.len() < length {
        match stream.read(&mut buf) {
            Ok(0) => return Err(Incomplete::Partial("closed in the body".into())),
            Ok(n) => body.extend_from_slice(&buf[..n]),
            Err(err) => return Err(Incomplete::Partial(format!("{err} in the body"))),
        }
    }
    Ok((status, body, closing))
}

fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// One client reusing its connection for as long as the server keeps it.
fn keep_alive_client(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let request = b"GET /ka HTTP/1.1\r\nhost: t\r\n\r\n";
    let mut stream: Option<TcpStream> = None;
    while !stop.load(Ordering::Relaxed) {
        let reused = stream.is_some();
        let mut conn = match stream.take() {
            Some(conn) => conn,
            None => match connect(addr) {
                Ok(conn) => conn,
                Err(err) => {
                    tally.fail(format!("keep-alive connect: {err}"));
                    continue;
                }
            },
        };
        match exchange(&mut conn, request) {
            Ok((200, body, closing)) if body == b"ok" => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
                if !closing {
                    stream = Some(conn);
                }
            }
            Ok((status, body, _)) => tally.fail(format!(
                "keep-alive: {status} {:?}",
                String::from_utf8_lossy(&body)
            )),
            // The server closed the idle connection as the request went out: send it again.
            Err(Incomplete::Nothing(_)) if reused => {
                tally.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            Err(Incomplete::Nothing(err)) => tally
                .unanswered
                .lock()
                .unwrap()
                .push(format!("keep-alive, new connection: {err}")),
            Err(Incomplete::Partial(what)) => tally.fail(format!("keep-alive: {what}")),
        }
    }
}

/// One client opening a new connection for every request.
fn new_connection_client(addr: SocketAddr, stop: &AtomicBool, tally: &Tally) {
    let request = b"GET /new HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n";
    while !stop.load(Ordering::Relaxed) {
        let mut conn = match connect(addr) {
            Ok(conn) => conn,
            Err(err) => {
                tally.fail(format!("connect: {err}"));
                continue;
            }
        };
        match exchange(&mut conn, request) {
            Ok((200, body, _)) if body == b"ok" => {
                tally.ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, _, _)) => tally.fail(format!("new connection: status {status}")),
            Err(Incomplete::Nothing(err)) => tally
                .unanswered
                .lock()
                .unwrap()
                .push(format!("new connection: {err}")),
            Err(Incomplete::Partial(what)) => tally.fail(format!("new connection: {what}")),
        }
    }
}

/// Load running in the background until [`Load::finish`].
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    threads: Vec<thread::JoinHandle<()>>,
}

impl Load {
    fn start(addr: SocketAddr, keep_alive: usize, new_connections: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let mut threads = Vec::new();
        for n in 0..keep_alive + new_connections {
            let (stop, tally) = (stop.clone(), tally.clone());
            threads.push(thread::spawn(move || {
                if n < keep_alive {
                    keep_alive_client(addr, &stop, &tally);
                } else {
                    new_connection_client(addr, &stop, &tally);
                }
            }));
        }
        Load {
            stop,
            tally,
            threads,
        }
    }

    /// Waits until `more` requests succeeded after now.
    fn wait_for_more(&self, more: usize) {
        let target = self.tally.ok.load(Ordering::Relaxed) + more;
        let deadline = Instant::now() + TIMEOUT;
        while self.tally.ok.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < deadline,
                "the load stopped making progress"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stops the load and checks it: no failure, and at most `unanswered_bound` new
    /// connections closed unanswered. Returns a summary.
    fn finish(self, unanswered_bound: usize) -> String {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
        let failures = self.tally.failures.lock().unwrap().clone();
        let unanswered = self.tally.unanswered.lock().unwrap().clone();
        let ok = self.tally.ok.load(Ordering::Relaxed);
        assert!(
            failures.is_empty(),
            "{} of {} requests failed: {failures:#?}",
            failures.len(),
            ok + failures.len()
        );
        assert!(
            unanswered.len() <= unanswered_bound,
            "{} new connections closed unanswered (at most {unanswered_bound} expected): \
             {unanswered:#?}",
            unanswered.len()
        );
        format!(
            "{ok} requests, 0 failed; {} keep-alive reconnections after an idle close; {} new \
             connections closed unanswered as the old process stopped accepting",
            self.tally.reconnects.load(Ordering::Relaxed),
            unanswered.len()
        )
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn an_upgrade_under_load_refuses_nothing_and_lets_the_old_process_finish() {
    adopt_orphans();
    let dir = dir("load");
    let upstream = Upstream::start();
    let config = dir.join("coregate.toml");
    let socket = dir.join("upgrade.sock");
    write_config(&config, "0-1", upstream.addr);
    let mut old = Daemon::start(&config, &socket);
    let mut reaper = Reaper(vec![old.child.id() as i32]);
    let addr = old.addr();
    old.wait_for("upgrades on");

    // In flight on the old process: a request whose answer waits, and a tunnel.
    let slow = thread::spawn(move || {
        let mut conn = connect(addr).unwrap();
        exchange(&mut conn, b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
    });
    let mut tunnel = connect(addr).unwrap();
    tunnel
        .write_all(
            b"GET /ws HTTP/1.1\r\nhost: t\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
        )
        .unwrap();
    let mut head = [0u8; 512];
    let n = tunnel.read(&mut head).unwrap();
    assert!(
        head[..n].starts_with(b"HTTP/1.1 101"),
        "{:?}",
        String::from_utf8_lossy(&head[..n])
    );
    let mut echo = |text: &[u8]| {
        tunnel.write_all(text).unwrap();
        let mut got = vec![0u8; text.len()];
        tunnel.read_exact(&mut got).unwrap();
        assert_eq!(got, text);
    };
    echo(b"before");
    while upstream.slow_seen.load(Ordering::SeqCst) == 0 {
        thread::sleep(Duration::from_millis(5));
    }

    let load = Load::start(addr, 2, 2);
    load.wait_for_more(200);
    let new_pid = upgrade(&socket);
    reaper.0.push(new_pid);
    old.wait_for(&format!("handed over to pid {new_pid}"));
    // The new process serves while the old one drains.
    load.wait_for_more(200);

    // What was in flight on the old process finishes there.
    echo(b"after the upgrade");
    upstream.release.store(true, Ordering::SeqCst);
    match slow.join().unwrap() {
        Ok((status, body, closing)) => {
            assert_eq!((status, body.as_slice()), (200, &b"slow and complete"[..]));
            assert!(closing, "a draining process answers with connection: close");
        }
        Err(_) => panic!("the in-flight request did not finish"),
    }
    drop(tunnel);
    let status = old.child.wait().unwrap();
    assert!(status.success(), "the old process exits 0: {status:?}");

    // Only the new process is left, and it serves.
    load.wait_for_more(200);
    // One upgrade, two shards stopping.
    eprintln!("{}", load.finish(0));
    signal(new_pid, libc::SIGTERM);
    assert_eq!(wait_pid(new_pid), 0);
}

#[test]
fn upgrades_between_different_shard_counts_keep_every_socket() {
    adopt_orphans();
    let dir = dir("shards");
    let upstream = Upstream::start();
    let config = dir.join("coregate.toml");
    let socket = dir.join("upgrade.sock");
    write_config(&config, "0", upstream.addr);
    let mut first = Daemon::start(&config, &socket);
    let mut reaper = Reaper(vec![first.child.id() as i32]);
    let addr = first.addr();
    first.wait_for("upgrades on");
    let load = Load::start(addr, 1, 2);
    load.wait_for_more(100);

    // One shard to two: the second shard gets a socket of its own on the same port.
    write_config(&config, "0-1", upstream.addr);
    let second = upgrade(&socket);
    reaper.0.push(second);
    let note = first.wait_for("took over listener \"public\"");
    assert!(
        note.contains(&format!(
            "on {addr}: 1 socket for 2 shards (1 new socket for the added shards)"
        )),
        "{note}"
    );
    first.wait_for(&format!("handed over to pid {second}"));
    assert!(first.child.wait().unwrap().success());
    load.wait_for_more(100);

    // Two shards to one, by signal this time: both sockets are kept, on the one shard.
    write_config(&config, "0", upstream.addr);
    signal(second, libc::SIGUSR2);
    let note = first.wait_for("took over listener \"public\"");
    assert!(
        note.contains(&format!(
            "on {addr}: 2 sockets for 1 shard (the extra sockets shared out among the shards)"
        )),
        "{note}"
    );
    let line = first.wait_for("handed over to pid");
    let third: i32 = line
        .rsplit("pid ")
        .next()
        .and_then(|rest| rest.split(';').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    reaper.0.push(third);
    assert_eq!(wait_pid(second), 0);
    load.wait_for_more(100);

    // Two upgrades: one shard stopping, then two.
    eprintln!("{}", load.finish(0));
    signal(third, libc::SIGTERM);
    assert_eq!(wait_pid(third), 0);
}

/// A second `run` on the upgrade socket of a live coregate refuses to start (the two would
/// share the ports, as SO_REUSEPORT lets them); `--takeover` is how a second process starts.
#[test]
fn a_second_process_without_takeover_refuses_to_start() {
    let dir = dir("twice");
    let upstream = Upstream::start();
    let config = dir.join("coregate.toml");
    let socket = dir.join("upgrade.sock");
    write_config(&config, "0", upstream.addr);
    let mut first = Daemon::start(&config, &socket);
    let reaper = Reaper(vec![first.child.id() as i32]);
    let addr = first.addr();
    first.wait_for("upgrades on");
    let second = Command::new(env!("CARGO_BIN_EXE_coregate"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--upgrade-socket")
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("another coregate offers its listeners at")
            && stderr.contains("--takeover"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("running"),
        "it refused before starting a shard: {stderr}"
    );
    // The first one still serves.
    let mut conn = connect(addr).unwrap();
    assert!(matches!(
        exchange(&mut conn, b"GET /x HTTP/1.1\r\nhost: t\r\n\r\n"),
        Ok((200, _, _))
    ));
    signal(first.child.id() as i32, libc::SIGTERM);
    assert!(first.child.wait().unwrap().success());
    drop(reaper);
}
