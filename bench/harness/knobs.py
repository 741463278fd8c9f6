"""What the tuning profiles' knobs are worth on this machine: coregate with one shard against
two, and with each knob the profiles set (ring_entries, idle_wait, buffer_size,
listener.defer_accept) changed one at a time from the defaults, every other key the same.

    knobs.py --run-dir DIR --coregate-bin PATH [--repeats N] [--duration S] [--results FILE]
    knobs.py --run-dir DIR --coregate-bin PATH --configs-only   render and check, no load

For every variant and repeat (variants interleaved within a repeat, as bench.py does): start
coregate from conf/coregate.toml with the variant's keys, check it, measure wrk -t1 on a
keep-alive GET of 5 B (c64), a 16 KiB GET (c64) and a new connection per request (close.lua,
c64), with coregate's CPU per request, then its CPU while idle for a few seconds (what
idle_wait costs). Medians go to a table in RESULTS.md between <!-- knobs:begin --> and
<!-- knobs:end -->; every measurement is in DIR/knobs.jsonl. The origin and the load generator
are the ones bench.py uses, pinned the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import loads
from procs import HarnessError, Registry, cpu_seconds
from targets import CONF_DIR, Layout, Upstream, _common, check_coregate, render, serve

# Each variant: (name, what it changes, TOML runtime keys, TOML listener keys, shards).
# The first of each group is the default it is compared with.
VARIANTS = [
    ("2 shards (default)", "cores", {}, {}, 2),
    ("1 shard", "cores", {}, {}, 1),
    ("ring_entries = 256", "ring_entries", {"ring_entries": "256"}, {}, 2),
    ("ring_entries = 4096", "ring_entries", {"ring_entries": "4096"}, {}, 2),
    ("idle_wait = 0 (busy poll)", "idle_wait", {"idle_wait": '"0"'}, {}, 2),
    ("idle_wait = 10ms", "idle_wait", {"idle_wait": '"10ms"'}, {}, 2),
    ("buffer_size = 8KiB", "buffer_size", {"buffer_size": '"8KiB"'}, {}, 2),
    ("buffer_size = 64KiB", "buffer_size", {"buffer_size": '"64KiB"'}, {}, 2),
    ("defer_accept = true", "defer_accept", {}, {"defer_accept": "true"}, 2),
]
BASE = VARIANTS[0][0]

SCENARIOS = [
    loads.Scenario("get-5b-c64", "get.lua", "/5b", 64),
    loads.Scenario("get-16k-c64", "get.lua", "/16k", 64),
    loads.Scenario("close-c64", "close.lua", "/5b", 64),
]
IDLE_SECONDS = 3


def config_text(variant, layout: Layout, run_dir: Path) -> Path:
    """conf/coregate.toml rendered for coregate on its usual port, with the variant's keys."""
    name, _, runtime, listener, shards = variant
    values = {**_common(layout, run_dir), "LISTEN_ADDR": f"{layout.host}:{layout.port('coregate')}",
              "CORES": "0" if shards == 1 else f"0-{shards - 1}", "FEATURE": "# knobs.py",
              "TLS_LISTENER": "# knobs.py measures plain HTTP: no TLS listener"}
    path = run_dir / "knobs-coregate.toml"
    render(CONF_DIR / "coregate.toml", path, values)
    text = path.read_text()
    extra_runtime = "".join(f"{k} = {v}\n" for k, v in runtime.items())
    if runtime.get("buffer_size") == '"8KiB"':
        # A request head is parsed within one buffer: the limit shrinks with it.
        text += '\n[limits]\nmax_head_bytes = "8KiB"\nmax_request_line = "4KiB"\n'
    text = text.replace("[runtime]\n", "[runtime]\n" + extra_runtime, 1)
    extra_listener = "".join(f"{k} = {v}\n" for k, v in listener.items())
    text = text.replace('name = "bench"\n', 'name = "bench"\n' + extra_listener, 1)
    path.write_text(f"# variant: {name}\n" + text)
    return path


