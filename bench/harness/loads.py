"""The load generators: wrk (closed loop, throughput and scaling), oha (open loop at a fixed
rate, latency corrected for coordinated omission), k6 (open loop with pass/fail thresholds).
Each run is bounded: the tool's own duration plus a margin, after which its process group is
ended (procs.run_bounded)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from procs import HarnessError, Registry, run_bounded
from targets import BENCH_DIR

WRK_DIR = BENCH_DIR / "wrk"
K6_DIR = BENCH_DIR / "k6"


@dataclass(frozen=True)
class Scenario:
    """One wrk throughput test: script, path, client connections, script arguments."""

    name: str
    script: str
    path: str
    conns: int
    args: tuple[str, ...] = ()


SCENARIOS = (
    Scenario("get-5b-c64", "get.lua", "/5b", 64),
    Scenario("get-5b-c256", "get.lua", "/5b", 256),
    Scenario("get-1k-c64", "get.lua", "/1k", 64),
    Scenario("get-16k-c64", "get.lua", "/16k", 64),
    Scenario("mixed-c64", "mixed.lua", "/", 64),
    Scenario("post-1k-c64", "post.lua", "/post", 64, ("1024",)),
    Scenario("post-64k-c64", "post.lua", "/post", 64, ("65536",)),
    Scenario("close-c64", "close.lua", "/5b", 64),
)
HEADLINE = "get-5b-c64"
# --smoke runs one scenario per script, enough to prove each works end to end.
SMOKE_SCENARIOS = ("get-5b-c64", "get-16k-c64", "mixed-c64", "post-64k-c64", "close-c64")


def wrk(url: str, script: str, conns: int, duration: int, registry: Registry,
        cpus: str | None, args: tuple[str, ...] = ()) -> dict:
    """wrk -t1 -cN -dS with one of bench/wrk/*.lua; returns its WRK_JSON figures plus rps."""
    argv = ["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "--timeout", "5s",
            "-s", str(WRK_DIR / script), url]
    if args:
        argv += ["--", *args]
    rc, out, err = run_bounded("wrk", argv, registry, timeout=duration + 30, cpus=cpus)
    line = next((l for l in out.splitlines() if l.startswith("WRK_JSON ")), None)
    if rc != 0 or line is None:
        raise HarnessError(f"wrk {url} exited {rc}: {(err or out).strip()[-400:]}")
    res = json.loads(line[len("WRK_JSON "):])
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6) if res["duration_us"] else 0.0
    res["error_count"] = sum(res["errors"].values())
    return res


def oha(url: str, rate: int, conns: int, duration: int, db: Path, registry: Registry,
        cpus: str | None) -> dict:
    """oha at a fixed rate with --latency-correction (latency counted from when each request
    was due, not when it was sent). Every request's corrected latency is also stored in `db`
    (SQLite), which `latency_distribution` reads for the percentile chart."""
    db.unlink(missing_ok=True)
    # -w: requests still in flight at the deadline complete (else oha counts them as errors).
    argv = ["oha", "-z", f"{duration}s", "-w", "-q", str(rate), "-c", str(conns),
            "--latency-correction", "--no-tui", "--output-format", "json", "--worker-threads", "1",
            "--db-url", str(db), url]
    rc, out, err = run_bounded("oha", argv, registry, timeout=duration + 60, cpus=cpus)
    db.with_suffix(".json").write_text(out)  # oha's own report, kept beside the results
    if rc != 0:
        raise HarnessError(f"oha {url} exited {rc}: {(err or out).strip()[-400:]}")
    try:
        raw = json.loads(out)
    except json.JSONDecodeError as e:
        raise HarnessError(f"oha printed no JSON ({e}): {out[:200]!r}") from e
    pct = raw.get("latencyPercentiles", {})
    codes = raw.get("statusCodeDistribution", {})
    ok = sum(n for code, n in codes.items() if str(code).startswith("2"))
    total = sum(codes.values()) + sum(raw.get("errorDistribution", {}).values())
    return {
        "rate": rate,
        "achieved_rps": raw["summary"]["requestsPerSec"],
        "requests": total,
        "ok": ok,
        "errors": total - ok,
        # oha reports seconds; the harness keeps milliseconds.
        "p50_ms": _ms(pct.get("p50")),
        "p90_ms": _ms(pct.get("p90")),
        "p99_ms": _ms(pct.get("p99")),
        "p99.9_ms": _ms(pct.get("p99.9")),
        "p99.99_ms": _ms(pct.get("p99.99")),
        "max_ms": _ms(raw["summary"].get("slowest")),
        "error_kinds": raw.get("errorDistribution", {}),
    }


def _ms(seconds) -> float | None:
    return None if seconds is None else seconds * 1000.0


# Percentiles of the latency chart: evenly spaced on the 1/(1-p) log axis, 10 per decade.
CHART_PERCENTILES = [1 - 10 ** (-k / 10) for k in range(0, 51)]


def latency_distribution(db: Path) -> list[tuple[float, float]]:
    """(percentile, latency ms) pairs from oha's per-request records, HdrHistogram style."""
    if not db.is_file():
        return []
    with sqlite3.connect(db) as conn:
        durations = sorted(d for (d,) in conn.execute("SELECT duration FROM oha WHERE status < 400"))
    n = len(durations)
    out = []
    for p in CHART_PERCENTILES:
        if n and (1 - p) * n >= 1:  # a percentile the sample can tell apart from the maximum
            out.append((p, durations[min(n - 1, int(p * n))] * 1000.0))
    if n:
        out.append((1 - 1 / n, durations[-1] * 1000.0))  # the maximum, plotted at its rank
    return out


def k6(script: str, url: str, rate: int, duration: int, p99_ms: float, p999_ms: float,
       summary: Path, registry: Registry, cpus: str | None, extra: dict | None = None) -> dict:
    """k6 at a constant arrival rate; `passed` is whether every threshold held (k6 exits 99
    when one fails)."""
    summary.unlink(missing_ok=True)
    env = {"BASE_URL": url, "RATE": rate, "DURATION": duration, "P99_MS": p99_ms,
           "P999_MS": p999_ms, **(extra or {})}
    argv = ["k6", "run", "--quiet", "--no-color", "--no-usage-report", "--summary-export", str(summary)]
    for k, v in env.items():
        argv += ["-e", f"{k}={v}"]
    argv.append(str(K6_DIR / script))
    rc, out, err = run_bounded("k6", argv, registry, timeout=duration + 60, cpus=cpus)
    if rc not in (0, 99) or not summary.is_file():
        raise HarnessError(f"k6 {script} exited {rc}: {(err or out).strip()[-400:]}")
    metrics = json.loads(summary.read_text())["metrics"]
    dur = metrics.get("http_req_duration", {})
    reqs = metrics.get("http_reqs", {})
    failed = metrics.get("http_req_failed", {})
    dropped = metrics.get("dropped_iterations", {})
    return {
        "rate": rate,
        "passed": rc == 0,
        "p50_ms": dur.get("med"),
        "p99_ms": dur.get("p(99)"),
        "p99.9_ms": dur.get("p(99.9)"),
        "achieved_rps": reqs.get("rate"),
        "failed_rate": failed.get("value", failed.get("rate")),
        "dropped": dropped.get("count", 0),
    }
