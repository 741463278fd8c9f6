//! The access log end to end: one line per request with what client and upstream each saw, in
//! JSON and combined formats; a missing directory costs lines, never requests, and the log
//! resumes once the directory exists; a reload reopens the file (log rotation).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use coregate_tests::client::Client;
use coregate_tests::harness::{ConfigFile, Coregate, MECHANISMS, config};
use coregate_tests::upstream::{Recorded, Reply, Upstream, ok};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("coregate-log-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Waits (up to 5 s) until `path` holds at least `n` lines, and returns them.
fn lines(path: &Path, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{} holds {} lines, expected {n}:\n{text}",
            path.display(),
            lines.len()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

fn routes(log: &Path, format: &str) -> String {
    format!(
        r#"
[access_log]
path = "{}"
format = "{format}"
flush_interval = "20ms"

[[route]]
name = "api"
path_prefix = "/api/"
upstream = "up"

[[route]]
name = "health"
path = "/healthz"
respond = {{ status = 200, body = "ok" }}
"#,
        log.display()
    )
}

#[test]
fn json_lines_record_what_each_side_saw() {
    for io in MECHANISMS {
        let dir = temp_dir(&format!("json-{io}"));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("access.log");
        let upstream = Upstream::start(Arc::new(|_: &Recorded| Reply::Raw(ok(b"hello"))));
        let proxy = Coregate::start(&config(io, "0-1", upstream.addr(), &routes(&log, "json")));
        let mut client = Client::connect(proxy.addr());
        let forwarded = client.get(
            "/api/items?page=2",
            &[
                "x-request-id: given-id",
                "user-agent: test-agent/1",
                "referer: http://r/",
            ],
        );
        assert_eq!(forwarded.status, 200);
        assert_eq!(client.get("/api/other", &[]).status, 200);
        assert_eq!(client.get("/healthz", &[]).status, 200);
        assert_eq!(client.get("/missing", &[]).status, 404);

        let lines = lines(&log, 4);
        assert_eq!(lines.len(), 4, "{io}: one line per request");
        let entries: Vec<serde_json::Value> = lines
            .iter()
            .map(|line| serde_json::from_str(line).expect("each line is JSON"))
            .collect();
        let seen = upstream.requests();

        let first = &entries[0];
        assert_eq!(first["method"], "GET", "{io}");
        assert_eq!(first["path"], "/api/items?page=2", "{io}");
        assert_eq!(first["status"], 200);
        assert_eq!(first["route"], "api");
        assert_eq!(first["upstream"], upstream.addr().to_string());
        assert_eq!(first["request_id"], "given-id");
        assert_eq!(first["user_agent"], "test-agent/1");
        assert_eq!(first["referer"], "http://r/");
        assert_eq!(first["protocol"], "HTTP/1.1");
        assert_eq!(
            first["client"],
            client.stream().local_addr().unwrap().to_string(),
            "{io}: the client's address"
        );
        assert_eq!(
            first["bytes"].as_u64(),
            Some((forwarded.raw_head.len() + forwarded.body.len()) as u64),
            "{io}: bytes are what the client received"
        );
        let total = first["total_time"].as_f64().unwrap();
        let upstream_time = first["upstream_time"].as_f64().unwrap();
        assert!(upstream_time <= total, "{io}: {upstream_time} <= {total}");
        assert!(first["time"].as_str().unwrap().ends_with('Z'));

        // A request without an id gets one, and the upstream saw the same one.
        let generated = entries[1]["request_id"].as_str().unwrap();
        assert_eq!(generated.len(), 32, "{io}: {generated}");
        assert_eq!(seen[1].field("x-request-id"), Some(generated), "{io}");

        assert_eq!(entries[2]["route"], "health");
        assert_eq!(entries[2]["upstream"], serde_json::Value::Null);
        assert_eq!(entries[3]["status"], 404);
        assert_eq!(entries[3]["route"], serde_json::Value::Null);
        drop(proxy);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn combined_lines_read_like_nginx() {
    let dir = temp_dir("combined");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let upstream = Upstream::start(Arc::new(|_: &Recorded| Reply::Raw(ok(b"hello"))));
    let proxy = Coregate::start(&config(
        "uring",
        "0",
        upstream.addr(),
        &routes(&log, "combined"),
    ));
    let mut client = Client::connect(proxy.addr());
    client.get("/api/a\"b", &["user-agent: curl/8", "x-request-id: rid-1"]);
    let line = &lines(&log, 1)[0];
    let client_ip = client.stream().local_addr().unwrap().ip();
    let prefix = format!("{client_ip} - - [");
    assert!(line.starts_with(&prefix), "{line}");
    assert!(
        line.contains("] \"GET /api/a\\x22b HTTP/1.1\" 200 "),
        "quotes from the network are escaped: {line}"
    );
    assert!(
        line.contains(&format!(
            "\"-\" \"curl/8\" rid=rid-1 route=api upstream={} upstream_time=",
            upstream.addr()
        )),
        "{line}"
    );
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_missing_directory_costs_lines_not_requests() {
    let dir = temp_dir("missing");
    let log = dir.join("access.log");
    let upstream = Upstream::start(Arc::new(|_: &Recorded| Reply::Raw(ok(b"hello"))));
    let proxy = Coregate::start(&config(
        "uring",
        "0",
        upstream.addr(),
        &routes(&log, "json"),
    ));
    let mut client = Client::connect(proxy.addr());
    let started = Instant::now();
    for _ in 0..50 {
        assert_eq!(client.get("/api/x", &[]).status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "requests are not held up by the log"
    );
    // The writer counts what it could not write.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = proxy.server().plane().metrics_text();
        if metrics.contains("coregate_access_log_lines_lost_total 50") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "lines lost not counted:\n{metrics}"
        );
        thread::sleep(Duration::from_millis(20));
    }
    // Once the directory exists, the log resumes by itself.
    std::fs::create_dir_all(&dir).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert_eq!(client.get("/api/after", &[]).status, 200);
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("/api/after") {
            assert!(
                !text.contains("\"/api/x\""),
                "lines from before were dropped"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the log did not resume");
        thread::sleep(Duration::from_millis(50));
    }
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reload_reopens_the_file_after_rotation() {
    let dir = temp_dir("rotate");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("access.log");
    let upstream = Upstream::start(Arc::new(|_: &Recorded| Reply::Raw(ok(b"hello"))));
    let file = ConfigFile::new(&config(
        "uring",
        "0",
        upstream.addr(),
        &routes(&log, "json"),
    ));
    let proxy = Coregate::start_file(file.path());
    let mut client = Client::connect(proxy.addr());
    client.get("/api/before", &[]);
    lines(&log, 1);
    let rotated = dir.join("access.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    proxy.server().reload().expect("reload");
    client.get("/api/after", &[]);
    let after = lines(&log, 1);
    assert!(after[0].contains("/api/after"), "{after:?}");
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        old.contains("/api/before") && !old.contains("/api/after"),
        "{old}"
    );
    drop(proxy);
    let _ = std::fs::remove_dir_all(&dir);
}
