//! Binary upgrades, as the running process sees them: on SIGUSR2 or `coregate upgrade` it
//! starts its successor (the binary at the path it was started from, which a package upgrade
//! has replaced) with `run --takeover`; the successor takes the listening sockets over through
//! the upgrade socket (`coregate_engine::runtime::handover`), serves, and says so; this process
//! then drains and exits. If the successor fails before it serves, this process keeps serving
//! and says why. Also `coregate upgrade`, the client that asks for it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use coregate_engine::runtime::handover::{self, UpgradeRequest};

/// A successor being started, and whoever asked for it.
pub struct Successor {
    child: Child,
    asked: Vec<UpgradeRequest>,
}

/// How this process was started, to start its successor the same way.
pub struct Relaunch {
    /// The binary's path as it was at start-up (not `/proc/self/exe`, which keeps pointing at
    /// the replaced file).
    pub binary: PathBuf,
    pub config: PathBuf,
    pub upgrade_socket: PathBuf,
}

impl Relaunch {
    /// Starts the successor: `BINARY run --config CONFIG --upgrade-socket PATH --takeover`,
    /// with this process's environment (so systemd's `NOTIFY_SOCKET` too) and stderr.
    pub fn start(&self) -> Result<Successor, String> {
        let child = Command::new(&self.binary)
            .arg("run")
            .arg("--config")
            .arg(&self.config)
            .arg("--upgrade-socket")
            .arg(&self.upgrade_socket)
            .arg("--takeover")
            .stdin(Stdio::null())
            .spawn()
            .map_err(|err| format!("cannot start {}: {err}", self.binary.display()))?;
        Ok(Successor {
            child,
            asked: Vec::new(),
        })
    }
}

impl Successor {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Remembers a `coregate upgrade` to answer when the upgrade ends.
    pub fn answer_later(&mut self, request: UpgradeRequest) {
        request.answer(&format!("started {}", self.pid()));
        self.asked.push(request);
    }

    /// Why the successor is gone, if it exited (before it served: after, this process is
    /// draining and no longer looks).
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!(
                "the new process (pid {}) exited ({status}) before it served",
                self.pid()
            )),
            Ok(None) => None,
            Err(err) => Some(format!("cannot watch the new process: {err}")),
        }
    }

    /// Answers everyone who asked.
    pub fn finish(self, line: &str) {
        for request in &self.asked {
            request.answer(line);
        }
    }
}

/// `coregate upgrade`: asks the coregate offering its listeners at `path` to start its
/// successor, and waits until the successor serves (or failed).
pub fn request(path: &Path) -> Result<String, String> {
    let last = handover::request_upgrade(path, |line| {
        if let Some(pid) = line.strip_prefix("started ") {
            eprintln!("coregate upgrade: the new process (pid {pid}) is starting");
        }
    })?;
    match last.split_once(' ') {
        Some(("done", pid)) => Ok(format!(
            "upgraded: pid {pid} serves; the old process drains and exits\n"
        )),
        Some((_, why)) => Err(format!(
            "upgrade failed, the running process keeps serving: {why}\n"
        )),
        None => Err(format!("upgrade: unexpected answer {last:?}\n")),
    }
}
