//! The access log: one line per request, gathered per shard and written by a thread of its own,
//! so that neither formatting a line nor a slow, full or missing disk holds up a request.
//!
//! Owns the line formats ([`Entry`], JSON lines or NGINX-`combined`-like), the request's text
//! captured for its line ([`Capture`]), the shard's buffer
//! ([`ShardLog`]), the handoff between shards and the writer ([`LogSink`]) and the writer's loop
//! ([`run_writer`], started by `runtime`, the only module that spawns threads).
//!
//! The path of a line: the connection task formats it into its shard's buffer (no allocation:
//! the buffer has its capacity from the start); a full buffer, or the shard's flush timer, hands
//! the buffer to the sink's queue and takes an empty one back from it. The writer appends what
//! arrives to the file. Every buffer is allocated when the log is configured (the shard's own,
//! plus [`SPARES_PER_SHARD`] spares in the sink), so a request never allocates for its line.
//! When the writer falls behind and no empty buffer is left, the shard keeps gathering into the
//! room its buffer has (as much again as `buffer_size`) and then drops lines, counting them: a
//! request is never made to wait for the log. When the file cannot be opened (missing directory) or written (full
//! disk), the writer says so on stderr (at most once per [`ERROR_REPORT_INTERVAL`]), counts the
//! lines it could not write and tries again: the log resumes by itself once the disk is back.

mod capture;

pub use capture::{Capture, CapturedField};

use std::cell::{Cell, RefCell};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_queue::ArrayQueue;

use crate::config::{AccessLogConfig, AccessLogFormat};
use crate::http1::{Method, Version};

/// Buffers in flight between shards and the writer, in each direction.
const QUEUE_CAPACITY: usize = 64;

/// How often the writer complains about a file it cannot open or write.
pub const ERROR_REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// How long the writer sleeps when nothing arrives: also how soon it notices a reopen request.
const WRITER_IDLE: Duration = Duration::from_millis(200);

/// Bytes of each variable field kept for a line: longer values are cut and marked with `...`,
/// so one request cannot make a line (or the per-exchange state) unboundedly large.
pub const MAX_FIELD_BYTES: usize = 512;

/// One request, as its line shows it.
pub struct Entry<'a> {
    pub time: SystemTime,
    pub client: SocketAddr,
    pub request_id: &'a [u8],
    pub method: Method,
    /// The method as sent, for extension methods.
    pub method_text: &'a [u8],
    /// The request target as received.
    pub target: &'a [u8],
    /// `None` for a request refused before its head could be parsed.
    pub version: Option<Version>,
    /// The matched route's name; empty when none matched.
    pub route: &'a str,
    pub upstream: Option<SocketAddr>,
    /// 0 when nothing was answered (the client left first).
    pub status: u16,
    /// Response bytes written to the client, head included.
    pub bytes: u64,
    /// From sending the request upstream to having the response head.
    pub upstream_time: Option<Duration>,
    /// From the request's first byte to its response's last.
    pub total_time: Duration,
    pub referer: &'a [u8],
    pub user_agent: &'a [u8],
    /// On a TLS listener: what the connection's handshake established.
    pub tls: Option<TlsLog<'a>>,
}

/// The TLS facts of a line: the version, the server name asked for and the application
/// protocol (empty when the client sent none).
#[derive(Clone, Copy, Debug)]
pub struct TlsLog<'a> {
    pub version: &'static str,
    pub sni: &'a [u8],
    pub alpn: &'a [u8],
}

/// What shards and the writer share: two queues of buffers and the file to write. Touched by a
/// shard once per buffer handoff, never per request.
pub struct LogSink {
    /// Buffers of lines, from shards to the writer.
    full: ArrayQueue<Vec<u8>>,
    /// Emptied buffers, from the writer back to shards.
    empty: ArrayQueue<Vec<u8>>,
    /// The file to append to; changed by the control plane on reload.
    path: Mutex<Option<PathBuf>>,
    /// Set when `path` changed or the file should be opened again (log rotation).
    reopen: AtomicBool,
    stopping: AtomicBool,
    /// Lines the writer could not write (file missing, disk full).
    lines_lost: AtomicU64,
    /// The writer thread, to unpark when a buffer arrives; set once when it starts.
    writer: OnceLock<Thread>,
}

