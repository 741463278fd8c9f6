//! TLS handshakes against a proxy's TLS listener: as many as possible, or at a fixed rate.
//!
//! Each connection: TCP connect, TLS handshake (ALPN http/1.1, SNI `bench.test`, any
//! certificate accepted), one `GET /5b` with `Connection: close`, read to the end, close. With
//! `--resume` every connection offers a session ticket an earlier connection received (rustls's
//! client session store, shared by the threads), so the proxy may resume it; the output counts
//! how many it did.
//!
//! ```text
//! handshakes --addr 127.0.0.1:28101 --duration 10 --procs 8            # full, max rate
//! handshakes --addr 127.0.0.1:28101 --duration 10 --procs 8 --resume   # resumed
//! handshakes --addr 127.0.0.1:28101 --duration 10 --rate 500           # full, fixed rate
//! ```
//!
//! Prints one JSON object: `{"mode", "procs", "rate", "seconds", "handshakes", "resumed",
//! "failed", "late", "per_second"}`. Native code on rustls and *ring*, so the load generator
//! spends little of the CPUs it shares with the proxy on each handshake (a Python client spent
//! several times the proxy's share and bounded every proxy's rate alike).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use coregate_engine::tls::upstream::AnyCertificate;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, HandshakeKind};

const REQUEST: &[u8] = b"GET /5b HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n";

/// Connections the fixed-rate mode keeps at most at once: a start finding all of them busy is
/// late (counted) rather than dropped.
const FIXED_RATE_WORKERS: u64 = 64;

struct Options {
    addr: SocketAddr,
    duration: Duration,
    procs: u64,
    resume: bool,
    rate: Option<f64>,
}

#[derive(Default)]
struct Counts {
    done: AtomicU64,
    resumed: AtomicU64,
    failed: AtomicU64,
    late: AtomicU64,
}

fn main() {
    let options = match parse(std::env::args().skip(1)) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("handshakes: {message}");
            eprintln!(
                "usage: handshakes --addr HOST:PORT [--duration S] [--procs N] [--resume] [--rate R]"
            );
            std::process::exit(2);
        }
    };
    let config = client_config(options.resume);
    let counts = Arc::new(Counts::default());
    let started = Instant::now();
    match options.rate {
        Some(rate) => fixed_rate(&options, rate, &config, &counts),
        None => flat_out(&options, &config, &counts),
    }
    let seconds = started.elapsed().as_secs_f64();
    let done = counts.done.load(Ordering::Relaxed);
    let failed = counts.failed.load(Ordering::Relaxed);
    let mode = match (options.rate, options.resume) {
        (Some(_), _) => "fixed",
        (None, true) => "resumed",
        (None, false) => "full",
    };
    let rate = options.rate.map_or("null".to_owned(), |r| r.to_string());
    println!(
        "{{\"mode\": \"{mode}\", \"procs\": {}, \"rate\": {rate}, \"seconds\": {seconds:.3}, \
         \"handshakes\": {done}, \"resumed\": {}, \"failed\": {failed}, \"late\": {}, \
         \"per_second\": {:.1}}}",
        options.procs,
        counts.resumed.load(Ordering::Relaxed),
        counts.late.load(Ordering::Relaxed),
        done as f64 / seconds,
    );
    std::process::exit(if failed == 0 { 0 } else { 1 });
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Options, String> {
    let mut addr = None;
    let mut options = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        duration: Duration::from_secs(10),
        procs: 1,
        resume: false,
        rate: None,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--addr" => addr = Some(value()?.parse().map_err(|e| format!("--addr: {e}"))?),
            "--duration" => {
                let seconds: f64 = value()?.parse().map_err(|e| format!("--duration: {e}"))?;
                options.duration =
                    Duration::try_from_secs_f64(seconds).map_err(|e| format!("--duration: {e}"))?;
            }
            "--procs" => options.procs = value()?.parse().map_err(|e| format!("--procs: {e}"))?,
            "--rate" => {
                let rate: f64 = value()?.parse().map_err(|e| format!("--rate: {e}"))?;
                if !(rate > 0.0 && rate.is_finite()) {
                    return Err("--rate must be a positive number".into());
                }
                options.rate = Some(rate);
            }
            "--resume" => options.resume = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    options.addr = addr.ok_or("--addr is required")?;
    if options.procs == 0 {
        return Err("--procs must be at least 1".into());
    }
    Ok(options)
}

/// `procs` threads, each connecting back to back until the deadline.
fn flat_out(options: &Options, config: &Arc<ClientConfig>, counts: &Arc<Counts>) {
    let deadline = Instant::now() + options.duration;
    let threads: Vec<_> = (0..options.procs)
        .map(|_| {
            let (config, counts, addr) = (config.clone(), counts.clone(), options.addr);
            std::thread::spawn(move || {
                while Instant::now() < deadline {
                    one(addr, &config, &counts);
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

/// Connections started `rate` times a second: start `n` is due at `n / rate` seconds and goes
/// to worker `n % FIXED_RATE_WORKERS`; a start whose worker is still busy when it falls due
/// begins late and is counted so.
fn fixed_rate(options: &Options, rate: f64, config: &Arc<ClientConfig>, counts: &Arc<Counts>) {
    let start = Instant::now();
    let total = (options.duration.as_secs_f64() * rate) as u64;
    let threads: Vec<_> = (0..FIXED_RATE_WORKERS.min(total.max(1)))
        .map(|worker| {
            let (config, counts, addr) = (config.clone(), counts.clone(), options.addr);
            std::thread::spawn(move || {
                for n in (worker..total).step_by(FIXED_RATE_WORKERS as usize) {
                    let due = start + Duration::from_secs_f64(n as f64 / rate);
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                    } else if now - due > Duration::from_millis(1) {
                        counts.late.fetch_add(1, Ordering::Relaxed);
                    }
                    one(addr, &config, &counts);
                }
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}

/// One connection, counted.
fn one(addr: SocketAddr, config: &Arc<ClientConfig>, counts: &Counts) {
    match exchange(addr, config) {
        Ok(resumed) => {
            counts.done.fetch_add(1, Ordering::Relaxed);
            if resumed {
                counts.resumed.fetch_add(1, Ordering::Relaxed);
            }
        }
        Err(_) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Connect, handshake, GET, read to the end: whether the session was resumed.
fn exchange(addr: SocketAddr, config: &Arc<ClientConfig>) -> std::io::Result<bool> {
    let mut socket = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    socket.set_nodelay(true)?;
    socket.set_read_timeout(Some(Duration::from_secs(5)))?;
    let name = ServerName::try_from("bench.test").expect("a valid name");
    let mut tls = ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut stream = rustls::Stream::new(&mut tls, &mut socket);
    stream.write_all(REQUEST)?;
    let mut response = Vec::with_capacity(256);
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // A server that closes without close_notify after a `Connection: close` answer.
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(err) => return Err(err),
    }
    if !response.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other("not a 200"));
    }
    Ok(tls.handshake_kind() == Some(HandshakeKind::Resumed))
}

/// ALPN http/1.1, X25519 first (as browsers and OpenSSL offer it; coregate's provider order),
/// any certificate (its signatures still checked), sessions kept for resumption or none at all.
fn client_config(resume: bool) -> Arc<ClientConfig> {
    let provider = coregate_engine::tls::provider();
    let mut config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate::of(&provider)))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(config)
}