def measure(variant, layout: Layout, run_dir: Path, registry: Registry, coregate_bin: Path,
            upstream: Upstream, duration: int, repeat: int, out) -> None:
    name = variant[0]
    conf = config_text(variant, layout, run_dir)
    check_coregate("coregate", coregate_bin, conf, registry)
    server = serve("coregate", [str(coregate_bin), "run", "--config", str(conf)],
                   run_dir / "knobs-coregate.log", registry, layout.host, layout.port("coregate"))
    try:
        url = f"http://{layout.host}:{layout.port('coregate')}"
        loads.wrk(url + "/5b", "get.lua", 64, 2, registry, layout.loadgen_cpus)  # warm-up
        for s in SCENARIOS:
            before = cpu_seconds(server.pgid)
            res = loads.wrk(url + s.path, s.script, s.conns, duration, registry,
                            layout.loadgen_cpus, s.args)
            after = cpu_seconds(server.pgid)
            n = max(res["requests"], 1)
            cpu_us = None if before is None or after is None else (after - before) * 1e6 / n
            row = {"repeat": repeat, "variant": name, "scenario": s.name, "rps": res["rps"],
                   "errors": res["error_count"], "proxy_cpu_us": cpu_us,
                   "p99_us": res["latency_us"]["p"].get("99")}
            out.write(json.dumps(row) + "\n")
            out.flush()
            print(f"  {name:<28} {s.name:<12} {res['rps']:>10,.0f} req/s"
                  + (f"  {cpu_us:6.2f} us/req" if cpu_us is not None else ""), flush=True)
        before = cpu_seconds(server.pgid)
        time.sleep(IDLE_SECONDS)
        after = cpu_seconds(server.pgid)
        if before is not None and after is not None:
            idle = (after - before) / IDLE_SECONDS * 100
            out.write(json.dumps({"repeat": repeat, "variant": name, "scenario": "idle",
                                  "cpu_percent": idle}) + "\n")
            print(f"  {name:<28} idle         {idle:6.2f} % CPU", flush=True)
    finally:
        server.stop()


def table(rows: list[dict]) -> str:
    def med(variant: str, scenario: str, key: str):
        values = [r[key] for r in rows if r["variant"] == variant and r["scenario"] == scenario
                  and r.get(key) is not None]
        return statistics.median(values) if values else None

    head = ("| variant | GET 5 B c64 req/s (vs default) | µs/req | GET 16 KiB c64 req/s | µs/req "
            "| new connection per request req/s | µs/req | idle CPU % |\n"
            "|---|---|---|---|---|---|---|---|\n")
    lines = []
    for name, *_ in VARIANTS:
        cells = [name]
        for s in SCENARIOS:
            rps, base = med(name, s.name, "rps"), med(BASE, s.name, "rps")
            cpu = med(name, s.name, "proxy_cpu_us")
            ratio = f" ({rps / base:.2f})" if rps and base else ""
            cells.append(f"{rps:,.0f}{ratio}" if rps else "–")
            cells.append(f"{cpu:.2f}" if cpu else "–")
        idle = med(name, "idle", "cpu_percent")
        cells.append(f"{idle:.2f}" if idle is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def update(results: Path, block: str) -> None:
    begin, end = "<!-- knobs:begin -->", "<!-- knobs:end -->"
    text = results.read_text()
    if begin not in text or end not in text:
        raise HarnessError(f"{results} has no {begin} ... {end} markers")
    before, rest = text.split(begin, 1)
    _, after = rest.split(end, 1)
    results.write_text(f"{before}{begin}\n{block}{end}{after}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run-dir", type=Path, required=True)
    p.add_argument("--coregate-bin", type=Path, required=True)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--port-base", type=int, default=28000)
    p.add_argument("--results", type=Path, default=None)
    p.add_argument("--command", default="bench/knobs.sh")
    p.add_argument("--configs-only", action="store_true",
                   help="render every variant's config and `coregate check` it; start nothing")
    o = p.parse_args(argv)
    o.run_dir.mkdir(parents=True, exist_ok=True)
    registry = Registry(o.run_dir / "pgids")
    layout = Layout(host="127.0.0.1", port_base=o.port_base, workers=2, pin=True,
                    ncpu=os.cpu_count() or 1, nofile=1 << 16)
    if o.configs_only:
        try:
            for variant in VARIANTS:
                conf = config_text(variant, layout, o.run_dir)
                check_coregate("coregate", o.coregate_bin, conf, registry)
                print(f"{variant[0]:<28} ok ({conf})")
        except HarnessError as e:
            print(f"knobs: {variant[0]}: {e}", file=sys.stderr)
            return 1
        return 0
    upstream = Upstream(layout, o.run_dir, registry)
    started = datetime.now(timezone.utc)
    jsonl = o.run_dir / "knobs.jsonl"
    try:
        upstream.start()
        with jsonl.open("a") as out:
            for r in range(1, o.repeats + 1):
                for variant in VARIANTS:
                    print(f"[knobs {r}/{o.repeats}] {variant[0]}", flush=True)
                    measure(variant, layout, o.run_dir, registry, o.coregate_bin, upstream,
                            o.duration, r, out)
    except HarnessError as e:
        print(f"knobs: {e}", file=sys.stderr)
        return 1
    finally:
        upstream.stop()
    rows = [json.loads(line) for line in jsonl.read_text().splitlines()]
    version = subprocess.run([str(o.coregate_bin), "--version"], capture_output=True,
                             text=True).stdout.strip()
    block = (f"### Run of {started:%Y-%m-%d %H:%M} UTC\n\n"
             f"- command: `{o.command}`\n- {version}; {os.cpu_count()} CPUs; kernel "
             f"{os.uname().release}\n- {o.repeats} repeat(s), {o.duration} s per wrk run, "
             f"variants interleaved; medians; µs/req is coregate's CPU per request\n\n"
             + table(rows))
    print(block)
    (o.run_dir / "knobs.md").write_text(block)
    if o.results:
        update(o.results, block)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
