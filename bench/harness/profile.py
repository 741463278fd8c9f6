#!/usr/bin/env python3
"""Where one target spends its CPU under load (run it through bench/profile.sh).

perf mode (default): the origin and the target start as in bench/run.sh (same configs, same
pinning); wrk runs GET load while `perf record -a -g` samples the whole box; then
`perf report --no-children --sort symbol` restricted to the target's busiest threads (--comm, or
--pid for NGINX, whose thread names the origin shares) prints the top symbols.

sched mode (--sched RATE): oha loads the target at RATE req/s (open loop, -c CONNS) while
`perf sched record -a` traces every context switch and wake-up on the box; then
`perf sched latency` lists, per task, how long it waited between being woken (or preempted)
and running: the average and the worst delay, and when the worst happened. This is where a
latency tail made by scheduling shows itself: the proxy waiting behind the origin or the load
generator on a shared CPU, or sleeping when it had work.

callgrind mode: the target runs under `valgrind --tool=callgrind`; after a warm-up its counters
are zeroed (callgrind_control -z), wrk runs, the counters are dumped (callgrind_control -d), and
the report gives instructions per request and the top functions. Instruction counts barely move
from run to run, so on a noisy box they compare two builds better than time does; they do not
see cache misses, syscalls or waiting.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import loads
from procs import HarnessError, Registry, group_pids, pinned, run_bounded, thread_cpu
from targets import BASE_TARGET, TARGETS, Layout, Upstream, start


def busiest_threads(before: dict[str, float], after: dict[str, float]) -> list[str]:
    """Thread names that did at least 10% of the target's CPU time during the load."""
    used = {c: after.get(c, 0.0) - before.get(c, 0.0) for c in after}
    total = sum(used.values()) or 1.0
    return sorted((c for c, t in used.items() if t / total >= 0.10), key=lambda c: -used[c])


