//! The `coregate` binary as operators use it: `check` exit codes and messages, `run` serving over
//! real sockets and draining to exit 0 on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coregate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const GOOD: &str = r#"
[runtime]
cores = "0"

[[listener]]
name = "public"
bind = "127.0.0.1:0"

[[upstream]]
name = "api"
endpoints = ["127.0.0.1:9", "127.0.0.1:10"]

[[route]]
path_prefix = "/api/"
upstream = "api"

[[route]]
host = "*.example.com"
path = "/healthz"
respond = { status = 200, body = "ok\n" }
"#;

#[test]
fn check_accepts_a_good_file_and_prints_the_plan() {
    let path = write_config("good.toml", GOOD);
    let out = Command::new(env!("CARGO_BIN_EXE_coregate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("public"), "{stdout}");
    assert!(stdout.contains("127.0.0.1:0"), "{stdout}");
    assert!(stdout.contains("route"), "{stdout}");
    assert!(
        stdout.contains("memory       per idle connection "),
        "{stdout}"
    );
}

/// The memory report follows the file: request buffering adds the buffers a body may fill (a
/// chunked one decoded into buffers that keep room for chunk framing: 64 KiB takes five).
#[test]
fn check_reports_the_memory_of_a_connection_and_an_exchange() {
    let exchange_buffers = |buffering: &str| {
        let text = GOOD.replace(
            "upstream = \"api\"\n",
            &format!("upstream = \"api\"\nrequest_buffering = {buffering}\n"),
        );
        let path = write_config(&format!("memory-{}.toml", buffering.len()), &text);
        let out = Command::new(env!("CARGO_BIN_EXE_coregate"))
            .args(["check", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = stdout
            .lines()
            .find(|line| line.contains("per exchange a "))
            .unwrap_or_else(|| panic!("no exchange line in {stdout}"))
            .to_owned();
        let buffers = line
            .split("up to ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        buffers.parse::<usize>().unwrap()
    };
    assert_eq!(exchange_buffers("0"), 4);
    assert_eq!(exchange_buffers("\"64KiB\""), 9);
}

#[test]
fn check_names_file_line_and_key_of_each_error() {
    let bad = GOOD
        .replace("upstream = \"api\"", "upstream = \"apii\"")
        .replace("cores = \"0\"", "cores = \"0\"\nbogus = 1");
    let path = write_config("bad.toml", &bad);
    let out = Command::new(env!("CARGO_BIN_EXE_coregate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:"), "{stderr}");
    assert!(stderr.contains("route[1].upstream"), "{stderr}");
    assert!(stderr.contains("apii"), "{stderr}");
    assert!(stderr.contains("runtime.bogus"), "{stderr}");
    let missing = Command::new(env!("CARGO_BIN_EXE_coregate"))
        .args(["check", "--config", "/nonexistent/coregate.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/coregate.toml"));
}

/// Route header edits naming a field coregate writes itself (Host, X-Forwarded-*,
/// X-Request-Id) would forward two values; `check` names each one and fails.
#[test]
fn check_refuses_route_edits_of_fields_coregate_writes() {
    let bad = GOOD.replace(
        "upstream = \"api\"",
        "upstream = \"api\"\nadd_request_headers = { \"Host\" = \"internal\", \"X-Forwarded-Proto\" = \"https\" }",
    );
    let path = write_config("edits.toml", &bad);
    let out = Command::new(env!("CARGO_BIN_EXE_coregate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("edits.toml:") && stderr.contains("route[1].add_request_headers.Host: "),
        "{stderr}"
    );
    assert!(
        stderr.contains("route[1].add_request_headers.X-Forwarded-Proto: "),
        "{stderr}"
    );
}

/// `check --topology` against a recorded host tree: the plan, the host, and the warnings, each
/// with what to change; warnings leave the exit status 0.
#[test]
fn check_topology_reads_a_recorded_host_and_warns() {
    let path = write_config(
        "topology.toml",
        &GOOD.replace("cores = \"0\"", "cores = \"all\""),
    );
    let tree = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/hosts/edge-2node");
    let out = Command::new(env!("CARGO_BIN_EXE_coregate"))
        .args(["check", "--topology", "--host-root", tree, "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "shards       8, pinned to CPU 0-7 (this process may use CPU 0-7)",
        "host         8 CPUs online, 4 physical cores (SMT on), 2 NUMA nodes",
        "  node 0      CPU 0-1,4-5: 4 shards",
        "nic          eth0: up, NUMA node 1, 2 receive queues, 3 interrupts on CPU 0-7",
        "kernel       6.1.0-18-amd64; io_uring: not probed (a recorded tree)",
        "net          somaxconn 4096; tcp_migrate_req 0",
        "warnings     7 (each says what to change)",
        "LimitMEMLOCK=256M",
        "runtime.cores = \"physical\"",
        "runtime.cores = \"node1\"",
        "ethtool -L eth0 combined 8",
        "Set LimitNOFILE=",
        "sysctl -w net.ipv4.tcp_migrate_req=1",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // Planned on the recorded host: its topology decides what "physical" means.
    let physical = write_config(
        "physical.toml",
        &GOOD.replace("cores = \"0\"", "cores = \"node1,physical\""),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_coregate"))
        .args(["check", "--host-root", tree, "--config"])
        .arg(&physical)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("shards       2, pinned to CPU 2-3 (cores = \"node1,physical\";"),
        "{stdout}"
    );
}

#[test]
fn run_serves_and_drains_on_sigterm() {
    let path = write_config("run.toml", GOOD);
    let mut child = Command::new(env!("CARGO_BIN_EXE_coregate"))
        .args(["run", "--config"])
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    for _ in 0..10 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if let Some(rest) = line.split("on http://").nth(1) {
            addr = Some(rest.trim().to_string());
            break;
        }
    }
    let addr = addr.expect("coregate prints where it listens");
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(response.ends_with("\r\n\r\nok\n"), "{response}");

    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "exit status {status:?}");
}

/// Reads the daemon's stderr until a line containing `needle`; returns that line.
fn wait_for_line(stderr: &mut impl BufRead, needle: &str) -> String {
    for _ in 0..50 {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 {
            break;
        }
        if line.contains(needle) {
            return line;
        }
    }
    panic!("coregate never printed {needle:?}");
}

fn healthz_body(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

#[test]
fn sighup_and_the_reload_command_apply_a_new_file() {
    let admin = "\n[admin]\nbind = \"127.0.0.1:0\"\n";
    let version = |body: &str| {
        format!(
            "{}{admin}",
            GOOD.replace("body = \"ok\\n\"", &format!("body = \"{body}\""))
        )
    };
    let path = write_config("reload.toml", &version("v1"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_coregate"))
        .args(["run", "--config"])
        .arg(&path)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let listener = wait_for_line(&mut stderr, "listener \"public\" on http://");
    let addr = listener
        .split("on http://")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    let admin_line = wait_for_line(&mut stderr, "admin API on http://");
    let admin_addr = admin_line
        .split("on http://")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(healthz_body(&addr), "v1");

    // SIGHUP reloads the file.
    std::fs::write(&path, version("v2")).unwrap();
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let reloaded = wait_for_line(&mut stderr, "reloaded");
    assert!(
        reloaded.contains("generation 2") && reloaded.contains("SIGHUP"),
        "{reloaded}"
    );
    assert_eq!(healthz_body(&addr), "v2");

    // `coregate reload` asks the admin API.
    std::fs::write(&path, version("v3")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coregate"))
        .args(["reload", "--admin", &admin_addr, "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "reloaded: generation 3 runs on all 1 shard(s)\n");
    assert_eq!(healthz_body(&addr), "v3");

    // A bad file: the command names the mistake and exits 1; SIGHUP refuses it and the
    // running configuration keeps serving.
    std::fs::write(
        &path,
        version("v4").replace("upstream = \"api\"", "upstream = \"nope\""),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coregate"))
        .args(["reload", "--admin", &admin_addr, "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let message = String::from_utf8_lossy(&out.stderr);
    assert!(
        message.contains("reload.toml:") && message.contains("route[1].upstream"),
        "{message}"
    );
    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    let refused = wait_for_line(&mut stderr, "reload refused");
    assert!(refused.contains("keeps serving"), "{refused}");
    assert_eq!(healthz_body(&addr), "v3");

    // SAFETY: as above.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
}

/// The configuration the Debian package installs is valid, and the unit's stop timeout is
/// longer than its drain, so a stop lets in-flight requests finish before SIGKILL.
#[test]
fn the_packaged_configuration_and_unit_agree() {
    let debian = concat!(env!("CARGO_MANIFEST_DIR"), "/debian");
    let out = Command::new(env!("CARGO_BIN_EXE_coregate"))
        .args(["check", "--config"])
        .arg(format!("{debian}/coregate.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seconds = |text: &str, key: &str| -> u64 {
        let line = text
            .lines()
            .find(|line| line.trim_start().starts_with(key))
            .unwrap_or_else(|| panic!("no {key}"));
        let value = line
            .split(['=', '#'])
            .nth(1)
            .unwrap()
            .trim()
            .trim_matches('"');
        value.trim_end_matches('s').parse().unwrap()
    };
    let config = std::fs::read_to_string(format!("{debian}/coregate.toml")).unwrap();
    let unit = std::fs::read_to_string(format!("{debian}/coregate.service")).unwrap();
    assert!(seconds(&unit, "TimeoutStopSec") > seconds(&config, "drain"));
    for line in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "User=coregate",
        "ExecReload=/usr/bin/coregate check --config /etc/coregate/coregate.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "--upgrade-socket /run/coregate/upgrade.sock",
    ] {
        assert!(unit.contains(line), "the unit lacks {line}");
    }
}
