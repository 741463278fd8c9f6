#!/usr/bin/env python3
"""coregate soak (run it through bench/soak.sh, which installs the tools, builds coregate and
guards the run with an EXIT trap).

For a fixed duration, wrk drives coregate at a fixed rate (bench/harness/soak.lua) with upstream
faults mixed into healthy traffic, while this harness samples coregate's resident memory and
open file descriptors every few seconds into RUN_DIR/soak.csv. At the end it prints a verdict:
flat after warm-up, or growing.

What runs, all on loopback:

    origin      the benchmark's NGINX origin (targets.Upstream): /5b /1k /16k /post
    reset       accepts, reads the request, resets the connection (RST)        -> 502
    hang        accepts, reads, never answers, until coregate gives up         -> 504
    garbage     answers every request with bytes that are not HTTP             -> 502
    dead        a port nothing listens on                                      -> 502
    coregate    routes /fault/<name> to each faulty upstream, the rest to the origin

The verdict compares the median of the last third of the samples after warm-up with the median
of the first third: memory is flat if it grew by at most max(SLACK_RSS_KIB, 5 %), descriptors
if they grew by at most max(SLACK_FDS, 10 %). A leak of one descriptor or one buffer per faulty
exchange (tens per second here) shows up as thousands within minutes, far above both.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import socket
import statistics
import struct
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from procs import HarnessError, Registry, Server, cpu_seconds, group_pids, port_in_use, rss_kib
from targets import Layout, Upstream, check_coregate, preflight, serve

SLACK_RSS_KIB = 4096
SLACK_FDS = 8


# --- faulty upstreams ----------------------------------------------------------------------------

class FaultServer:
    """A listener on its own thread that misbehaves in one way (`reset`, `hang`, `garbage`)."""

    def __init__(self, kind: str, host: str):
        self.kind = kind
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(1024)
        self.addr = self.sock.getsockname()
        self.stopping = threading.Event()
        self.served = 0
        threading.Thread(target=self._accept, name=f"fault-{kind}", daemon=True).start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                if b"\r\n\r\n" not in data:
                    continue
                self.served += 1
                if self.kind == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if self.kind == "garbage":
                    conn.sendall(b"SSH-2.0-not-http\r\n\r\n")
                    return
                # hang: read on (coregate closes the connection when its timeout expires)
        except OSError:
            return
        finally:
            conn.close()

    def stop(self) -> None:
        self.stopping.set()
        self.sock.close()


def dead_port(host: str) -> int:
    """A port that was just free: bound, then closed, so connecting to it is refused."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --- coregate ----------------------------------------------------------------------------------

CONFIG = """\
# The soak's coregate (bench/harness/soak.py): the origin and four faulty upstreams.
[runtime]
cores = "{cores}"

[timeouts]
upstream_connect = "1s"

[[listener]]
name = "soak"
bind = "{listen}"

[[upstream]]
name = "origin"
endpoints = ["{origin}"]

[[upstream]]
name = "reset"
endpoints = ["{reset}"]

[[upstream]]
name = "hang"
endpoints = ["{hang}"]
response_timeout = "300ms"

[[upstream]]
name = "garbage"
endpoints = ["{garbage}"]

[[upstream]]
name = "dead"
endpoints = ["{dead}"]

[[route]]
path = "/fault/reset"
upstream = "reset"

[[route]]
path = "/fault/hang"
upstream = "hang"

[[route]]
path = "/fault/garbage"
upstream = "garbage"

[[route]]
path = "/fault/dead"
upstream = "dead"

[[route]]
path_prefix = "/"
upstream = "origin"
"""


def proc_entries(pgid: int, directory: str) -> int:
    """Entries of /proc/PID/`directory` summed over the process group: "fd" counts open
    descriptors, "task" threads."""
    total = 0
    for pid in group_pids(pgid):
        try:
            total += len(os.listdir(f"/proc/{pid}/{directory}"))
        except OSError:
            pass
    return total


# --- verdict -----------------------------------------------------------------------------------