impl LogSink {
    pub fn new() -> Arc<LogSink> {
        Arc::new(LogSink {
            full: ArrayQueue::new(QUEUE_CAPACITY),
            empty: ArrayQueue::new(QUEUE_CAPACITY),
            path: Mutex::new(None),
            reopen: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            lines_lost: AtomicU64::new(0),
            writer: OnceLock::new(),
        })
    }

    /// Points the writer at `path` (or at nothing) and has it open the file again, which is
    /// also how a rotated log is picked up: every reload reopens.
    pub fn set_path(&self, path: Option<PathBuf>) {
        if let Ok(mut current) = self.path.lock() {
            *current = path;
        }
        self.reopen.store(true, Ordering::Release);
        self.wake_writer();
    }

    /// Has the writer open its file again, at the same path: how a log moved away by
    /// logrotate is replaced by a new file (SIGUSR1).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        self.wake_writer();
    }

    /// Lines the writer could not write so far.
    pub fn lines_lost(&self) -> u64 {
        self.lines_lost.load(Ordering::Relaxed)
    }

    /// Asks the writer to write what is queued and return.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.wake_writer();
    }

    fn wake_writer(&self) {
        if let Some(thread) = self.writer.get() {
            thread.unpark();
        }
    }
}

/// The writer's loop: appends every buffer that arrives to the current file until
/// [`LogSink::stop`]. Run it on a thread of its own.
pub fn run_writer(sink: Arc<LogSink>) {
    let _ = sink.writer.set(std::thread::current());
    let mut file: Option<File> = None;
    let mut path: Option<PathBuf> = None;
    let mut last_complaint: Option<Instant> = None;
    let mut complain = |message: String| {
        let now = Instant::now();
        if last_complaint.is_none_or(|at| now.duration_since(at) >= ERROR_REPORT_INTERVAL) {
            eprintln!("coregate: access log: {message}; lines are dropped until it works again");
            last_complaint = Some(now);
        }
    };
    loop {
        if sink.reopen.swap(false, Ordering::AcqRel) {
            path = sink.path.lock().ok().and_then(|p| p.clone());
            file = None;
        }
        if file.is_none()
            && let Some(path) = &path
        {
            match OpenOptions::new().create(true).append(true).open(path) {
                Ok(opened) => file = Some(opened),
                Err(err) => complain(format!("cannot open {}: {err}", path.display())),
            }
        }
        let mut wrote_any = false;
        while let Some(mut buf) = sink.full.pop() {
            wrote_any = true;
            let written = match &mut file {
                Some(f) => f.write_all(&buf),
                None => Err(std::io::Error::other("no file open")),
            };
            if let Err(err) = written {
                let lines = memchr::memchr_iter(b'\n', &buf).count() as u64;
                sink.lines_lost.fetch_add(lines, Ordering::Relaxed);
                if let Some(path) = &path
                    && file.is_some()
                {
                    complain(format!("cannot write {}: {err}", path.display()));
                    // Open it again next time: the file may have been removed or the disk
                    // remounted.
                    file = None;
                }
            }
            buf.clear();
            let _ = sink.empty.push(buf);
        }
        if sink.stopping.load(Ordering::Acquire) && sink.full.is_empty() {
            return;
        }
        if !wrote_any {
            std::thread::park_timeout(WRITER_IDLE);
        }
    }
}

/// One shard's side of the access log.
pub struct ShardLog {
    sink: Arc<LogSink>,
    settings: Cell<Option<LogSettings>>,
    buf: RefCell<Vec<u8>>,
    /// Lines dropped because the writer fell behind.
    dropped: Cell<u64>,
}

#[derive(Clone, Copy)]
struct LogSettings {
    format: AccessLogFormat,
    buffer_size: usize,
    flush_interval: Duration,
}

impl ShardLog {
    pub fn new(sink: Arc<LogSink>, config: Option<&AccessLogConfig>) -> ShardLog {
        let log = ShardLog {
            sink,
            settings: Cell::new(None),
            buf: RefCell::new(Vec::new()),
            dropped: Cell::new(0),
        };
        log.configure(config);
        log
    }

