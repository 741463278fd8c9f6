//! Hot reload end to end: twenty reloads under keep-alive and new-connection load lose no
//! request, responses follow the new routes once every shard acknowledged, a bad file changes
//! nothing, listeners come and go without dropping accepted connections, and pools of unchanged
//! endpoints survive a reload.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use coregate_engine::runtime::ReloadError;
use coregate_tests::client::Client;
use coregate_tests::harness::{ConfigFile, Coregate, MECHANISMS, config_with_upstreams};
use coregate_tests::upstream::{Recorded, Reply, Upstream, ok};

/// An upstream that answers with its own name.
fn named(name: &'static str) -> Upstream {
    Upstream::start(Arc::new(move |_: &Recorded| {
        Reply::Raw(ok(name.as_bytes()))
    }))
}

/// Two upstreams, `a` and `b`, and a route sending everything to `target`.
fn routed_to(io: &str, cores: &str, a: &Upstream, b: &Upstream, target: &str) -> String {
    let upstreams = format!(
        "[[upstream]]\nname = \"a\"\nendpoints = [\"{}\"]\n\n\
         [[upstream]]\nname = \"b\"\nendpoints = [\"{}\"]\n",
        a.addr(),
        b.addr()
    );
    let routes =
        format!("[[route]]\nname = \"all\"\npath_prefix = \"/\"\nupstream = \"{target}\"\n");
    config_with_upstreams(io, cores, &upstreams, &routes)
}

/// What one load thread saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// One GET on `stream`; the body when a complete 200 came back.
fn get(stream: &mut TcpStream, close: bool) -> Option<String> {
    let connection = if close { "close" } else { "keep-alive" };
    let request = format!("GET /load HTTP/1.1\r\nhost: t\r\nconnection: {connection}\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        response.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length: "))?
                .trim()
                .parse()
                .ok()?;
            if body.len() >= length {
                return head
                    .starts_with("HTTP/1.1 200")
                    .then(|| body[..length].to_owned());
            }
        }
    }
}

