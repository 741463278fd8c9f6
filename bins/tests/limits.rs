//! Running out of file descriptors: a coregate started with a small `RLIMIT_NOFILE` keeps
//! running when accepting fails with EMFILE, says so, backs off, and serves again once
//! descriptors are free.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const CONFIG: &str = r#"
[runtime]
cores = "0"
buffers_per_shard = 64

[runtime.glommio]
io_memory = "1MiB"

[[listener]]
name = "public"
bind = "127.0.0.1:0"

[[route]]
path = "/healthz"
respond = { status = 200, body = "ok\n" }
"#;

/// The descriptors coregate may hold: its rings, eventfds and listener take about twenty.
const NOFILE: u64 = 48;

fn healthz(addr: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

#[test]
fn emfile_pauses_accepting_without_crashing() {
    let dir = std::env::temp_dir().join(format!("coregate-limits-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("limits.toml");
    std::fs::write(&path, CONFIG).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_coregate"));
    command
        .args(["run", "--config"])
        .arg(&path)
        .stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches only the child about to exec.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: NOFILE,
                rlim_max: NOFILE,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (lines_tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    let addr = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("coregate prints where it listens");
        if let Some(rest) = line.split("on http://").nth(1) {
            break rest.trim().to_owned();
        }
    };
    assert!(healthz(&addr).is_some_and(|r| r.ends_with("ok\n")));

    // Hold more connections than coregate has descriptors for.
    let held: Vec<TcpStream> = (0..2 * NOFILE)
        .filter_map(|_| TcpStream::connect(&addr).ok())
        .collect();
    assert!(held.len() as u64 > NOFILE, "the kernel queued them all");
    let deadline = Instant::now() + Duration::from_secs(10);
    let complaint = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("coregate reports running out of descriptors");
        if line.contains("Too many open files") {
            break line;
        }
    };
    assert!(complaint.contains("pausing"), "{complaint}");
    assert_eq!(child.try_wait().unwrap(), None, "still running");

    // Free the descriptors: coregate serves again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if healthz(&addr).is_some_and(|r| r.ends_with("ok\n")) {
            break;
        }
        assert!(Instant::now() < deadline, "coregate never recovered");
        thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    let _ = std::fs::remove_dir_all(&dir);
}