    /// Takes the access-log settings of a new configuration (or turns the log off). Allocates
    /// the shard's buffer and its spares here, so that logging a request never allocates.
    pub fn configure(&self, config: Option<&AccessLogConfig>) {
        let settings = config.map(|c| LogSettings {
            format: c.format,
            buffer_size: c.buffer_size,
            flush_interval: c.flush_interval,
        });
        match settings {
            Some(settings) => {
                let capacity = buffer_capacity(settings.buffer_size);
                let mut buf = self.buf.borrow_mut();
                if buf.capacity() < capacity {
                    let len = buf.len();
                    buf.reserve(capacity - len);
                }
                // Spares come with the log turning on or its buffers growing: a reload that
                // keeps the settings already has them in the sink.
                let had = self.settings.get().map(|s| buffer_capacity(s.buffer_size));
                if had.is_none_or(|had| had < capacity) {
                    for _ in 0..SPARES_PER_SHARD {
                        if self.sink.empty.is_full() {
                            break;
                        }
                        let _ = self.sink.empty.push(Vec::with_capacity(capacity));
                    }
                }
            }
            None => self.hand_off(),
        }
        self.settings.set(settings);
    }

    pub fn enabled(&self) -> bool {
        self.settings.get().is_some()
    }

    /// How often the shard's flush timer hands off a partly filled buffer.
    pub fn flush_interval(&self) -> Option<Duration> {
        self.settings.get().map(|s| s.flush_interval)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }

    /// Formats one line into the shard's buffer, handing the buffer to the writer when full.
    pub fn write(&self, entry: &Entry<'_>) {
        let Some(settings) = self.settings.get() else {
            return;
        };
        let full = {
            let mut buf = self.buf.borrow_mut();
            // No room left: the writer is behind and has no empty buffer to give back. Drop
            // rather than grow.
            if buf.len() + MAX_LINE_BYTES > buf.capacity() {
                self.dropped.set(self.dropped.get() + 1);
                return;
            }
            match settings.format {
                AccessLogFormat::Json => json_line(&mut buf, entry),
                AccessLogFormat::Combined => combined_line(&mut buf, entry),
            }
            buf.len() >= settings.buffer_size
        };
        if full {
            self.hand_off();
        }
    }

    /// Hands what is gathered to the writer, if anything is and an empty buffer can take its
    /// place (otherwise the lines stay here, in the room the buffer has past `buffer_size`,
    /// until the writer gives one back).
    pub fn hand_off(&self) {
        let mut buf = self.buf.borrow_mut();
        if buf.is_empty() {
            return;
        }
        let capacity = buf.capacity();
        let Some(mut replacement) = self.sink.empty.pop() else {
            return;
        };
        if replacement.capacity() < capacity {
            // A spare from before a reload that raised `buffer_size`.
            replacement.reserve(capacity);
        }
        let gathered = std::mem::replace(&mut *buf, replacement);
        if let Err(gathered) = self.sink.full.push(gathered) {
            let spare = std::mem::replace(&mut *buf, gathered);
            let _ = self.sink.empty.push(spare);
            return;
        }
        drop(buf);
        self.sink.wake_writer();
    }
}

/// Empty buffers each shard adds to the sink when the log is configured: enough that the writer
/// can fall a few buffers behind before a shard has to drop lines.
const SPARES_PER_SHARD: usize = 4;

/// A shard buffer's capacity: `buffer_size`, as much again to gather into while the writer has
/// not given an empty buffer back yet, and room for the longest line.
fn buffer_capacity(buffer_size: usize) -> usize {
    2 * buffer_size + MAX_LINE_BYTES
}

/// The longest line [`Entry`] can produce, with every variable field at [`MAX_FIELD_BYTES`]
/// and escaped at the worst rate (6 bytes per byte in JSON). Buffers get this much headroom.
pub const MAX_LINE_BYTES: usize = 5 * 6 * MAX_FIELD_BYTES + 512;

