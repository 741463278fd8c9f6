#!/usr/bin/env python3
"""coregate side-by-side load harness (run it through bench/run.sh, which installs the tools,
builds coregate and guards the run with an EXIT trap).

Phases, each interleaving the targets and repeating the round (A B C D A B C D ...), every
target started fresh for its slot so no idle proxy shares the box with the one measured:

    throughput  wrk -t1 at saturation over the scenarios of loads.SCENARIOS; proxy and origin
                CPU per request; proxy RSS/PSS after the slot
    latency     oha at a fixed rate (half NGINX's get-5b-c64 median of this run), corrected for
                coordinated omission: p50/p99/p99.9 and the percentile distribution
    scaling     wrk -t1 GET 5 B at 1..1024 client connections: req/s and p99; coregate also
                with one shard
    idle        proxy memory per idle keep-alive client connection (idle_conns.py)
    k6          k6 constant-arrival-rate run with p99/p99.9 thresholds
    failover    coregate in front of three endpoints at a constant arrival rate (k6), one
                killed a third of the way through and brought back at two thirds: failures
                and p99 before, during and after (failover.py)
    overhead    what coregate's optional features cost: wrk -t1 -c64 GET 5 B through plain
                coregate, with the access log on, with /metrics scraped every second, and with
                a rate limit configured but not reached
    tls-handshake   TLS handshakes per second on each proxy's TLS listener (same ECDSA P-256
                certificate): full (wrk over https with Connection: close, and the handshakes
                client back to back) and resumed (the handshakes client offering a ticket)
    tls-throughput  wrk -t1 -c64 GET 5 B and 16 KiB over keep-alive HTTPS: req/s, CPU per request
    tls-idle        memory per idle HTTPS keep-alive connection (idle_conns.py --tls)
    tls-latency     p99 of plain keep-alive GETs at a fixed rate (oha), alone and while
                the handshakes client runs 500 full handshakes per second on the same proxy

Every raw measurement goes to RUN_DIR/results.jsonl as it is taken; report.py turns the file
into the markdown tables and charts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import failover as failover_scenario
import loads
import report
from procs import (HarnessError, Registry, cpu_seconds, cpu_split, pss_kib, rss_kib, run_bounded,
                   sched_counts)
from targets import (BASE_TARGET, BASELINE, BENCH_DIR, EXTRA_TARGETS, FEATURE_TARGETS, TARGETS,
                     TLS_TARGETS, Layout, Upstream, coregate_missing, start)

PHASES = ("throughput", "latency", "scaling", "idle", "k6", "failover", "overhead",
          "tls-handshake", "tls-throughput", "tls-idle", "tls-latency")
# Full handshakes per second that run beside the tls-latency phase's plain requests.
TLS_LATENCY_HANDSHAKES = 500
# Connections the handshakes client keeps going at once in the tls-handshake phase: enough that
# the CPUs, not the round trips of a few sequential clients, bound the rate.
HANDSHAKE_CONNECTIONS = 16
TLS_SCENARIOS = (("get-5b-c64", "/5b"), ("get-16k-c64", "/16k"))
OVERHEAD_TARGETS = ("coregate", *FEATURE_TARGETS)
SCRAPE_INTERVAL_S = 1.0
SCALING_CONNS = (1, 16, 64, 256, 1024)
SMOKE_SCALING_CONNS = (1, 256)


class Run:
    """One harness run: options, the shared origin, the results file, what failed."""

    def __init__(self, opts: argparse.Namespace):
        self.o = opts
        self.run_dir: Path = opts.run_dir
        self.registry = Registry(self.run_dir / "pgids")
        self.layout = Layout(host="127.0.0.1", port_base=opts.port_base, workers=opts.workers,
                             pin=not opts.no_pin, ncpu=os.cpu_count() or 1, nofile=nofile_limit(),
                             tls=any(phase.startswith("tls-") for phase in opts.only))
        self.results = (self.run_dir / "results.jsonl").open("a")
        self.upstream = Upstream(self.layout, self.run_dir, self.registry)
        self.skipped: dict[str, str] = {}   # target -> why it was not measured (not an error)
        self.failed: dict[str, str] = {}    # target -> what went wrong (an error)
        self.fixed_rate: int | None = opts.rate
        self.started = datetime.now(timezone.utc)

    # -- bookkeeping ------------------------------------------------------------------------

    def record(self, phase: str, repeat: int, target: str, **fields) -> None:
        row = {"phase": phase, "repeat": repeat, "target": target, **fields}
        self.results.write(json.dumps(row) + "\n")
        self.results.flush()

    def url(self, target: str, path: str) -> str:
        return f"http://{self.layout.host}:{self.layout.port(target)}{path}"

    def usable(self, targets) -> list[str]:
        return [t for t in targets if t not in self.skipped and t not in self.failed]

    def slot(self, target: str):
        """Starts `target` for one slot; returns the running target, or None if it failed."""
        try:
            return start(self.layout.spec(target), self.layout, self.run_dir, self.registry,
                         self.o.coregate_bin, baseline_bin=self.o.baseline_bin)
        except HarnessError as e:
            self.failed[target] = str(e)
            say(f"  {target}: FAILED to start: {e}")
            return None

    def warm_up(self, target: str) -> None:
        if self.o.warmup:
            loads.wrk(self.url(target, "/5b"), "get.lua", 64, self.o.warmup, self.registry,
                      self.layout.loadgen_cpus)

    def rounds(self, phase: str, targets, measure) -> None:
        """Calls measure(repeat, target, running) for every slot of a phase: targets in turn,
        the round repeated; each target started for its slot and stopped after it. A target
        that fails is reported and left out of the rest of the run."""
        for r in range(1, self.o.repeats + 1):
            for t in self.usable(targets):
                say(f"[{phase} {r}/{self.o.repeats}] {t}")
                running = self.slot(t)
                if running is None:
                    continue
                try:
                    measure(r, t, running)
                except HarnessError as e:
                    self.failed[t] = f"{phase}: {e}"
                    say(f"  {t}: FAILED: {e}")
                finally:
                    running.stop()

    # -- phases -----------------------------------------------------------------------------

    def throughput(self) -> None:
        scenarios = [s for s in loads.SCENARIOS if not self.o.smoke or s.name in loads.SMOKE_SCENARIOS]
        if self.o.scenarios:
            scenarios = [s for s in scenarios if s.name in self.o.scenarios.split(",")]

        def measure(r: int, t: str, running) -> None:
            self.warm_up(t)
            for s in scenarios:
                cpu0 = cpu_split(running.pgid), cpu_seconds(self.upstream.pgid)
                res = loads.wrk(self.url(t, s.path), s.script, s.conns, self.o.duration,
                                self.registry, self.layout.loadgen_cpus, s.args)
                cpu1 = cpu_split(running.pgid), cpu_seconds(self.upstream.pgid)
                n = max(res["requests"], 1)
                split = (None if cpu0[0] is None
                         else [(after - before) * 1e6 / n for before, after in zip(cpu0[0], cpu1[0])])
                proxy_us = None if split is None else sum(split)
                origin_us = (cpu1[1] - cpu0[1]) * 1e6 / n
                self.record("throughput", r, t, scenario=s.name, rps=res["rps"],
                            requests=res["requests"], errors=res["errors"],
                            proxy_cpu_us=proxy_us, origin_cpu_us=origin_us,
                            proxy_user_us=split and split[0], proxy_kernel_us=split and split[1],
                            latency_us=res["latency_us"])
                say(f"  {s.name:<13} {res['rps']:>10,.0f} req/s"
                    + (f"  proxy {proxy_us:6.2f} us/req" if proxy_us is not None else "")
                    + f"  origin {origin_us:5.2f} us/req"
                    + (f"  ERRORS {res['errors']}" if res["error_count"] else ""))
            self.record("throughput", r, t, scenario="memory", rss_kib=rss_kib(running.pgid),
                        pss_kib=pss_kib(running.pgid))

        self.rounds("throughput", self.o.targets, measure)

    def calibrate_rate(self) -> int | None:
        """Half of NGINX's get-5b-c64 req/s: the median of this run's throughput phase, or a
        dedicated measurement if that phase did not run for NGINX."""
        rows = [row["rps"] for row in report.load(self.run_dir)
                if row["phase"] == "throughput" and row["target"] == BASELINE
                and row.get("scenario") == loads.HEADLINE]
        if not rows:
            say(f"[latency] measuring {BASELINE} max req/s to set the fixed rate")
            running = self.slot(BASELINE)
            if running is None:
                return None
            try:
                self.warm_up(BASELINE)
                rows = [loads.wrk(self.url(BASELINE, "/5b"), "get.lua", 64, self.o.duration,
                                  self.registry, self.layout.loadgen_cpus)["rps"]]
                self.record("calibration", 0, BASELINE, scenario=loads.HEADLINE, rps=rows[0])
            finally:
                running.stop()
        return int(statistics.median(rows) / 2)

    def latency(self) -> None:
        if self.fixed_rate is None:
            self.fixed_rate = self.calibrate_rate()
        if not self.fixed_rate:
            say("[latency] skipped: no NGINX figure to set the rate from (give --rate)")
            return
        say(f"[latency] fixed rate {self.fixed_rate} req/s, oha -c64 --latency-correction")

        def measure(r: int, t: str, running) -> None:
            self.warm_up(t)
            db = self.run_dir / f"oha-{t}-{r}.sqlite"
            cpu0 = cpu_seconds(running.pgid)
            sched0 = sched_counts(running.pgid), sched_counts(self.upstream.pgid)
            res = loads.oha(self.url(t, "/5b"), self.fixed_rate, 64, self.o.oha_duration, db,
                            self.registry, self.layout.loadgen_cpus)
            cpu1 = cpu_seconds(running.pgid)
            sched1 = sched_counts(running.pgid), sched_counts(self.upstream.pgid)
            n = max(res["requests"], 1)
            res["proxy_cpu_us"] = None if cpu0 is None else (cpu1 - cpu0) * 1e6 / n
            res.update(scheduling_per_request("proxy", sched0[0], sched1[0], n))
            res.update(scheduling_per_request("origin", sched0[1], sched1[1], n))
            res["distribution"] = loads.latency_distribution(db)
            db.unlink(missing_ok=True)
            self.record("latency", r, t, **res)
            say(f"  p50 {res['p50_ms']:.3f} ms  p99 {res['p99_ms']:.3f} ms  p99.9 {res['p99.9_ms']:.3f} ms"
                f"  achieved {res['achieved_rps']:,.0f} req/s"
                + (f"  proxy run-queue {res['proxy_runq_us']:.1f} us/req, sleeps"
                   f" {res['proxy_sleeps_per_1k']:.0f}/1k, preempted {res['proxy_preempted_per_1k']:.0f}/1k"
                   if "proxy_runq_us" in res else "")
                + (f"  ERRORS {res['errors']}" if res["errors"] else ""))

        self.rounds("latency", self.o.targets, measure)

    def scaling(self) -> None:
        targets = list(self.o.targets)
        if "coregate" in targets:
            targets.insert(targets.index("coregate") + 1, "coregate-1shard")
            if "coregate" in self.skipped:
                self.skipped["coregate-1shard"] = self.skipped["coregate"]
        levels = SMOKE_SCALING_CONNS if self.o.smoke else SCALING_CONNS

        def measure(r: int, t: str, running) -> None:
            self.warm_up(t)
            for c in levels:
                res = loads.wrk(self.url(t, "/5b"), "get.lua", c, self.o.duration, self.registry,
                                self.layout.loadgen_cpus)
                p99 = res["latency_us"]["p"]["99"] / 1000.0
                self.record("scaling", r, t, conns=c, rps=res["rps"], p99_ms=p99, errors=res["errors"])
                say(f"  c={c:<5} {res['rps']:>10,.0f} req/s  p99 {p99:8.3f} ms"
                    + (f"  ERRORS {res['error_count']}" if res["error_count"] else ""))

        self.rounds("scaling", targets, measure)

    def idle(self) -> None:
        conns = self.o.idle_conns
        budget = self.layout.nofile - 300
        if conns > budget:
            say(f"[idle] open-file limit {self.layout.nofile} allows {budget} connections, not {conns}")
            conns = budget

        def measure(r: int, t: str, running) -> None:
            self.warm_up(t)
            argv = [sys.executable, str(Path(__file__).with_name("idle_conns.py")),
                    "--addr", f"{self.layout.host}:{running.port}", "--pgid", str(running.pgid),
                    "--conns", str(conns)]
            rc, out, err = run_bounded("idle_conns", argv, self.registry, timeout=180,
                                       cpus=self.layout.loadgen_cpus)
            try:
                res = json.loads(out.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                raise HarnessError(f"idle_conns exited {rc}: {err.strip()[-400:]}")
            self.record("idle", r, t, **res)
            say(f"  {res['open_at_measure']}/{conns} idle connections open, "
                f"RSS {res['rss_before_kib'] / 1024:.1f} -> {res['rss_after_kib'] / 1024:.1f} MiB, "
                f"{res['bytes_per_conn']} bytes/connection"
                + ("" if rc == 0 else f"  (WARNING: {res['failed']} failed or closed)"))

        self.rounds("idle", [t for t in self.o.targets if t != "direct"], measure)

    def k6(self) -> None:
        o = self.o
        say(f"[k6] constant-rate.js at {o.k6_rate} req/s, thresholds p99<{o.k6_p99} ms, p99.9<{o.k6_p999} ms")

        def measure(r: int, t: str, running) -> None:
            res = loads.k6("constant-rate.js", self.url(t, ""), o.k6_rate, o.oha_duration, o.k6_p99,
                           o.k6_p999, self.run_dir / f"k6-{t}-{r}.json", self.registry,
                           self.layout.loadgen_cpus)
            self.record("k6", r, t, **res)
            say(f"  p99 {res['p99_ms']:.3f} ms  p99.9 {res['p99.9_ms']:.3f} ms  "
                f"{res['achieved_rps']:,.0f} req/s  thresholds {'passed' if res['passed'] else 'FAILED'}")

        self.rounds("k6", o.targets, measure)

    def failover(self) -> None:
        o = self.o
        if "coregate" not in o.targets or "coregate" in self.skipped or "coregate" in self.failed:
            say("[failover] skipped: it measures the target coregate, which is not in this run")
            return
        duration = 6 if o.smoke else max(30, 3 * o.duration)
        kill_at, restore_at = duration / 3, 2 * duration / 3
        for r in range(1, o.repeats + 1):
            say(f"[failover {r}/{o.repeats}] coregate, {o.k6_rate} req/s for {duration} s, endpoint "
                f"2 of 3 killed at {kill_at:g} s, back at {restore_at:g} s")
            try:
                shards = self.layout.workers
                cores = f"0-{shards - 1}" if shards > 1 else "0"
                res = failover_scenario.run(o.coregate_bin, self.run_dir, self.registry,
                                            self.layout.host, self.layout.port_base, o.k6_rate,
                                            duration, kill_at, restore_at, cores,
                                            self.layout.loadgen_cpus, self.layout.upstream_cpus,
                                            o.k6_p99)
            except HarnessError as e:
                self.failed["coregate"] = f"failover: {e}"
                say(f"  coregate: FAILED: {e}")
                return
            self.record("failover", r, "coregate", **res)
            for phase, p in res["phases"].items():
                p99 = "-" if p["p99_ms"] is None else f"{p['p99_ms']:.2f} ms"
                say(f"  {phase:<10} {p['requests']:>8,} requests  {p['failed_rate'] * 100:7.3f}% failed"
                    f"  p99 {p99}")
            say(f"  thresholds {'passed' if res['passed'] else 'FAILED'}")

    def overhead(self) -> None:
        if "coregate" in self.skipped:
            say(f"[overhead] skipped: {self.skipped['coregate']}")
            return

        def measure(r: int, t: str, running) -> None:
            self.warm_up(t)
            scraper = Scraper(running.admin, self.o.duration) if running.admin else None
            cpu0 = cpu_seconds(running.pgid)
            if scraper:
                scraper.start()
            res = loads.wrk(self.url(t, "/5b"), "get.lua", 64, self.o.duration, self.registry,
                            self.layout.loadgen_cpus)
            if scraper:
                scraper.join()
            cpu1 = cpu_seconds(running.pgid)
            proxy_us = None if cpu0 is None else (cpu1 - cpu0) * 1e6 / max(res["requests"], 1)
            extra = {}
            if scraper:
                if scraper.failures:
                    raise HarnessError(f"{scraper.failures} of {scraper.count + scraper.failures} "
                                       f"scrapes of http://{running.admin}/metrics failed")
                extra = {"scrapes": scraper.count, "scrape_ms": scraper.mean_ms()}
            self.record("overhead", r, t, scenario=loads.HEADLINE, rps=res["rps"],
                        requests=res["requests"], errors=res["errors"], proxy_cpu_us=proxy_us, **extra)
            say(f"  {res['rps']:>10,.0f} req/s"
                + (f"  proxy {proxy_us:6.2f} us/req" if proxy_us is not None else "")
                + (f"  {extra['scrapes']} scrapes, {extra['scrape_ms']:.1f} ms each" if extra else ""))

        self.rounds("overhead", OVERHEAD_TARGETS, measure)

    # -- TLS phases --------------------------------------------------------------------------

    def tls_url(self, target: str, path: str) -> str:
        return f"https://{self.layout.host}:{self.layout.tls_port(target)}{path}"

    def tls_targets(self) -> list[str]:
        return [t for t in self.o.targets if t in TLS_TARGETS]

    def handshakes(self, target: str, seconds: float, procs: int = 1, resume: bool = False,
                   rate: float | None = None, background: bool = False):
        """The handshakes client (bench/src/bin/handshakes.rs) against `target`'s TLS listener:
        the parsed JSON, or (background) the running process to collect with
        `parse_handshakes`."""
        if not os.access(self.o.handshakes_bin, os.X_OK):
            raise HarnessError(f"no handshakes client at {self.o.handshakes_bin}: "
                               "cargo build --release -p coregate-bench --bin handshakes")
        argv = [str(self.o.handshakes_bin),
                "--addr", f"{self.layout.host}:{self.layout.tls_port(target)}",
                "--duration", str(seconds), "--procs", str(procs)]
        if resume:
            argv.append("--resume")
        if rate:
            argv += ["--rate", str(rate)]
        if background:
            return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    start_new_session=True)
        rc, out, err = run_bounded("handshakes", argv, self.registry, timeout=seconds + 60,
                                   cpus=self.layout.loadgen_cpus)
        return self.parse_handshakes(out, err, rc)

    @staticmethod
    def parse_handshakes(out: str, err: str, rc: int) -> dict:
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (IndexError, json.JSONDecodeError):
            raise HarnessError(f"the handshakes client exited {rc}: {err.strip()[-400:]}")

    def tls_handshake(self) -> None:
        def measure(r: int, t: str, running) -> None:
            cpu0 = cpu_seconds(running.pgid)
            res = loads.wrk(self.tls_url(t, "/5b"), "close.lua", 64, self.o.duration,
                            self.registry, self.layout.loadgen_cpus)
            cpu1 = cpu_seconds(running.pgid)
            n = max(res["requests"], 1)
            proxy_us = None if cpu0 is None else (cpu1 - cpu0) * 1e6 / n
            self.record("tls-handshake", r, t, scenario="full-wrk-c64", per_second=res["rps"],
                        requests=res["requests"], errors=res["errors"], proxy_cpu_us=proxy_us)
            say(f"  full (wrk, new connection per request) {res['rps']:>9,.0f}/s"
                + (f"  proxy {proxy_us:7.1f} us each" if proxy_us is not None else ""))
            for mode, resume in (("full", False), ("resumed", True)):
                cpu0 = cpu_seconds(running.pgid)
                hs = self.handshakes(t, self.o.duration, procs=HANDSHAKE_CONNECTIONS, resume=resume)
                cpu1 = cpu_seconds(running.pgid)
                proxy_us = (None if cpu0 is None
                            else (cpu1 - cpu0) * 1e6 / max(hs["handshakes"], 1))
                self.record("tls-handshake", r, t, scenario=mode, proxy_cpu_us=proxy_us, **hs)
                say(f"  {mode:<8} (handshakes) {hs['per_second']:>9,.1f}/s"
                    f"  resumed {hs['resumed']}/{hs['handshakes']}"
                    + (f"  proxy {proxy_us:7.1f} us each" if proxy_us is not None else "")
                    + (f"  FAILED {hs['failed']}" if hs["failed"] else ""))

        self.rounds("tls-handshake", self.tls_targets(), measure)

    def tls_throughput(self) -> None:
        def measure(r: int, t: str, running) -> None:
            for name, path in TLS_SCENARIOS:
                cpu0 = cpu_seconds(running.pgid)
                res = loads.wrk(self.tls_url(t, path), "get.lua", 64, self.o.duration,
                                self.registry, self.layout.loadgen_cpus)
                cpu1 = cpu_seconds(running.pgid)
                n = max(res["requests"], 1)
                proxy_us = None if cpu0 is None else (cpu1 - cpu0) * 1e6 / n
                self.record("tls-throughput", r, t, scenario=name, rps=res["rps"],
                            requests=res["requests"], errors=res["errors"], proxy_cpu_us=proxy_us,
                            latency_us=res["latency_us"])
                say(f"  {name:<13} {res['rps']:>10,.0f} req/s"
                    + (f"  proxy {proxy_us:6.2f} us/req" if proxy_us is not None else "")
                    + (f"  ERRORS {res['errors']}" if res["error_count"] else ""))

        self.rounds("tls-throughput", self.tls_targets(), measure)

    def tls_idle(self) -> None:
        conns = min(self.o.idle_conns, self.layout.nofile - 300)

        def measure(r: int, t: str, running) -> None:
            argv = [sys.executable, str(Path(__file__).with_name("idle_conns.py")),
                    "--addr", f"{self.layout.host}:{self.layout.tls_port(t)}",
                    "--pgid", str(running.pgid), "--conns", str(conns), "--tls"]
            rc, out, err = run_bounded("idle_conns", argv, self.registry, timeout=300,
                                       cpus=self.layout.loadgen_cpus)
            try:
                res = json.loads(out.strip().splitlines()[-1])
            except (IndexError, json.JSONDecodeError):
                raise HarnessError(f"idle_conns --tls exited {rc}: {err.strip()[-400:]}")
            self.record("tls-idle", r, t, **res)
            say(f"  {res['open_at_measure']}/{conns} idle HTTPS connections open, "
                f"{res['bytes_per_conn']} bytes/connection"
                + ("" if rc == 0 else f"  (WARNING: {res['failed']} failed or closed)"))

        self.rounds("tls-idle", self.tls_targets(), measure)

    def tls_latency(self) -> None:
        if self.fixed_rate is None:
            self.fixed_rate = self.calibrate_rate()
        if not self.fixed_rate:
            say("[tls-latency] skipped: no NGINX figure to set the rate from (give --rate)")
            return
        say(f"[tls-latency] plain GETs at {self.fixed_rate} req/s (oha -c64), alone and beside "
            f"{TLS_LATENCY_HANDSHAKES} full TLS handshakes/s")

        def measure(r: int, t: str, running) -> None:
            self.warm_up(t)
            for beside in (0, TLS_LATENCY_HANDSHAKES):
                db = self.run_dir / f"oha-tls-{t}-{r}-{beside}.sqlite"
                load = (self.handshakes(t, self.o.oha_duration + 1, rate=beside, background=True)
                        if beside else None)
                try:
                    res = loads.oha(self.url(t, "/5b"), self.fixed_rate, 64, self.o.oha_duration,
                                    db, self.registry, self.layout.loadgen_cpus)
                finally:
                    hs = None
                    if load is not None:
                        out, err = load.communicate(timeout=self.o.oha_duration + 60)
                        hs = self.parse_handshakes(out, err, load.returncode)
                db.unlink(missing_ok=True)
                self.record("tls-latency", r, t, handshakes_per_s=beside, handshakes=hs, **res)
                say(f"  beside {beside:>3} handshakes/s: p50 {res['p50_ms']:.3f} ms  "
                    f"p99 {res['p99_ms']:.3f} ms"
                    + (f"  ({hs['per_second']:.0f} handshakes/s done, {hs['failed']} failed)"
                       if hs else ""))

        self.rounds("tls-latency", self.tls_targets(), measure)

    # -- the whole run ----------------------------------------------------------------------

    def execute(self) -> int:
        o = self.o
        for t in o.targets:
            if t == BASE_TARGET:
                missing = coregate_missing(o.baseline_bin, "--baseline-bin")
            elif t.startswith("coregate"):
                missing = coregate_missing(o.coregate_bin)
            else:
                continue
            if missing:
                self.skipped[t] = missing
        if o.baseline_bin and BASE_TARGET not in o.targets:
            say(f"note: --baseline-bin {o.baseline_bin} is unused, {BASE_TARGET} is not among the targets")
        for t, why in self.skipped.items():
            say(f"skipping {t}: {why}")
        self.write_meta()
        self.upstream.start()
        try:
            for phase in o.only:
                if not tools_for(phase):
                    say(f"[{phase}] skipped: {', '.join(missing_tools(phase))} not installed")
                    continue
                started = time.monotonic()
                getattr(self, phase.replace("-", "_"))()
                say(f"[{phase}] done in {time.monotonic() - started:.0f} s")
        finally:
            self.upstream.stop()
            self.results.close()
        self.write_meta()
        return 1 if self.failed else 0

    def write_meta(self) -> None:
        o = self.o
        meta = {
            "date": self.started.strftime("%Y-%m-%d %H:%M UTC"),
            "finished": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": o.command or shlex.join(sys.argv),
            "machine": machine(),
            "versions": versions(o.coregate_bin, o.baseline_bin),
            "targets": o.targets,
            "phases": o.only,
            "repeats": o.repeats,
            "duration_s": o.duration,
            "oha_duration_s": o.oha_duration,
            "smoke": o.smoke,
            "workers": self.layout.workers,
            "pinned": self.layout.pin,
            "loadgen_cpus": self.layout.loadgen_cpus,
            "upstream_cpus": self.layout.upstream_cpus,
            "nofile": self.layout.nofile,
            "fixed_rate": self.fixed_rate,
            "idle_conns": o.idle_conns,
            "k6": {"rate": o.k6_rate, "p99_ms": o.k6_p99, "p999_ms": o.k6_p999},
            "skipped": self.skipped,
            "failed": self.failed,
        }
        (self.run_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


class Scraper(threading.Thread):
    """Scrapes coregate's /metrics every SCRAPE_INTERVAL_S while a load runs, as Prometheus
    would (one connection per scrape)."""

    def __init__(self, admin: str, duration_s: float):
        super().__init__(daemon=True)
        self.admin, self.until = admin, time.monotonic() + duration_s
        self.count, self.failures, self.total_s = 0, 0, 0.0

    def run(self) -> None:
        import urllib.request
        while time.monotonic() < self.until:
            started = time.monotonic()
            try:
                with urllib.request.urlopen(f"http://{self.admin}/metrics", timeout=5) as resp:
                    resp.read()
                    ok = resp.status == 200
            except OSError:
                ok = False
            took = time.monotonic() - started
            if ok:
                self.count += 1
                self.total_s += took
            else:
                self.failures += 1
            time.sleep(max(0.0, SCRAPE_INTERVAL_S - took))

    def mean_ms(self) -> float:
        return self.total_s * 1000 / self.count if self.count else 0.0


# -- environment ------------------------------------------------------------------------------

TOOLS = {"throughput": ["wrk"], "latency": ["wrk", "oha"], "scaling": ["wrk"], "idle": ["wrk"],
         "k6": ["k6"], "failover": ["k6"], "overhead": ["wrk"], "tls-handshake": ["wrk", "openssl"],
         "tls-throughput": ["wrk", "openssl"], "tls-idle": ["openssl"],
         "tls-latency": ["wrk", "oha", "openssl"]}


def scheduling_per_request(who: str, before, after, requests: int) -> dict:
    """What the scheduler did to `who` per request between two `sched_counts`: µs waited
    runnable for a CPU, sleeps and preemptions per 1,000 requests."""
    if before is None or after is None:
        return {}
    waited, sleeps, preempted = (b - a for a, b in zip(before, after))
    return {f"{who}_runq_us": waited * 1e6 / requests,
            f"{who}_sleeps_per_1k": sleeps * 1e3 / requests,
            f"{who}_preempted_per_1k": preempted * 1e3 / requests}


def missing_tools(phase: str) -> list[str]:
    from shutil import which
    return [t for t in TOOLS[phase] if which(t) is None]


def tools_for(phase: str) -> bool:
    return not missing_tools(phase)


def nofile_limit() -> int:
    import resource
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _cmd(argv: list[str]) -> str:
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict:
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor() or "unknown")
    mem = next((int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                if l.startswith("MemTotal:")), 0)
    distro = ""
    if Path("/etc/os-release").is_file():
        m = re.search(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text(), re.M)
        distro = m.group(1) if m else ""
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "os": distro, "mem_gib": round(mem / 1024 / 1024, 1)}


def _first(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    return m.group(1) if m else "?"


def _git(directory: Path, *args: str) -> str | None:
    """`git -C directory ARGS` output, or None if it fails (not a work tree, no git)."""
    try:
        p = subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() if p.returncode == 0 else None


def coregate_version(binary: Path, show_path: bool = False) -> str:
    """`coregate --version`, the commit of the git work tree the binary lies in (its build is
    presumed to be of that commit), and the binary's path when it lies outside this tree or
    `show_path` asks for it."""
    if not binary.is_file():
        return "not built"
    v = _first(r"coregate (\S+)", _cmd([str(binary), "--version"])).replace("?", "(no --version)")
    commit = _git(binary.resolve().parent, "rev-parse", "--short", "HEAD")
    if commit:
        dirty = _git(binary.resolve().parent, "status", "--porcelain", "--untracked-files=no")
        v += f" built from {commit}{' with uncommitted changes' if dirty else ''}"
    if show_path or not binary.resolve().is_relative_to(BENCH_DIR.parent.resolve()):
        v += f" ({binary})"
    return v


def versions(coregate_bin: Path, baseline_bin: Path | None = None) -> dict:
    v = {
        "nginx": _first(r"nginx/(\S+)", _cmd(["nginx", "-v"])),
        "haproxy": _first(r"version (\S+)", _cmd(["haproxy", "-v"])),
        "wrk": _first(r"wrk (\S+)", _cmd(["wrk", "-v"])),
        "oha": _first(r"oha (\S+)", _cmd(["oha", "--version"])),
        "k6": _first(r"k6 (v\S+)", _cmd(["k6", "version"])),
    }
    # Two coregate binaries: both paths, since their version strings may well be the same.
    v["coregate"] = coregate_version(coregate_bin, show_path=baseline_bin is not None)
    if baseline_bin is not None:
        v[BASE_TARGET] = coregate_version(baseline_bin, show_path=True)
    return v


def say(msg: str) -> None:
    print(msg, flush=True)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="bench/run.sh", description="coregate vs NGINX/HAProxy load harness")
    ap.add_argument("--run-dir", type=Path, required=True, help="where configs, logs, raw results go")
    ap.add_argument("--smoke", action="store_true",
                    help="a few seconds per target, 1 repeat, fewer scenarios (CI)")
    ap.add_argument("--repeats", type=int, help="rounds of every phase (default 3; smoke 1)")
    ap.add_argument("--duration", type=int, help="seconds per wrk measurement (default 10; smoke 1)")
    ap.add_argument("--targets", help=f"comma list of {', '.join(TARGETS)} (default: all; "
                    f"{BASE_TARGET} only with --baseline-bin)")
    ap.add_argument("--only", default=",".join(PHASES), help=f"comma list of {', '.join(PHASES)}")
    ap.add_argument("--scenarios", help="comma list of throughput scenarios (default: all): "
                    + ", ".join(s.name for s in loads.SCENARIOS))
    ap.add_argument("--rate", type=int, help="fixed rate of the latency phase (default: half NGINX's max)")
    ap.add_argument("--workers", type=int, help="shards / workers / threads of each proxy (default nproc)")
    ap.add_argument("--port-base", type=int, default=int(os.environ.get("BENCH_PORT_BASE", 28000)),
                    help="origin on this port, proxies on the next ones (default 28000)")
    ap.add_argument("--no-pin", action="store_true", help="leave peers, origin and load generator unpinned")
    ap.add_argument("--idle-conns", type=int, help="idle connections of the idle phase (default 10000; smoke 1000)")
    ap.add_argument("--coregate-bin", type=Path,
                    default=Path(os.environ.get("COREGATE_BIN", BENCH_DIR.parent / "target/release/coregate")))
    ap.add_argument("--handshakes-bin", type=Path,
                    default=BENCH_DIR.parent / "target/release/handshakes",
                    help="the TLS handshake load generator (cargo build --release -p coregate-bench "
                         "--bin handshakes)")
    ap.add_argument("--baseline-bin", type=Path, default=os.environ.get("COREGATE_BASE_BIN") or None,
                    help=f"a second coregate binary, run as target {BASE_TARGET} with the same config "
                         "as coregate (default: $COREGATE_BASE_BIN)")
    ap.add_argument("--results", type=Path, help="markdown file to update between the harness markers")
    ap.add_argument("--command", help=argparse.SUPPRESS)  # the command line as the user typed it
    ap.add_argument("--check-args", action="store_true", help=argparse.SUPPRESS)  # run.sh: parse, exit
    o = ap.parse_args(argv)

    if o.baseline_bin is not None:
        o.baseline_bin = Path(o.baseline_bin).absolute()
        if not o.baseline_bin.is_file() or not os.access(o.baseline_bin, os.X_OK):
            ap.error(f"--baseline-bin {o.baseline_bin}: no executable file there")
    if o.targets is None:
        o.targets = [t for t in TARGETS if t != BASE_TARGET or o.baseline_bin]
    else:
        o.targets = [t for t in o.targets.split(",") if t]
    bad = [t for t in o.targets if t not in TARGETS + EXTRA_TARGETS]
    if bad:
        ap.error(f"unknown target(s) {', '.join(bad)}; choose from {', '.join(TARGETS)}")
    if BASE_TARGET in o.targets and o.baseline_bin is None:
        ap.error(f"target {BASE_TARGET} runs a second coregate binary: give it with --baseline-bin PATH "
                 "(or COREGATE_BASE_BIN)")
    o.only = [p for p in o.only.split(",") if p]
    bad = [p for p in o.only if p not in PHASES]
    if bad:
        ap.error(f"unknown phase(s) {', '.join(bad)}; choose from {', '.join(PHASES)}")
    o.only = [p for p in PHASES if p in o.only]  # always in dependency order
    names = [s.name for s in loads.SCENARIOS]
    bad = [n for n in (o.scenarios or "").split(",") if n and n not in names]
    if bad:
        ap.error(f"unknown scenario(s) {', '.join(bad)}; choose from {', '.join(names)}")
    o.repeats = o.repeats or (1 if o.smoke else 3)
    o.duration = o.duration or (1 if o.smoke else 10)
    o.oha_duration = 2 if o.smoke else o.duration
    o.warmup = 0 if o.smoke else 2
    o.idle_conns = o.idle_conns or (1000 if o.smoke else 10000)
    o.workers = o.workers or os.cpu_count() or 1
    o.k6_rate = int(os.environ.get("K6_RATE", 1000))
    o.k6_p99 = float(os.environ.get("K6_P99_MS", 50))
    o.k6_p999 = float(os.environ.get("K6_P999_MS", 100))
    if o.repeats < 1 or o.duration < 1 or o.workers < 1:
        ap.error("--repeats, --duration and --workers must be at least 1")
    return o


def _interrupt(signum, frame):
    """run.sh's trap sends SIGTERM: unwind like Ctrl-C so every `finally` stops its process."""
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    o = parse_args(argv)
    if o.check_args:
        return 0
    o.run_dir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)
    run = Run(o)
    try:
        status = run.execute()
    except KeyboardInterrupt:
        say("interrupted: stopping everything started")
        return 130
    except HarnessError as e:
        say(f"error: {e}")
        return 1
    out = report.write(o.run_dir, o.results)
    say("")
    say(out)
    for t, why in run.failed.items():
        say(f"FAILED {t}: {why}")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