def record_under_load(o, layout: Layout, registry: Registry, load: list[str], record: list[str]) -> str:
    """Runs the load generator `load` (o.duration + 2 s) in the background and, once it reached
    steady state, `perf <record...> -- sleep o.duration`; returns what the load generator
    printed."""
    name = load[0]
    gen = subprocess.Popen(pinned(load, layout.loadgen_cpus), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    registry.add(gen.pid, name)
    try:
        time.sleep(1)  # let the load reach steady state before recording
        rc, _, err = run_bounded("perf", ["perf", *record, "--", "sleep", str(o.duration)], registry,
                                 timeout=o.duration + 60)
        if rc != 0:
            raise HarnessError(f"perf {' '.join(record[:2])} exited {rc}: {err.strip()[-400:]}")
        out, _ = gen.communicate(timeout=o.duration + 60)
    finally:
        if gen.poll() is None:
            gen.kill()
            gen.wait()
        registry.remove(gen.pid)
    return out


def perf_profile(o, layout: Layout, registry: Registry, running) -> int:
    data = o.run_dir / "perf.data"
    url = f"http://{layout.host}:{running.port}{o.path}"
    threads0 = thread_cpu(running.pgid)
    out = record_under_load(
        o, layout, registry,
        ["wrk", "-t1", f"-c{o.conns}", f"-d{o.duration + 2}s", "-s", str(loads.WRK_DIR / "get.lua"), url],
        ["record", "-a", "-g", "-F", str(o.freq), "-o", str(data)])
    threads1 = thread_cpu(running.pgid)
    line = next((l for l in out.splitlines() if l.startswith("WRK_JSON")), "")
    m = re.search(r'"requests":(\d+),', line)
    print(f"load: wrk -t1 -c{o.conns} GET {o.path} for {o.duration + 2} s: "
          f"{int(m.group(1)) / (o.duration + 2):,.0f} req/s" if m else "load: wrk printed no summary")

    comms = busiest_threads(threads0, threads1)
    if running.spec.kind == "nginx":
        # The origin's worker is also called "nginx": select the proxy's processes by PID.
        select = ["--pid", ",".join(str(p) for p in group_pids(running.pgid))]
        what = f"pids {select[1]} (the nginx proxy's master and workers)"
    else:
        select = ["--comm", ",".join(comms)]
        what = f"threads named {', '.join(comms)}"
    argv = ["perf", "report", "-i", str(data), "--no-children", "--sort", "symbol", "--stdio",
            "-g", "none", "--percentage", "relative", "--percent-limit", "0.5", *select]
    print(f"perf report for {running.spec.name}, {what}:")
    print("  " + " ".join(argv))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    report = "\n".join(l.rstrip() for l in proc.stdout.splitlines())
    (o.run_dir / "perf-report.txt").write_text(report + "\n")
    rows = [l for l in report.splitlines() if l and not l.startswith("#")]
    print("\n".join(rows[: o.top]) or proc.stderr.strip())
    print(f"\nfull report: {o.run_dir / 'perf-report.txt'}; call graphs: perf report -i {data} --no-children "
          + " ".join(select))
    return 0


def sched_profile(o, layout: Layout, registry: Registry, running) -> int:
    data = o.run_dir / "sched.data"
    url = f"http://{layout.host}:{running.port}{o.path}"
    db = o.run_dir / "oha.sqlite"
    out = record_under_load(
        o, layout, registry,
        ["oha", "-z", f"{o.duration + 2}s", "-w", "-q", str(o.sched), "-c", str(o.conns),
         "--latency-correction", "--no-tui", "--output-format", "json", "--worker-threads", "1",
         "--db-url", str(db), url],
        ["sched", "record", "-a", "-o", str(data)])
    m = re.search(r'"p99\.9":\s*([0-9.e-]+)', out)
    print(f"load: oha -q {o.sched} -c{o.conns} GET {o.path} for {o.duration + 2} s"
          + (f": p99.9 {float(m.group(1)) * 1e3:.2f} ms" if m else ""))
    argv = ["perf", "sched", "latency", "-i", str(data), "--sort", "max"]
    print("  " + " ".join(argv))
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    (o.run_dir / "sched-latency.txt").write_text(proc.stdout)
    rows = [l for l in proc.stdout.splitlines() if l.strip()]
    print("\n".join(rows[: o.top + 3]) or proc.stderr.strip())
    print(f"\nfull report: {o.run_dir / 'sched-latency.txt'}; every switch: perf sched timehist -i {data}")
    return 0


def callgrind_profile(o, layout: Layout, registry: Registry, running) -> int:
    url = f"http://{layout.host}:{running.port}{o.path}"
    pids = [str(p) for p in group_pids(running.pgid)]  # NGINX: master and workers
    loads.wrk(url, "get.lua", o.conns, 2, registry, layout.loadgen_cpus)  # warm-up, not counted
    subprocess.run(["callgrind_control", "-z", *pids], capture_output=True, timeout=60)
    res = loads.wrk(url, "get.lua", o.conns, o.duration, registry, layout.loadgen_cpus)
    before = set(o.run_dir.glob("callgrind.out.*"))
    subprocess.run(["callgrind_control", "-d", *pids], capture_output=True, timeout=120)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (set(o.run_dir.glob("callgrind.out.*")) - before):
        time.sleep(0.2)
    dumps = sorted(set(o.run_dir.glob("callgrind.out.*")) - before)
    if not dumps:
        raise HarnessError("callgrind wrote no dump (is the target still running under valgrind?)")
    total = 0
    for d in dumps:
        m = re.search(r"^(?:summary|totals):\s+(\d+)", d.read_text(errors="replace"), re.M)
        total += int(m.group(1)) if m else 0
    requests = max(res["requests"], 1)
    print(f"load: wrk -t1 -c{o.conns} GET {o.path} for {o.duration} s under callgrind: "
          f"{res['requests']:,} requests")
    print(f"instructions: {total:,} in total, {total / requests:,.0f} per request")
    biggest = max(dumps, key=lambda d: d.stat().st_size)
    proc = subprocess.run(["callgrind_annotate", "--inclusive=no", str(biggest)],
                          capture_output=True, text=True, timeout=300)
    (o.run_dir / "callgrind-report.txt").write_text(proc.stdout)
    rows = [l.rstrip() for l in proc.stdout.splitlines()]
    start = next((i for i, l in enumerate(rows) if "file:function" in l), 0)
    print("\n".join(rows[start : start + o.top + 2]))
    print(f"\nfull report: {o.run_dir / 'callgrind-report.txt'}; dumps: {', '.join(d.name for d in dumps)}")
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="bench/profile.sh", description=__doc__.split("\n\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True)
    # Another build is profiled as `coregate` with --coregate-bin.
    ap.add_argument("--target", default="coregate",
                    choices=[t for t in TARGETS if t not in ("direct", BASE_TARGET)])
    ap.add_argument("--duration", type=int, default=10, help="seconds of sampled load")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--path", default="/5b")
    ap.add_argument("--freq", type=int, default=999, help="perf sampling frequency, Hz")
    ap.add_argument("--top", type=int, default=30, help="report lines printed")
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--sched", type=int, metavar="RATE",
                    help="trace scheduling under oha at RATE req/s instead of sampling CPU")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--port-base", type=int, default=int(os.environ.get("BENCH_PORT_BASE", 28000)))
    ap.add_argument("--coregate-bin", type=Path, required=True)
    o = ap.parse_args(argv)
    o.run_dir.mkdir(parents=True, exist_ok=True)

    import resource
    layout = Layout(host="127.0.0.1", port_base=o.port_base, workers=o.workers, pin=True,
                    ncpu=os.cpu_count() or 1, nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    registry = Registry(o.run_dir / "pgids")
    upstream = Upstream(layout, o.run_dir, registry)
    wrap = None
    if o.callgrind:
        wrap = ["valgrind", "--tool=callgrind", "--trace-children=no",
                f"--callgrind-out-file={o.run_dir}/callgrind.out.%p"]
    running = None
    try:
        upstream.start()
        running = start(layout.spec(o.target), layout, o.run_dir, registry, o.coregate_bin,
                        wrap=wrap, start_timeout=120 if o.callgrind else 10)
        profile = callgrind_profile if o.callgrind else sched_profile if o.sched else perf_profile
        return profile(o, layout, registry, running)
    except HarnessError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if running:
            running.stop()
        upstream.stop()


if __name__ == "__main__":
    import signal

    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    sys.exit(main(sys.argv[1:]))