fn json_line(out: &mut Vec<u8>, e: &Entry<'_>) {
    out.extend_from_slice(b"{\"time\":\"");
    rfc3339(out, e.time);
    out.extend_from_slice(b"\",\"client\":\"");
    socket_addr(out, e.client);
    out.extend_from_slice(b"\",\"request_id\":\"");
    json_text(out, e.request_id);
    out.extend_from_slice(b"\",\"method\":\"");
    json_text(out, method_bytes(e));
    out.extend_from_slice(b"\",\"path\":\"");
    json_text(out, e.target);
    out.extend_from_slice(b"\",\"protocol\":\"");
    out.extend_from_slice(version_text(e.version));
    out.extend_from_slice(b"\",\"route\":");
    if e.route.is_empty() {
        out.extend_from_slice(b"null");
    } else {
        out.push(b'"');
        json_text(out, e.route.as_bytes());
        out.push(b'"');
    }
    out.extend_from_slice(b",\"upstream\":");
    match e.upstream {
        Some(addr) => {
            out.push(b'"');
            socket_addr(out, addr);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"status\":");
    decimal(out, u64::from(e.status));
    out.extend_from_slice(b",\"bytes\":");
    decimal(out, e.bytes);
    out.extend_from_slice(b",\"upstream_time\":");
    match e.upstream_time {
        Some(time) => seconds(out, time),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"total_time\":");
    seconds(out, e.total_time);
    out.extend_from_slice(b",\"referer\":\"");
    json_text(out, e.referer);
    out.extend_from_slice(b"\",\"user_agent\":\"");
    json_text(out, e.user_agent);
    out.push(b'"');
    if let Some(tls) = &e.tls {
        out.extend_from_slice(b",\"tls_version\":\"");
        out.extend_from_slice(tls.version.as_bytes());
        out.extend_from_slice(b"\",\"sni\":\"");
        json_text(out, tls.sni);
        out.extend_from_slice(b"\",\"alpn\":\"");
        json_text(out, tls.alpn);
        out.push(b'"');
    }
    out.extend_from_slice(b"}\n");
}

/// `client - - [time] "METHOD target PROTOCOL" status bytes "referer" "user-agent"` (NGINX's
/// `combined`), then `rid=... route=... upstream=... upstream_time=... total_time=...`.
fn combined_line(out: &mut Vec<u8>, e: &Entry<'_>) {
    ip(out, e.client);
    out.extend_from_slice(b" - - [");
    common_log_time(out, e.time);
    out.extend_from_slice(b"] \"");
    log_text(out, method_bytes(e));
    out.push(b' ');
    log_text(out, e.target);
    out.push(b' ');
    out.extend_from_slice(version_text(e.version));
    out.extend_from_slice(b"\" ");
    decimal(out, u64::from(e.status));
    out.push(b' ');
    decimal(out, e.bytes);
    out.extend_from_slice(b" \"");
    dash_or(out, e.referer);
    out.extend_from_slice(b"\" \"");
    dash_or(out, e.user_agent);
    out.extend_from_slice(b"\" rid=");
    dash_or(out, e.request_id);
    out.extend_from_slice(b" route=");
    dash_or(out, e.route.as_bytes());
    out.extend_from_slice(b" upstream=");
    match e.upstream {
        Some(addr) => socket_addr(out, addr),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" upstream_time=");
    match e.upstream_time {
        Some(time) => seconds(out, time),
        None => out.push(b'-'),
    }
    out.extend_from_slice(b" total_time=");
    seconds(out, e.total_time);
    if let Some(tls) = &e.tls {
        out.extend_from_slice(b" tls=");
        out.extend_from_slice(tls.version.as_bytes());
        out.extend_from_slice(b" sni=");
        dash_or(out, tls.sni);
        out.extend_from_slice(b" alpn=");
        dash_or(out, tls.alpn);
    }
    out.push(b'\n');
}

fn method_bytes<'a>(e: &Entry<'a>) -> &'a [u8] {
    match e.method.as_str() {
        Some(name) => name.as_bytes(),
        None => e.method_text,
    }
}

fn version_text(version: Option<Version>) -> &'static [u8] {
    match version {
        Some(Version::Http10) => b"HTTP/1.0",
        Some(Version::Http11) => b"HTTP/1.1",
        None => b"-",
    }
}

fn dash_or(out: &mut Vec<u8>, text: &[u8]) {
    if text.is_empty() {
        out.push(b'-');
    } else {
        log_text(out, text);
    }
}