def verdict(rows: list[dict], warmup: float) -> dict:
    """Flat or growing, for memory and descriptors, from the samples after `warmup` seconds."""
    after = [r for r in rows if r["elapsed_s"] >= warmup]
    out: dict = {"samples": len(rows), "samples_after_warmup": len(after), "warmup_s": warmup}
    for key in ("rss_kib", "fds"):
        values = [r[key] for r in rows]
        out[key] = {"first": values[0] if values else None, "last": values[-1] if values else None,
                    "max": max(values) if values else None}
    if len(after) < 6:
        out["flat"] = None
        out["why"] = f"only {len(after)} samples after warm-up: run longer for a verdict"
        return out
    third = len(after) // 3
    reasons = []
    flat = True
    for key, slack, share in (("rss_kib", SLACK_RSS_KIB, 0.05), ("fds", SLACK_FDS, 0.10)):
        early = statistics.median(r[key] for r in after[:third])
        late = statistics.median(r[key] for r in after[-third:])
        limit = max(slack, share * early)
        grew = late - early
        ok = grew <= limit
        flat &= ok
        out[key].update({"early_median": early, "late_median": late, "growth": grew,
                         "limit": round(limit, 1), "flat": ok})
        reasons.append(f"{key} {'flat' if ok else 'GROWING'}: median {early:.0f} -> {late:.0f} "
                       f"({grew:+.0f}, limit {limit:.0f})")
    out["flat"] = flat
    out["why"] = "; ".join(reasons)
    return out


