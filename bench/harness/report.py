"""Turns a run directory (meta.json, results.jsonl) into the markdown block of RESULTS.md and the
two charts (scaling.svg, latency.svg).

Figures are medians over the repeats. A ratio to NGINX is the median of the per-repeat ratios
(each repeat's figure divided by NGINX's figure of the same repeat): the targets of one repeat
ran minutes apart, so pairing them cancels most of the drift of a shared, noisy box.

    python3 bench/harness/report.py RUN_DIR [--results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
PLOT_DIR = BENCH_DIR / "plot"
BEGIN = "<!-- harness:begin -->"
END = "<!-- harness:end -->"
BASELINE = "nginx"
HEADLINE = "get-5b-c64"
SCENARIO_TITLES = {
    "get-5b-c64": "GET 5 B c64", "get-5b-c256": "GET 5 B c256", "get-1k-c64": "GET 1 KiB c64",
    "get-16k-c64": "GET 16 KiB c64", "mixed-c64": "mixed c64", "post-1k-c64": "POST 1 KiB c64",
    "post-64k-c64": "POST 64 KiB c64", "close-c64": "close c64",
}


def load(run_dir: Path) -> list[dict]:
    path = run_dir / "results.jsonl"
    if not path.is_file():
        return []
    return [json.loads(l) for l in path.read_text().splitlines() if l.strip()]


def _median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


class Table:
    """Results indexed by (phase, target, key) -> {repeat: row}."""

    def __init__(self, rows: list[dict]):
        self.rows = rows

    def by_repeat(self, phase: str, target: str, field: str, **match) -> dict[int, float]:
        out = {}
        for r in self.rows:
            if r["phase"] == phase and r["target"] == target and all(r.get(k) == v for k, v in match.items()):
                if r.get(field) is not None:
                    out[r["repeat"]] = r[field]
        return out

    def median(self, phase, target, field, **match):
        return _median(self.by_repeat(phase, target, field, **match).values())

    def spread(self, phase, target, field, **match):
        v = list(self.by_repeat(phase, target, field, **match).values())
        return (min(v), max(v)) if v else (None, None)

    def ratio(self, phase, target, field, base=BASELINE, **match):
        """Median over repeats of target / base (NGINX unless said), paired by repeat."""
        mine = self.by_repeat(phase, target, field, **match)
        base = self.by_repeat(phase, base, field, **match)
        return _median([mine[r] / base[r] for r in mine if base.get(r)])

    def targets(self, phase: str | None = None) -> list[str]:
        seen = []
        for r in self.rows:
            if (phase is None or r["phase"] == phase) and r["target"] not in seen:
                seen.append(r["target"])
        return seen


def f_int(v) -> str:
    return "–" if v is None else f"{v:,.0f}"


def f_num(v, digits=2) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def f_ms(v) -> str:
    if v is None:
        return "–"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def markdown(run_dir: Path) -> str:
    meta = json.loads((run_dir / "meta.json").read_text())
    t = Table(load(run_dir))
    m, v = meta["machine"], meta["versions"]
    order = [x for x in meta["targets"] if x in t.targets()] + \
            [x for x in t.targets() if x not in meta["targets"]]
    lines = [
        f"### Run of {meta['date']}{' (smoke: not figures to quote)' if meta['smoke'] else ''}",
        "",
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem_gib']} GiB, kernel {m['kernel']}, {m['os']}",
        f"- command: `{meta['command']}`",
        f"- coregate {v['coregate']}; "
        + (f"coregate-base {v['coregate-base']}; " if v.get("coregate-base") else "")
        + f"nginx {v['nginx']}, HAProxy {v['haproxy']}, wrk {v['wrk']}, "
        f"oha {v['oha']}, k6 {v['k6']}",
        f"- layout: each proxy {meta['workers']} workers/threads/shards"
        + (f" pinned one per CPU; load generator on CPU {meta['loadgen_cpus']}, origin "
           f"(1 NGINX worker) on CPU {meta['upstream_cpus']}" if meta["pinned"] else ", nothing pinned (--no-pin)"),
        f"- {meta['repeats']} repeat(s), {meta['duration_s']} s per wrk measurement, targets "
        f"interleaved in each repeat: {' '.join(meta['targets'])}; phases: {', '.join(meta['phases'])}",
        "",
    ]

    if "throughput" in meta["phases"] or "latency" in meta["phases"]:
        rate = meta.get("fixed_rate")
        lines += [
            f"#### Summary: wrk -t1 -c64 GET 5 B; latency by oha at {f_int(rate)} req/s -c64 with "
            "coordinated-omission correction",
            "",
            "| target | req/s median (min–max) | vs NGINX | proxy CPU µs/req | CPU vs NGINX "
            "| p50 ms | p99 ms | p99.9 ms | RSS MiB | PSS MiB | bytes / idle conn |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for x in order:
            if x == "coregate-1shard":
                continue
            lo, hi = t.spread("throughput", x, "rps", scenario=HEADLINE)
            rps = t.median("throughput", x, "rps", scenario=HEADLINE)
            rss = t.median("throughput", x, "rss_kib", scenario="memory")
            pss = t.median("throughput", x, "pss_kib", scenario="memory")
            lines.append(
                f"| {x} | {f_int(rps)}" + (f" ({f_int(lo)}–{f_int(hi)})" if lo is not None else "")
                + f" | {f_num(t.ratio('throughput', x, 'rps', scenario=HEADLINE))}"
                f" | {f_num(t.median('throughput', x, 'proxy_cpu_us', scenario=HEADLINE), 1)}"
                f" | {f_num(t.ratio('throughput', x, 'proxy_cpu_us', scenario=HEADLINE))}"
                f" | {f_ms(t.median('latency', x, 'p50_ms'))} | {f_ms(t.median('latency', x, 'p99_ms'))}"
                f" | {f_ms(t.median('latency', x, 'p99.9_ms'))}"
                f" | {f_num(rss / 1024 if rss else None, 1)} | {f_num(pss / 1024 if pss else None, 1)}"
                f" | {f_int(t.median('idle', x, 'bytes_per_conn'))} |")
        lines.append("")

    scen = [s for s in SCENARIO_TITLES
            if any(r["phase"] == "throughput" and r.get("scenario") == s for r in t.rows)]
    if scen:
        def table(title, cell):
            """One row per target, one column per scenario, `cell(target, scenario)` in each."""
            out = [f"#### {title}", "",
                   "| target | " + " | ".join(SCENARIO_TITLES[s] for s in scen) + " |",
                   "|---|" + "---|" * len(scen)]
            for x in t.targets("throughput"):
                out.append(f"| {x} | " + " | ".join(cell(x, s) for s in scen) + " |")
            return out + [""]

        def pair(first, second):
            """A cell of two medians of the throughput phase, `first / second`."""
            return lambda x, s: (f"{f_num(t.median('throughput', x, first, scenario=s), 1)} / "
                                 f"{f_num(t.median('throughput', x, second, scenario=s), 1)}")

        lines += table("Throughput by scenario: median req/s (ratio to NGINX)",
                       lambda x, s: f"{f_int(t.median('throughput', x, 'rps', scenario=s))} "
                                    f"({f_num(t.ratio('throughput', x, 'rps', scenario=s))})")
        lines += table("CPU per request by scenario: proxy µs / origin µs",
                       pair("proxy_cpu_us", "origin_cpu_us"))
        lines += table("Proxy CPU per request by scenario: user space µs / kernel µs",
                       pair("proxy_user_us", "proxy_kernel_us"))

    lat = t.targets("latency")
    if lat:
        lines += [
            f"#### Latency at {f_int(meta.get('fixed_rate'))} req/s (oha -c64, corrected), medians",
            "",
            "| target | p50 ms | p90 ms | p99 ms | p99.9 ms | p99.99 ms | max ms | achieved req/s "
            "| proxy CPU µs/req |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for x in lat:
            lines.append(
                f"| {x} | " + " | ".join(f_ms(t.median("latency", x, k)) for k in
                                          ("p50_ms", "p90_ms", "p99_ms", "p99.9_ms", "p99.99_ms", "max_ms"))
                + f" | {f_int(t.median('latency', x, 'achieved_rps'))}"
                f" | {f_num(t.median('latency', x, 'proxy_cpu_us'), 1)} |")
        lines += ["", "Percentile distribution: `latency.svg`.", ""]
        if any(t.median("latency", x, "proxy_runq_us") is not None for x in lat):
            lines += [
                "What the scheduler did per request in that run (medians): µs the proxy's threads "
                "waited runnable for a CPU, its sleeps and preemptions per 1,000 requests; the same "
                "for the origin.",
                "",
                "| target | proxy run-queue µs | proxy sleeps /1k | proxy preempted /1k "
                "| origin run-queue µs | origin sleeps /1k | origin preempted /1k |",
                "|---|---|---|---|---|---|---|",
            ]
            for x in lat:
                lines.append(f"| {x} | " + " | ".join(
                    f_num(t.median("latency", x, f"{who}_{k}"), 1)
                    for who in ("proxy", "origin")
                    for k in ("runq_us", "sleeps_per_1k", "preempted_per_1k")) + " |")
            lines.append("")
        cal = t.median("calibration", BASELINE, "rps", scenario=HEADLINE)
        if cal:
            lines += [f"The fixed rate is half of {BASELINE}'s {f_int(cal)} req/s (wrk -t1 -c64 GET 5 B, "
                      "measured for it since the throughput phase did not run).", ""]

    sc = t.targets("scaling")
    if sc:
        levels = sorted({r["conns"] for r in t.rows if r["phase"] == "scaling"})
        lines += [
            "#### Scaling: wrk -t1 GET 5 B, median req/s / p99 ms by client connections",
            "",
            "| target | " + " | ".join(f"c={c}" for c in levels) + " |",
            "|---|" + "---|" * len(levels),
        ]
        for x in sc:
            cells = [f"{f_int(t.median('scaling', x, 'rps', conns=c))} / "
                     f"{f_ms(t.median('scaling', x, 'p99_ms', conns=c))}" for c in levels]
            lines.append(f"| {x} | " + " | ".join(cells) + " |")
        lines += ["", "Curves: `scaling.svg` (closed loop: p99 here includes queueing in the client).", ""]

    k6 = t.targets("k6")
    if k6:
        k = meta["k6"]
        lines += [
            f"#### k6 constant-arrival-rate, {f_int(k['rate'])} req/s, thresholds p99 < {k['p99_ms']:g} ms, "
            f"p99.9 < {k['p999_ms']:g} ms",
            "",
            "| target | p50 ms | p99 ms | p99.9 ms | achieved req/s | thresholds held |",
            "|---|---|---|---|---|---|",
        ]
        for x in k6:
            runs = t.by_repeat("k6", x, "passed")
            lines.append(
                f"| {x} | {f_ms(t.median('k6', x, 'p50_ms'))} | {f_ms(t.median('k6', x, 'p99_ms'))}"
                f" | {f_ms(t.median('k6', x, 'p99.9_ms'))} | {f_int(t.median('k6', x, 'achieved_rps'))}"
                f" | {sum(1 for p in runs.values() if p)}/{len(runs)} |")
        lines.append("")

    fail = [r for r in t.rows if r["phase"] == "failover"]
    if fail:
        first = fail[0]
        lines += [
            f"#### Failover: {f_int(first['rate'])} req/s for {first['duration_s']} s, endpoint 2 "
            f"of 3 killed at {first['kill_at_s']:g} s and back at {first['restore_at_s']:g} s, "
            "default resilience settings (k6, `bench/k6/failover.js`)",
            "",
            "| repeat | phase | requests | failed | p99 ms | thresholds held |",
            "|---|---|---|---|---|---|",
        ]
        for r in fail:
            for phase, p in r["phases"].items():
                lines.append(
                    f"| {r['repeat']} | {phase} | {f_int(p['requests'])} | "
                    f"{p['failed_rate'] * 100:.3f}% | {f_ms(p['p99_ms'])} | "
                    f"{'yes' if r['passed'] else 'no'} |")
        lines += ["", "Per second: `failover.svg` (p99 and failed requests; the kill and the "
                  "return marked).", ""]

    over = t.targets("overhead")
    if over:
        lines += [
            "#### Cost of optional features: wrk -t1 -c64 GET 5 B, medians, ratios to plain coregate "
            "paired by repeat",
            "",
            "| target | req/s | vs coregate | proxy CPU µs/req | CPU vs coregate | scrapes per run, ms each |",
            "|---|---|---|---|---|---|",
        ]
        for x in over:
            scrapes = t.median("overhead", x, "scrapes", scenario=HEADLINE)
            lines.append(
                f"| {x} | {f_int(t.median('overhead', x, 'rps', scenario=HEADLINE))}"
                f" | {f_num(t.ratio('overhead', x, 'rps', base='coregate', scenario=HEADLINE), 3)}"
                f" | {f_num(t.median('overhead', x, 'proxy_cpu_us', scenario=HEADLINE), 2)}"
                f" | {f_num(t.ratio('overhead', x, 'proxy_cpu_us', base='coregate', scenario=HEADLINE), 3)}"
                f" | {f_int(scrapes) + ', ' + f_num(t.median('overhead', x, 'scrape_ms', scenario=HEADLINE), 1) if scrapes else '–'} |")
        lines.append("")

    tls_phases = [p for p in meta["phases"] if p.startswith("tls-")]
    if tls_phases:
        tls_order = [x for x in order if any(t.targets(p) and x in t.targets(p) for p in tls_phases)]
        lines += [
            "#### TLS: the same ECDSA P-256 certificate, TLS 1.3 by default (X25519)",
            "",
            "| target | full handshakes/s (wrk close c64) | vs NGINX | full/s (handshakes, c16) "
            "| resumed/s | vs NGINX | HTTPS GET 5 B c64 req/s | vs NGINX | CPU µs/req | CPU vs NGINX "
            "| 16 KiB CPU µs/req | CPU vs NGINX | bytes / idle HTTPS conn | plain p99 ms alone "
            "| beside 500 handshakes/s | ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for x in tls_order:
            alone = t.median("tls-latency", x, "p99_ms", handshakes_per_s=0)
            beside = t.median("tls-latency", x, "p99_ms", handshakes_per_s=500)
            lines.append(
                f"| {x} | {f_int(t.median('tls-handshake', x, 'per_second', scenario='full-wrk-c64'))}"
                f" | {f_num(t.ratio('tls-handshake', x, 'per_second', scenario='full-wrk-c64'))}"
                f" | {f_int(t.median('tls-handshake', x, 'per_second', scenario='full'))}"
                f" | {f_int(t.median('tls-handshake', x, 'per_second', scenario='resumed'))}"
                f" | {f_num(t.ratio('tls-handshake', x, 'per_second', scenario='resumed'))}"
                f" | {f_int(t.median('tls-throughput', x, 'rps', scenario=HEADLINE))}"
                f" | {f_num(t.ratio('tls-throughput', x, 'rps', scenario=HEADLINE))}"
                f" | {f_num(t.median('tls-throughput', x, 'proxy_cpu_us', scenario=HEADLINE), 1)}"
                f" | {f_num(t.ratio('tls-throughput', x, 'proxy_cpu_us', scenario=HEADLINE))}"
                f" | {f_num(t.median('tls-throughput', x, 'proxy_cpu_us', scenario='get-16k-c64'), 1)}"
                f" | {f_num(t.ratio('tls-throughput', x, 'proxy_cpu_us', scenario='get-16k-c64'))}"
                f" | {f_int(t.median('tls-idle', x, 'bytes_per_conn'))}"
                f" | {f_ms(alone)} | {f_ms(beside)}"
                f" | {f_num(beside / alone if alone and beside else None)} |")
        lines.append("")

    notes = []
    for x, why in meta.get("skipped", {}).items():
        notes.append(f"- {x}: skipped, {why.splitlines()[0]}")
    for x, why in meta.get("failed", {}).items():
        notes.append(f"- {x}: FAILED, {' '.join(why.split())[:400]}")
    errors: dict[tuple, int] = {}
    for r in t.rows:
        e = r.get("errors")
        n = sum(e.values()) if isinstance(e, dict) else (e or 0)
        if n:
            what = r.get("scenario") or (f"c={r['conns']}" if r.get("conns") else "")
            key = (r["target"], r["phase"], what)
            errors[key] = errors.get(key, 0) + n
    for (x, phase, what), n in errors.items():
        notes.append(f"- {x}: {n} failed requests in {phase}{' ' + what if what else ''}")
    for x in lat:
        achieved, rate = t.median("latency", x, "achieved_rps"), meta.get("fixed_rate")
        if achieved and rate and achieved < 0.95 * rate:
            notes.append(f"- {x}: latency run reached only {f_int(achieved)} of {f_int(rate)} req/s")
    idle_short = [r for r in t.rows if r["phase"] == "idle" and r.get("open_at_measure") != r.get("conns")]
    for r in idle_short:
        notes.append(f"- {r['target']}: idle run {r['repeat']}: {r.get('open_at_measure')} of "
                     f"{r.get('conns')} connections open when measured")
    if notes:
        lines += ["#### Notes", "", *notes, ""]
    return "\n".join(lines).rstrip() + "\n"


def chart_data(run_dir: Path) -> tuple[list[tuple[str, Path]], list[tuple[str, Path]]]:
    """Writes one data file per target for each chart; returns (title, file) lists."""
    t = Table(load(run_dir))
    scaling, latency = [], []
    for x in t.targets("scaling"):
        levels = sorted({r["conns"] for r in t.rows if r["phase"] == "scaling" and r["target"] == x})
        path = run_dir / f"scaling-{x}.dat"
        path.write_text("# conns req/s p99_ms\n" + "".join(
            f"{c} {t.median('scaling', x, 'rps', conns=c):.1f} {t.median('scaling', x, 'p99_ms', conns=c):.4f}\n"
            for c in levels))
        scaling.append((x, path))
    for x in t.targets("latency"):
        runs = [r for r in t.rows if r["phase"] == "latency" and r["target"] == x and r.get("distribution")]
        if not runs:
            continue
        # The repeat with the median p99: one real measured curve rather than a blend.
        runs.sort(key=lambda r: r["p99_ms"] or 0)
        pick = runs[(len(runs) - 1) // 2]
        path = run_dir / f"latency-{x}.dat"
        path.write_text("# percentile 1/(1-p) latency_ms\n" + "".join(
            f"{p:.6f} {1 / (1 - p):.3f} {ms:.4f}\n" for p, ms in pick["distribution"] if p < 1))
        latency.append((x, path))
    return scaling, latency


def plot(script: str, series: list[tuple[str, Path]], out: Path, title: str) -> bool:
    if not series or shutil.which("gnuplot") is None:
        return False
    expr = (f"files='{' '.join(str(p) for _, p in series)}'; "
            f"titles='{' '.join(n for n, _ in series)}'; out='{out}'; plot_title='{title}'")
    proc = subprocess.run(["gnuplot", "-e", expr, str(PLOT_DIR / script)], capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"gnuplot {script}: {proc.stderr.strip()}", file=sys.stderr)
        return False
    return True


def update_results(path: Path, block: str) -> None:
    """Replaces what lies between the harness markers; hand-written text around them stays."""
    text = path.read_text() if path.is_file() else f"# coregate benchmark results\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text or END not in text:
        text = text.rstrip() + f"\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n<!-- written by bench/run.sh; edit outside the markers -->\n"
                    f"{block}{END}{tail}")


def write(run_dir: Path, results: Path | None) -> str:
    """Writes RUN_DIR/RESULTS.md and the charts; with `results`, also updates that file and puts
    the charts beside it. Returns the markdown block."""
    block = markdown(run_dir)
    meta = json.loads((run_dir / "meta.json").read_text())
    scaling, latency = chart_data(run_dir)
    charts = []
    for name, script, series, title in (
            ("scaling.svg", "scaling.gp", scaling, "req/s and p99 by client connections"),
            ("latency.svg", "latency.gp", latency, f"latency by percentile at {meta.get('fixed_rate')} req/s")):
        if plot(script, series, run_dir / name, title):
            charts.append(name)
    if (run_dir / "failover.svg").is_file():
        charts.append("failover.svg")
    update_results(run_dir / "RESULTS.md", block)
    if results is not None:
        update_results(results, block)
        for name in charts:
            shutil.copyfile(run_dir / name, results.parent / name)
    return block


def main() -> int:
    ap = argparse.ArgumentParser(description="rebuild the tables and charts of a run")
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--results", type=Path, help="markdown file to update between the markers")
    a = ap.parse_args()
    print(write(a.run_dir, a.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