/// Bytes for a JSON string: quote, backslash and control characters escaped; valid UTF-8 as
/// it is; each byte of invalid UTF-8 from the network as `\u00XX`, so the line is valid JSON
/// whatever a client sent.
fn json_text(out: &mut Vec<u8>, text: &[u8]) {
    for chunk in text.utf8_chunks() {
        for &b in chunk.valid().as_bytes() {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0..=0x1f | 0x7f => escape_u00(out, b),
                _ => out.push(b),
            }
        }
        for &b in chunk.invalid() {
            escape_u00(out, b);
        }
    }
}

fn escape_u00(out: &mut Vec<u8>, b: u8) {
    out.extend_from_slice(b"\\u00");
    out.push(HEX[(b >> 4) as usize]);
    out.push(HEX[(b & 15) as usize]);
}

/// Bytes for a text log: quote, backslash, space, control and non-ASCII bytes as `\xXX`, as
/// NGINX escapes them, so a value can never split a line, end its quotes, or pose as another
/// `name=value` field.
fn log_text(out: &mut Vec<u8>, text: &[u8]) {
    for &b in text {
        match b {
            b'"' | b'\\' | b' ' | 0..=0x1f | 0x7f..=0xff => {
                out.extend_from_slice(b"\\x");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 15) as usize]);
            }
            _ => out.push(b),
        }
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Zero-padded to `width` digits.
fn padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut value = n;
    for slot in digits[20 - width..].iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
    out.extend_from_slice(&digits[20 - width..]);
}

/// Seconds with millisecond precision: `0.012`.
fn seconds(out: &mut Vec<u8>, duration: Duration) {
    let micros = duration.as_micros() as u64;
    decimal(out, micros / 1_000_000);
    out.push(b'.');
    padded(out, micros % 1_000_000 / 1000, 3);
}

fn ip(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => {
            for (i, octet) in v4.ip().octets().iter().enumerate() {
                if i > 0 {
                    out.push(b'.');
                }
                decimal(out, u64::from(*octet));
            }
        }
        // IPv6 formatting is intricate (zero compression); std's writer does not allocate
        // when writing into a Vec with room.
        SocketAddr::V6(v6) => {
            let _ = write!(out, "{}", v6.ip());
        }
    }
}

fn socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(_) => ip(out, addr),
        SocketAddr::V6(_) => {
            out.push(b'[');
            ip(out, addr);
            out.push(b']');
        }
    }
    out.push(b':');
    decimal(out, u64::from(addr.port()));
}

/// A civil date from days since 1970-01-01 (proleptic Gregorian; Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    millis: u64,
}

fn civil_time(time: SystemTime) -> Civil {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil((secs / 86_400) as i64);
    let in_day = secs % 86_400;
    Civil {
        year,
        month,
        day,
        hour: in_day / 3600,
        minute: in_day % 3600 / 60,
        second: in_day % 60,
        millis: u64::from(since.subsec_millis()),
    }
}

/// `2026-12-01T10:00:00.123Z`
fn rfc3339(out: &mut Vec<u8>, time: SystemTime) {
    let t = civil_time(time);
    padded(out, t.year.max(0) as u64, 4);
    out.push(b'-');
    padded(out, u64::from(t.month), 2);
    out.push(b'-');
    padded(out, u64::from(t.day), 2);
    out.push(b'T');
    padded(out, t.hour, 2);
    out.push(b':');
    padded(out, t.minute, 2);
    out.push(b':');
    padded(out, t.second, 2);
    out.push(b'.');
    padded(out, t.millis, 3);
    out.push(b'Z');
}