# --- the run -----------------------------------------------------------------------------------

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--coregate-bin", type=Path, required=True)
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--duration", type=int, default=1800, help="seconds of load (default 1800)")
    ap.add_argument("--rate", type=int, default=500, help="requests per second (default 500)")
    ap.add_argument("--conns", type=int, default=50, help="client connections (default 50)")
    ap.add_argument("--interval", type=float, default=10.0, help="seconds between samples (default 10)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds ignored by the verdict (default: 10 %% of the duration, at least 60)")
    ap.add_argument("--cores", default=None, help="coregate's runtime.cores (default: all CPUs)")
    ap.add_argument("--port-base", type=int, default=29000)
    ap.add_argument("--command", default="bench/soak.sh")
    o = ap.parse_args()

    host = "127.0.0.1"
    ncpu = os.cpu_count() or 1
    warmup = o.warmup if o.warmup is not None else max(60.0, 0.1 * o.duration)
    warmup = min(warmup, o.duration / 2)
    registry = Registry(o.run_dir / "pgids")
    layout = Layout(host=host, port_base=o.port_base, workers=ncpu, pin=False, ncpu=ncpu,
                    nofile=4096)
    listen_port = o.port_base + 1
    if port_in_use(host, listen_port):
        raise HarnessError(f"{host}:{listen_port} is in use: pick another --port-base")

    origin = Upstream(layout, o.run_dir, registry)
    faults = {kind: FaultServer(kind, host) for kind in ("reset", "hang", "garbage")}
    coregate = wrk = None
    rows: list[dict] = []
    started_at = datetime.now(timezone.utc)
    try:
        origin.start()
        conf = o.run_dir / "coregate.toml"
        cores = o.cores or (f"0-{ncpu - 1}" if ncpu > 1 else "0")
        conf.write_text(CONFIG.format(
            cores=cores,
            listen=f"{host}:{listen_port}", origin=f"{host}:{o.port_base}",
            reset="%s:%d" % faults["reset"].addr, hang="%s:%d" % faults["hang"].addr,
            garbage="%s:%d" % faults["garbage"].addr, dead=f"{host}:{dead_port(host)}"))
        check_coregate("coregate", o.coregate_bin, conf, registry)
        coregate = serve("coregate", [str(o.coregate_bin), "run", "--config", str(conf)],
                         o.run_dir / "coregate.log", registry, host, listen_port)

        lua = Path(__file__).resolve().parent / "soak.lua"
        wrk = Server("wrk", ["wrk", "-t1", f"-c{o.conns}", f"-d{o.duration}s", "--timeout", "5s",
                             "-s", str(lua), f"http://{host}:{listen_port}/", "--",
                             str(o.rate), str(o.conns)],
                     o.run_dir / "wrk.log", registry)
        print(f"soak: {o.duration} s at {o.rate} req/s over {o.conns} connections, sampling "
              f"every {o.interval:g} s into {o.run_dir / 'soak.csv'}", flush=True)
        t0 = time.monotonic()
        wrk.start()
        with (o.run_dir / "soak.csv").open("w", newline="") as f:
            out_csv = csv.writer(f)
            out_csv.writerow(["elapsed_s", "rss_kib", "fds", "threads", "cpu_s"])
            next_sample = 0.0
            while True:
                if coregate.exit_status() is not None:
                    raise HarnessError(f"coregate exited with status {coregate.exit_status()} "
                                       f"during the soak:\n{coregate.log_tail()}")
                now = time.monotonic() - t0
                if now >= next_sample:
                    pgid = coregate.pgid
                    row = {"elapsed_s": round(now, 1), "rss_kib": rss_kib(pgid) or 0,
                           "fds": proc_entries(pgid, "fd"), "threads": proc_entries(pgid, "task"),
                           "cpu_s": round(cpu_seconds(pgid) or 0.0, 2)}
                    rows.append(row)
                    out_csv.writerow(row.values())
                    f.flush()
                    if len(rows) % 6 == 1:
                        print(f"  {row['elapsed_s']:7.0f} s  rss {row['rss_kib']} KiB  fds {row['fds']}  "
                              f"cpu {row['cpu_s']} s", flush=True)
                    next_sample += o.interval
                if wrk.exit_status() is not None:
                    break
                if now > o.duration + 60:
                    raise HarnessError("wrk still running a minute after the soak's end")
                time.sleep(min(0.5, max(0.0, next_sample - (time.monotonic() - t0))))
        log = (o.run_dir / "wrk.log").read_text(errors="replace")
        summary_line = next((l for l in log.splitlines() if l.startswith("WRK_JSON ")), None)
        status_line = next((l for l in log.splitlines() if l.startswith("SOAK_STATUS ")), None)
        if wrk.exit_status() != 0 or summary_line is None:
            raise HarnessError(f"wrk exited {wrk.exit_status()}: {log.strip()[-400:]}")
        load = json.loads(summary_line[len("WRK_JSON "):])
        statuses = json.loads(status_line[len("SOAK_STATUS "):]) if status_line else {}
        # After the load: coregate must still answer, with its idle connections back in pools.
        preflight("coregate after the soak", host, listen_port)
    finally:
        if wrk:
            wrk.stop()
        if coregate:
            coregate.stop()
        origin.stop()
        for server in faults.values():
            server.stop()

    result = verdict(rows, warmup)
    seconds = load["duration_us"] / 1e6
    result.update({
        "command": o.command, "started": started_at.isoformat(timespec="seconds"),
        "duration_s": o.duration, "rate": o.rate, "conns": o.conns,
        "requests": load["requests"], "achieved_rps": round(load["requests"] / seconds, 1),
        "statuses": dict(sorted(statuses.items())), "wrk_errors": load["errors"],
        "latency_us": load["latency_us"], "faults_served": {k: s.served for k, s in faults.items()},
    })
    (o.run_dir / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"soak: {result['requests']} requests in {seconds:.0f} s ({result['achieved_rps']} req/s), "
          f"statuses {result['statuses']}, wrk errors {load['errors']} (wrk counts every "
          f"non-2xx answer, the faults' 502 and 504, as a status error)")
    for key, unit in (("rss_kib", "KiB"), ("fds", "")):
        r = result[key]
        print(f"  {key:8s} first {r['first']} {unit}  last {r['last']} {unit}  max {r['max']} {unit}")
    if result["flat"] is None:
        print(f"soak verdict: none ({result['why']})")
        return 0
    print(f"soak verdict: {'FLAT' if result['flat'] else 'GROWING'} after {warmup:.0f} s of warm-up: {result['why']}")
    return 0 if result["flat"] else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HarnessError as e:
        print(f"soak: {e}", file=sys.stderr)
        sys.exit(2)
