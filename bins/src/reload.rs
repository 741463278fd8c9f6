//! `coregate reload`: asks a running coregate to reload, over its admin API, and reports what
//! it answered. The admin address and token come from the same configuration file the daemon
//! runs (its `[admin]` section), so operators need not repeat them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use coregate_engine::config::Config;

/// How long the whole exchange with the admin API may take: a reload waits for every shard's
/// acknowledgement (at most a few seconds).
const TIMEOUT: Duration = Duration::from_secs(15);

/// Sends `POST /reload`; `Ok` with the daemon's answer when it reloaded, `Err` with a message
/// otherwise.
pub fn request(
    path: &Path,
    admin: Option<SocketAddr>,
    token: Option<&str>,
) -> Result<String, String> {
    // The file is validated here too: a mistake is shown before the daemon is even asked.
    let config = Config::load(path).map_err(|errors| format!("{errors}\n"))?;
    let token = token.or_else(|| {
        config
            .admin
            .as_ref()
            .and_then(|admin| admin.token.as_deref())
    });
    let addr = match (admin, &config.admin) {
        (Some(addr), _) => addr,
        (None, Some(section)) => section.bind,
        (None, None) => {
            return Err(format!(
                "{}: no [admin] section, so there is no admin API to ask; add one (or send \
                 SIGHUP to the coregate process)\n",
                path.display()
            ));
        }
    };
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|err| format!("cannot reach the admin API at {addr}: {err}\n"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|err| format!("admin API at {addr}: {err}\n"))?;
    let mut request = format!(
        "POST /reload HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\nconnection: close\r\n"
    );
    if let Some(token) = token {
        request.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|err| format!("admin API at {addr}: {err}\n"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|err| format!("admin API at {addr}: {err}\n"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| format!("admin API at {addr} answered something that is not HTTP\n"))?;
    if status == 200 {
        Ok(body.to_owned())
    } else {
        Err(format!("admin API at {addr} answered {status}:\n{body}"))
    }
}