/// `01/Dec/2026:10:00:00 +0000`
fn common_log_time(out: &mut Vec<u8>, time: SystemTime) {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let t = civil_time(time);
    padded(out, u64::from(t.day), 2);
    out.push(b'/');
    out.extend_from_slice(MONTHS[(t.month as usize).clamp(1, 12) - 1]);
    out.push(b'/');
    padded(out, t.year.max(0) as u64, 4);
    out.push(b':');
    padded(out, t.hour, 2);
    out.push(b':');
    padded(out, t.minute, 2);
    out.push(b':');
    padded(out, t.second, 2);
    out.extend_from_slice(b" +0000");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            // 2026-12-01T10:11:12.345Z
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_119_872_345),
            client: "10.1.2.3:40000".parse().unwrap(),
            request_id: b"abc123",
            method: Method::Get,
            method_text: b"GET",
            target: b"/a\"b\\c\n\xff \xc3\xa9",
            version: Some(Version::Http11),
            route: "api",
            upstream: Some("127.0.0.1:9001".parse().unwrap()),
            status: 200,
            bytes: 1234,
            upstream_time: Some(Duration::from_micros(1500)),
            total_time: Duration::from_micros(2_345_678),
            referer: b"",
            user_agent: b"curl/8.0",
            tls: None,
        }
    }

    #[test]
    fn tls_facts_end_the_line_on_a_tls_listener() {
        let mut e = entry();
        e.tls = Some(TlsLog {
            version: "TLSv1.3",
            sni: b"api.example.com",
            alpn: b"http/1.1",
        });
        let mut json = Vec::new();
        json_line(&mut json, &e);
        assert!(json.ends_with(
            b"\"tls_version\":\"TLSv1.3\",\"sni\":\"api.example.com\",\"alpn\":\"http/1.1\"}\n"
        ));
        let mut combined = Vec::new();
        e.tls = Some(TlsLog {
            version: "TLSv1.2",
            sni: b"",
            alpn: b"",
        });
        combined_line(&mut combined, &e);
        assert!(combined.ends_with(b" tls=TLSv1.2 sni=- alpn=-\n"));
    }

    #[test]
    fn json_lines_escape_what_came_from_the_network() {
        let mut out = Vec::new();
        json_line(&mut out, &entry());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"time\":\"2026-12-01T10:11:12.345Z\",\"client\":\"10.1.2.3:40000\",\
             \"request_id\":\"abc123\",\"method\":\"GET\",\"path\":\"/a\\\"b\\\\c\\u000A\\u00FF é\",\
             \"protocol\":\"HTTP/1.1\",\"route\":\"api\",\"upstream\":\"127.0.0.1:9001\",\
             \"status\":200,\"bytes\":1234,\"upstream_time\":0.001,\"total_time\":2.345,\
             \"referer\":\"\",\"user_agent\":\"curl/8.0\"}\n"
        );
    }

    #[test]
    fn combined_lines_look_like_nginx() {
        let mut e = entry();
        e.route = "";
        e.upstream = None;
        e.upstream_time = None;
        e.client = "[2001:db8::1]:443".parse().unwrap();
        let mut out = Vec::new();
        combined_line(&mut out, &e);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2001:db8::1 - - [01/Dec/2026:10:11:12 +0000] \"GET /a\\x22b\\x5Cc\\x0A\\xFF\\x20\\xC3\\xA9 \
             HTTP/1.1\" 200 1234 \"-\" \"curl/8.0\" rid=abc123 route=- upstream=- \
             upstream_time=- total_time=2.345\n"
        );
    }

    #[test]
    fn civil_dates_match_known_days() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(20_788), (2026, 12, 1));
        assert_eq!(civil(-1), (1969, 12, 31));
    }

    #[test]
    fn the_longest_line_fits_the_headroom() {
        let long = [0xffu8; MAX_FIELD_BYTES];
        let mut e = entry();
        e.target = &long;
        e.request_id = &long;
        e.referer = &long;
        e.user_agent = &long;
        e.method = Method::Other;
        e.method_text = &long;
        e.client = "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535"
            .parse()
            .unwrap();
        let mut out = Vec::new();
        json_line(&mut out, &e);
        assert!(out.len() <= MAX_LINE_BYTES, "{}", out.len());
    }

    #[test]
    fn a_writer_that_falls_behind_costs_lines_not_memory() {
        let sink = LogSink::new();
        let config = AccessLogConfig {
            path: "unused".into(),
            format: AccessLogFormat::Json,
            buffer_size: 4096,
            flush_interval: Duration::from_secs(1),
        };
        let log = ShardLog::new(sink.clone(), Some(&config));
        // No writer runs: buffers pile up in the queue, then in the shard, then lines go.
        for _ in 0..100_000 {
            log.write(&entry());
        }
        assert!(log.dropped() > 0);
        assert!(sink.full.len() <= QUEUE_CAPACITY);
        assert_eq!(
            log.buf.borrow().capacity(),
            buffer_capacity(4096),
            "the shard buffer never grew"
        );
    }
}
