//! Process signals for the control plane: SIGTERM/SIGINT (drain and exit), SIGHUP (reload),
//! SIGUSR1 (reopen the access log, for logrotate) and SIGUSR2 (binary upgrade: start the
//! successor, hand it the listeners, drain).
//!
//! The signals are blocked before any shard starts, so every thread inherits the mask and only
//! the main thread receives them, synchronously, with `sigtimedwait`. No handler runs in signal
//! context and no shard is ever interrupted.

use std::time::Duration;

/// A signal the control plane acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: drain and exit.
    Terminate,
    /// SIGINT: drain and exit (Ctrl-C).
    Interrupt,
    /// SIGHUP: reload the configuration.
    Reload,
    /// SIGUSR1: open the access log again at its path (after logrotate moved it).
    ReopenLogs,
    /// SIGUSR2: start the new binary, hand it the listening sockets, then drain.
    Upgrade,
}

/// The blocked signal set; create it before starting shards.
pub struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Blocks SIGTERM, SIGINT, SIGHUP, SIGUSR1 and SIGUSR2 for this thread and every thread it
    /// starts afterwards.
    pub fn block() -> std::io::Result<Signals> {
        // SAFETY: plain sigset manipulation on a local value, then pthread_sigmask on it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGHUP);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigaddset(&mut set, libc::SIGUSR2);
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(std::io::Error::from_raw_os_error(rc));
            }
            Ok(Signals { set })
        }
    }

    /// Waits up to `timeout` for one of the signals.
    pub fn wait(&self, timeout: Duration) -> Option<Signal> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: the set was initialised in `block`; no siginfo is requested.
        let signal = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        match signal {
            libc::SIGTERM => Some(Signal::Terminate),
            libc::SIGINT => Some(Signal::Interrupt),
            libc::SIGHUP => Some(Signal::Reload),
            libc::SIGUSR1 => Some(Signal::ReopenLogs),
            libc::SIGUSR2 => Some(Signal::Upgrade),
            _ => None,
        }
    }
}