/// Sends requests until `stop`, one per new connection or all on one keep-alive connection
/// (reopened only if coregate closed it cleanly), about 200 a second.
fn load(addr: SocketAddr, keep_alive: bool, stop: Arc<AtomicBool>, tally: Arc<Tally>) {
    let mut stream: Option<TcpStream> = None;
    while !stop.load(Ordering::SeqCst) {
        let conn = match &mut stream {
            Some(conn) => conn,
            None => match TcpStream::connect(addr) {
                Ok(conn) => {
                    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    stream.insert(conn)
                }
                Err(_) => {
                    tally.failed.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
            },
        };
        match get(conn, !keep_alive) {
            Some(_) => tally.ok.fetch_add(1, Ordering::SeqCst),
            None => tally.failed.fetch_add(1, Ordering::SeqCst),
        };
        if !keep_alive {
            stream = None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn twenty_reloads_under_load_lose_nothing_and_switch_routes() {
    for io in MECHANISMS {
        let a = named("a");
        let b = named("b");
        let file = ConfigFile::new(&routed_to(io, "0-1", &a, &b, "a"));
        let proxy = Coregate::start_file(file.path());
        let addr = proxy.addr();

        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let loaders: Vec<_> = [true, true, false, false]
            .into_iter()
            .map(|keep_alive| {
                let (stop, tally) = (stop.clone(), tally.clone());
                thread::spawn(move || load(addr, keep_alive, stop, tally))
            })
            .collect();

        let mut watcher = Client::connect(addr);
        for round in 1..=20u64 {
            let target = if round % 2 == 1 { "b" } else { "a" };
            file.write(&routed_to(io, "0-1", &a, &b, target));
            let reloaded = proxy
                .server()
                .reload()
                .unwrap_or_else(|err| panic!("{io}: reload {round} failed: {err}"));
            assert_eq!(reloaded.generation, round + 1, "{io}");
            // Acknowledged by every shard: the next request, on a new connection or on one
            // that was kept alive across the reload, takes the new route.
            let mut fresh = Client::connect(addr);
            assert_eq!(
                fresh.get("/check", &[]).body_text(),
                target,
                "{io}: round {round}"
            );
            assert_eq!(
                watcher.get("/check", &[]).body_text(),
                target,
                "{io}: round {round}"
            );
            thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::SeqCst);
        for loader in loaders {
            loader.join().unwrap();
        }
        let (ok, failed) = (
            tally.ok.load(Ordering::SeqCst),
            tally.failed.load(Ordering::SeqCst),
        );
        assert_eq!(failed, 0, "{io}: {failed} failed requests ({ok} succeeded)");
        assert!(ok > 400, "{io}: the load ran ({ok} requests)");
        let generations = proxy.server().plane().generations();
        assert!(generations.all_current(), "{io}: {generations:?}");
        assert_eq!(generations.current, 21, "{io}");
    }
}

#[test]
fn a_bad_file_is_refused_with_its_line_and_nothing_changes() {
    let a = named("a");
    let b = named("b");
    let file = ConfigFile::new(&routed_to("uring", "0", &a, &b, "a"));
    let proxy = Coregate::start_file(file.path());
    let mut client = Client::connect(proxy.addr());
    assert_eq!(client.get("/", &[]).body_text(), "a");

    file.write(&routed_to("uring", "0", &a, &b, "missing"));
    let err = proxy.server().reload().expect_err("the file is invalid");
    let ReloadError::Invalid(errors) = &err else {
        panic!("expected a validation error, got {err}");
    };
    let message = errors.to_string();
    let origin = file.path().display().to_string();
    assert!(
        message.starts_with(&origin)
            && message.contains("route[1].upstream: no upstream named \"missing\""),
        "{message}"
    );
    assert!(
        err.to_string()
            .contains("the running configuration keeps serving"),
        "{err}"
    );
    assert_eq!(
        client.get("/", &[]).body_text(),
        "a",
        "the old routes serve"
    );
    assert_eq!(proxy.server().plane().generations().current, 1);

    // Settings only a restart applies are named, and refused too.
    file.write(
        &routed_to("uring", "0", &a, &b, "b")
            .replace("buffers_per_shard = 512", "buffers_per_shard = 256"),
    );
    match proxy.server().reload() {
        Err(ReloadError::NeedsRestart(keys)) => {
            assert_eq!(keys.len(), 1, "{keys:?}");
            assert!(
                keys[0].ends_with("runtime.buffers_per_shard changed"),
                "{keys:?}"
            );
        }
        other => panic!("expected a restart-only refusal, got {other:?}"),
    }
    assert_eq!(
        client.get("/", &[]).body_text(),
        "a",
        "still the old routes"
    );

    // A good file then applies.
    file.write(&routed_to("uring", "0", &a, &b, "b"));
    assert_eq!(proxy.server().reload().expect("valid").generation, 2);
    assert_eq!(client.get("/", &[]).body_text(), "b");
}

#[test]
fn listeners_come_and_go_without_dropping_accepted_connections() {
    for io in MECHANISMS {
        let a = named("a");
        let b = named("b");
        let base = routed_to(io, "0-1", &a, &b, "a");
        let file = ConfigFile::new(&base);
        let proxy = Coregate::start_file(file.path());
        let first = proxy.addr();
        let mut on_first = Client::connect(first);
        assert_eq!(on_first.get("/", &[]).body_text(), "a");

        // Add a second listener.
        let second_listener = "[[listener]]\nname = \"second\"\nbind = \"127.0.0.1:0\"\n";
        file.write(&format!("{base}\n{second_listener}"));
        let reloaded = proxy.server().reload().expect("reload adds a listener");
        assert_eq!(reloaded.listeners_opened, 1, "{io}");
        let second = proxy
            .server()
            .listener_addr("second")
            .expect("the new listener is bound");
        assert_ne!(second.port(), first.port());
        let mut on_second = Client::connect(second);
        assert_eq!(on_second.get("/", &[]).body_text(), "a", "{io}");

        // Remove the first listener: new connections to it are refused, the accepted one
        // carries on.
        let without_first = base.replacen(
            "[[listener]]\nname = \"test\"\nbind = \"127.0.0.1:0\"\n",
            second_listener,
            1,
        );
        assert_ne!(without_first, base, "the listener section was found");
        file.write(&without_first);
        let reloaded = proxy.server().reload().expect("reload removes a listener");
        assert_eq!(reloaded.listeners_closed, 1, "{io}");
        assert_eq!(
            reloaded.listeners_opened, 0,
            "{io}: the second listener was kept"
        );
        let deadline = Instant::now() + Duration::from_secs(2);
        while TcpStream::connect(first).is_ok() {
            assert!(
                Instant::now() < deadline,
                "{io}: the first listener still accepts"
            );
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            on_first.get("/", &[]).body_text(),
            "a",
            "{io}: accepted connection kept"
        );
        assert_eq!(on_second.get("/", &[]).body_text(), "a", "{io}");
    }
}

#[test]
fn pools_of_unchanged_endpoints_survive_a_reload() {
    let a = named("a");
    let b = named("b");
    let file = ConfigFile::new(&routed_to("uring", "0", &a, &b, "a"));
    let proxy = Coregate::start_file(file.path());
    let mut client = Client::connect(proxy.addr());
    for _ in 0..3 {
        assert_eq!(client.get("/", &[]).body_text(), "a");
    }
    assert_eq!(a.connections(), 1);
    // Same endpoints, different route names and an extra route: the pool stays.
    let mut text =
        routed_to("uring", "0", &a, &b, "a").replace("name = \"all\"", "name = \"renamed\"");
    text.push_str("\n[[route]]\npath = \"/b\"\nupstream = \"b\"\n");
    file.write(&text);
    proxy.server().reload().expect("reload");
    for _ in 0..3 {
        assert_eq!(Client::connect(proxy.addr()).get("/", &[]).body_text(), "a");
    }
    assert_eq!(
        a.connections(),
        1,
        "the pooled connection was reused after the reload"
    );
    assert_eq!(client.get("/b", &[]).body_text(), "b");
}
