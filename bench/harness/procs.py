"""Processes the harness starts, and what /proc says about them.

Every process (servers and load generators alike) is started in a session of its own, so its
process group holds it and everything it forks (NGINX workers), and is recorded in the run
directory's `pgids` file: bench/run.sh's EXIT trap ends whatever group is still listed there if
this harness itself is killed. The harness never signals anything it did not start.

CPU time and memory are read from /proc and summed over a process group: for NGINX that is the
master and its workers, for HAProxy and coregate one process with its threads (a process's
/proc/PID/stat already sums all its threads, including exited ones).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


class HarnessError(Exception):
    """A step of the harness could not be carried out (message says which and why)."""


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat fields after the command name: [0] is field 3 (state) of proc(5)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None  # field 22, starttime


def group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            # field 5 is pgrp; zombies (state Z) hold no CPU or memory any more
            if fields and int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


def cpu_seconds(pgid: int | None) -> float | None:
    """utime + stime of every process in the group, seconds (clock-tick resolution)."""
    split = cpu_split(pgid)
    return None if split is None else split[0] + split[1]


def cpu_split(pgid: int | None) -> tuple[float, float] | None:
    """(utime, stime) of every process in the group: seconds in user space and in the kernel."""
    if pgid is None:
        return None
    user = kernel = 0
    for pid in group_pids(pgid):
        fields = _stat(pid)
        if fields:
            user += int(fields[11])  # field 14, utime
            kernel += int(fields[12])  # field 15, stime
    return user / CLK_TCK, kernel / CLK_TCK


def _tasks(pgid: int) -> list[str]:
    """/proc directories of every live thread of the group."""
    tasks = []
    for pid in group_pids(pgid):
        try:
            tasks += [f"/proc/{pid}/task/{tid}" for tid in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
    return tasks


def thread_cpu(pgid: int) -> dict[str, float]:
    """CPU seconds per thread name (comm) across the group: which threads do the work."""
    out: dict[str, float] = {}
    for task in _tasks(pgid):
        try:
            comm = Path(f"{task}/comm").read_text().strip()
            with open(f"{task}/stat", "rb") as f:
                raw = f.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        out[comm] = out.get(comm, 0.0) + (int(fields[11]) + int(fields[12])) / CLK_TCK
    return out


def sched_counts(pgid: int | None) -> tuple[float, int, int] | None:
    """(seconds runnable but waiting for a CPU, voluntary switches, involuntary switches)
    summed over every live thread of the group: what the scheduler did to it. A voluntary
    switch is a sleep (an empty ring or epoll, a blocking call), an involuntary one a
    preemption. Threads that exited are not counted (none do during a measured load)."""
    if pgid is None:
        return None
    waited_ns = sleeps = preempted = 0
    for task in _tasks(pgid):
        try:
            waited_ns += int(Path(f"{task}/schedstat").read_text().split()[1])
            for line in Path(f"{task}/status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches:"):
                    sleeps += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches:"):
                    preempted += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return waited_ns / 1e9, sleeps, preempted


def _status_kib(pid: int, key: str, path: str = "status") -> int:
    try:
        with open(f"/proc/{pid}/{path}") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pgid: int | None) -> int | None:
    """VmRSS summed over the group. Shared pages (the binary, libc) count once per process."""
    if pgid is None:
        return None
    return sum(_status_kib(pid, "VmRSS:") for pid in group_pids(pgid))


def pss_kib(pgid: int | None) -> int | None:
    """Proportional set size summed over the group: shared pages split between their users,
    the fair figure when one proxy is several processes (NGINX) and another one (HAProxy)."""
    if pgid is None:
        return None
    return sum(_status_kib(pid, "Pss:", "smaps_rollup") for pid in group_pids(pgid))


class Registry:
    """The run directory's list of live process groups: `PGID STARTTIME NAME` per line."""

    def __init__(self, path: Path):
        self.path = path
        self.path.touch()

    def add(self, pgid: int, name: str) -> None:
        with self.path.open("a") as f:
            f.write(f"{pgid} {start_ticks(pgid) or 0} {name}\n")

    def remove(self, pgid: int) -> None:
        lines = [l for l in self.path.read_text().splitlines() if l.split(" ", 1)[0] != str(pgid)]
        self.path.write_text("".join(l + "\n" for l in lines))


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus else list(argv)


def _end_group(popen: subprocess.Popen, grace: float) -> None:
    """SIGTERM the group, wait up to `grace` seconds, then SIGKILL what is left of it."""
    pgid = popen.pid
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if popen.poll() is not None and not group_pids(pgid):
            return
        time.sleep(0.02)
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    popen.wait()
    deadline = time.monotonic() + grace
    while group_pids(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)


class Server:
    """A long-running process (origin, proxy) with its output in a log file."""

    def __init__(self, name: str, argv: list[str], log: Path, registry: Registry,
                 cpus: str | None = None, env: dict | None = None):
        self.name, self.argv, self.log, self.registry = name, pinned(argv, cpus), log, registry
        self.env = env
        self.popen: subprocess.Popen | None = None

    @property
    def pgid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          env=self.env)
        self.registry.add(self.popen.pid, self.name)

    def exit_status(self) -> int | None:
        return self.popen.poll() if self.popen else None

    def stop(self, grace: float = 5.0) -> None:
        if self.popen is None:
            return
        _end_group(self.popen, grace)
        self.registry.remove(self.popen.pid)
        self.popen = None

    def log_tail(self, lines: int = 8) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            text = []
        return "\n".join(text[-lines:]) or "(it printed nothing)"


def run_bounded(name: str, argv: list[str], registry: Registry, timeout: float,
                cpus: str | None = None, env: dict | None = None) -> tuple[int, str, str]:
    """Runs a load generator to completion, ending its whole group if it outlives `timeout`."""
    popen = subprocess.Popen(pinned(argv, cpus), stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True, env=env)
    registry.add(popen.pid, name)
    try:
        out, err = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end_group(popen, 2.0)
        out, err = popen.communicate()
        raise HarnessError(f"{name} still running after {timeout:.0f} s, stopped: {err.strip()[-300:]}")
    finally:
        if popen.poll() is None:  # interrupted (Ctrl-C) while waiting
            _end_group(popen, 2.0)
        registry.remove(popen.pid)
    return popen.returncode, out, err


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def wait_listening(host: str, port: int, server: Server | None, timeout: float = 10.0) -> None:
    """Polls until a TCP connect succeeds; fails early if the server process has exited."""
    deadline = time.monotonic() + timeout
    while True:
        if server is not None and server.exit_status() is not None:
            raise HarnessError(
                f"{server.name} exited with status {server.exit_status()} before accepting "
                f"connections on {host}:{port} (log {server.log}):\n{server.log_tail()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise HarnessError(f"nothing accepted connections on {host}:{port} within {timeout:.0f} s")
        time.sleep(0.02)
