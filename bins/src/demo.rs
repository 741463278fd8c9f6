//! The demo upstream `coregate demo` starts next to the proxy: a small HTTP/1.1 server on its own
//! loopback port that answers every request with what it received (method, target, the
//! X-Forwarded-For and X-Request-Id coregate added, and the body size), so `curl` shows the proxying.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;

/// Where the quickstart's upstream listens (tuning/quickstart.toml points its upstream here).
pub const ADDR: &str = "127.0.0.1:8081";

pub struct DemoUpstream {
    addr: SocketAddr,
}

impl DemoUpstream {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Starts the demo upstream on its own thread.
pub fn start() -> io::Result<DemoUpstream> {
    let listener = TcpListener::bind(ADDR)?;
    let addr = listener.local_addr()?;
    thread::Builder::new()
        .name("demo-upstream".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let _ = serve(stream);
                });
            }
        })?;
    Ok(DemoUpstream { addr })
}

fn serve(stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut fields = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let line = line.trim_end().to_string();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
            }
        }
        let field = |name: &str| {
            fields
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        let body_len: usize = field("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; body_len];
        reader.read_exact(&mut body)?;
        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or("-");
        let target = parts.next().unwrap_or("-");
        let text = format!(
            "demo upstream saw: {method} {target}\nx-forwarded-for: {}\nx-forwarded-host: {}\nx-request-id: {}\nbody bytes: {}\n",
            field("x-forwarded-for").unwrap_or("-"),
            field("x-forwarded-host").unwrap_or("-"),
            field("x-request-id").unwrap_or("-"),
            body.len()
        );
        let close = field("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"));
        write!(
            writer,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n{}\r\n{text}",
            text.len(),
            if close { "connection: close\r\n" } else { "" }
        )?;
        if close {
            return Ok(());
        }
    }
}
