//! Telling systemd what the process is doing (`sd_notify`), for units of `Type=notify`: ready
//! once every shard serves, reloading, stopping, and after a binary upgrade which process is
//! now the service's main one (`MAINPID=`, which needs `NotifyAccess=all` in the unit, as the
//! successor is not the process systemd started).
//!
//! Does nothing when `NOTIFY_SOCKET` is not set (not started by systemd, or another `Type=`).

use std::io;
use std::os::unix::net::UnixDatagram;

/// Sends `state` (newline-separated `KEY=value` lines) to systemd; `Ok(false)` when there is
/// no one to tell.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let path = path.to_string_lossy();
    match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            socket.send_to_addr(state.as_bytes(), &addr)?;
        }
        None => {
            socket.send_to(state.as_bytes(), &*path)?;
        }
    }
    Ok(true)
}

/// `READY=1` with this process as the main one: after start-up, and after taking over from
/// the process it replaces.
pub fn ready() -> io::Result<bool> {
    notify(&format!(
        "READY=1\nMAINPID={}\nSTATUS=serving",
        std::process::id()
    ))
}

/// `RELOADING=1` while a configuration reload runs; [`ready`] again after it.
pub fn reloading() -> io::Result<bool> {
    notify("RELOADING=1")
}

/// `STOPPING=1` when a drain begins on SIGTERM or SIGINT. Never sent by a process that handed
/// its sockets over: the service is not stopping, its successor runs it.
pub fn stopping() -> io::Result<bool> {
    notify("STOPPING=1")
}

/// A status line `systemctl status` shows.
pub fn status(text: &str) -> io::Result<bool> {
    notify(&format!("STATUS={text}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_reach_the_notify_socket() {
        let dir = std::env::temp_dir().join(format!("coregate-notify-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let systemd = UnixDatagram::bind(&path).unwrap();
        // SAFETY: no other test reads or writes NOTIFY_SOCKET.
        unsafe { std::env::set_var("NOTIFY_SOCKET", &path) };
        assert!(ready().unwrap());
        let mut buf = [0u8; 256];
        let n = systemd.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..n]).unwrap(),
            format!("READY=1\nMAINPID={}\nSTATUS=serving", std::process::id())
        );
        // SAFETY: as above.
        unsafe { std::env::remove_var("NOTIFY_SOCKET") };
        assert!(!stopping().unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
