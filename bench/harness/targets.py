"""The targets a run compares, how each is configured and started, and the check it must pass.

    direct            the origin hit directly: the ceiling of the box, no proxy
    coregate          coregate
    coregate-base     coregate from a second binary (--baseline-bin), configured exactly like
                      `coregate`: the same change measured before and after, side by side
    nginx             NGINX as a reverse proxy
    haproxy           HAProxy as a reverse proxy
    coregate-1shard   coregate with one shard (scaling curves only)
    coregate-log      coregate with the access log on (JSON lines to the run directory)
    coregate-scrape   coregate with the admin API on, scraped every second during the load
    coregate-limit    coregate with a rate limit on the route, configured but never reached

Every proxy forwards one route ("/") to the same origin, an NGINX with one worker. Configs are
rendered from bench/conf/ into the run directory; each proxy is started fresh for its slot of a
phase and must pass `preflight` before anything is measured.

Every proxy also serves the same route over TLS on its port + TLS_PORT_SHIFT, with one
certificate made for the run (ECDSA P-256, `tls_cert`), TLS 1.2 and 1.3, session tickets and a
session cache on; the TLS phases use that listener and it must pass `preflight_tls`.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from procs import HarnessError, Registry, Server, port_in_use, run_bounded, wait_listening

BENCH_DIR = Path(__file__).resolve().parent.parent
CONF_DIR = BENCH_DIR / "conf"

TARGETS = ("direct", "coregate", "coregate-base", "nginx", "haproxy")
# coregate from the binary given by --baseline-bin: a default target only when one is given.
BASE_TARGET = "coregate-base"
# The variants the overhead phase compares with plain coregate, and the feature each turns on.
FEATURE_TARGETS = {"coregate-log": "access_log", "coregate-scrape": "admin",
                   "coregate-limit": "rate_limit"}
EXTRA_TARGETS = ("coregate-1shard", *FEATURE_TARGETS)
BASELINE = "nginx"  # ratios are against NGINX measured in the same run

# Port of each listener: port_base + offset.
PORT_OFFSETS = {"upstream": 0, "coregate": 1, "coregate-base": 2, "nginx": 3, "haproxy": 4,
                "coregate-1shard": 5, "coregate-log": 6, "coregate-scrape": 7, "admin": 8, "coregate-limit": 9}

# coregate's TLS listener, as the config template's @@TLS_LISTENER@@ takes it.
TLS_LISTENER = """[[listener]]
name = "bench-tls"
bind = "@@TLS_LISTEN_ADDR@@"
tls = { certificates = [{ cert = "@@CERT@@", key = "@@KEY@@" }] }"""

# A proxy's TLS listener is on its port plus this.
TLS_PORT_SHIFT = 100
# The proxies that serve TLS (the TLS phases' targets).
TLS_TARGETS = ("coregate", "coregate-base", "nginx", "haproxy")

# The origin's fixed bodies: path -> length. /post answers "done\n" to any POST.
BODY_SIZES = {"/5b": 5, "/64b": 64, "/1k": 1024, "/16k": 16384}
POST_REPLY = b"done\n"


def body(n: int) -> str:
    """A deterministic body of n printable bytes, safe inside an NGINX quoted string."""
    unit = "coregate-benchmark-body-0123456789-"
    return (unit * (n // len(unit) + 1))[:n]


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str          # "direct", "nginx", "haproxy" or "coregate"
    shards: int
    feature: str | None = None  # a coregate feature turned on (see FEATURE_TARGETS)
    baseline: bool = False      # coregate run from the --baseline-bin binary


@dataclass
class Layout:
    """Where everything runs: addresses, worker counts, CPU placement, fd budget."""

    host: str
    port_base: int
    workers: int           # shards of coregate = workers of NGINX = threads of HAProxy
    pin: bool
    ncpu: int
    nofile: int            # open-file limit every server runs with
    # Whether each proxy also serves its TLS listener (a TLS phase is in the run). Off, a
    # coregate built before TLS existed can be compared (coregate-base).
    tls: bool = True

    def port(self, name: str) -> int:
        return self.port_base + PORT_OFFSETS["upstream" if name == "direct" else name]

    def tls_port(self, name: str) -> int:
        return self.port(name) + TLS_PORT_SHIFT

    @property
    def loadgen_cpus(self) -> str | None:
        """The load generator runs on CPU 0 ..."""
        return "0" if self.pin else None

    @property
    def upstream_cpus(self) -> str | None:
        """... and the origin on the last CPU: each core then holds one proxy worker plus one of
        the two. Unpinned with --no-pin."""
        return str(self.ncpu - 1) if self.pin else None

    def spec(self, name: str) -> Spec:
        if name == "direct":
            return Spec(name, "direct", 0)
        if name in ("nginx", "haproxy"):
            return Spec(name, name, self.workers)
        if name == "coregate":
            return Spec(name, "coregate", self.workers)
        if name == BASE_TARGET:
            return Spec(name, "coregate", self.workers, baseline=True)
        if name == "coregate-1shard":
            return Spec(name, "coregate", 1)
        if name in FEATURE_TARGETS:
            return Spec(name, "coregate", self.workers, FEATURE_TARGETS[name])
        raise HarnessError(f"unknown target {name!r}")


def render(template: Path, out: Path, values: dict[str, object]) -> Path:
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", str(value))
    left = re.findall(r"@@[A-Z0-9_]+@@", text)
    if left:
        raise HarnessError(f"{template}: placeholders left unfilled: {', '.join(sorted(set(left)))}")
    out.write_text(text)
    return out


def tls_cert(run_dir: Path) -> tuple[Path, Path, Path]:
    """The run's certificate: ECDSA P-256 for `bench.test`, made once with openssl. Returns the
    certificate, the key, and both in one file (HAProxy's form)."""
    d = run_dir / "tls"
    cert, key, both = d / "cert.pem", d / "key.pem", d / "both.pem"
    if not both.is_file():
        d.mkdir(exist_ok=True)
        done = subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "30",
             "-subj", "/CN=bench.test", "-addext", "subjectAltName=DNS:bench.test"],
            capture_output=True, text=True)
        if done.returncode != 0:
            raise HarnessError(f"openssl could not make the run's certificate: {done.stderr[-400:]}")
        both.write_text(cert.read_text() + key.read_text())
    return cert, key, both


def _common(layout: Layout, run_dir: Path) -> dict[str, object]:
    cert, key, both = tls_cert(run_dir)
    return {
        "CERT": cert,
        "KEY": key,
        "CERT_AND_KEY": both,
        "RUN_DIR": run_dir,
        "NOFILE": layout.nofile,
        # Two descriptors per proxied connection (client + upstream), some to spare.
        "WORKER_CONNECTIONS": max(1024, layout.nofile - 256),
        "UPSTREAM_ADDR": f"{layout.host}:{layout.port('upstream')}",
        "WORKERS": layout.workers,
        "CPU_LIST": f"0-{layout.workers - 1}" if layout.workers > 1 else "0",
    }


class Upstream:
    """The origin NGINX: started once per run, shared by every target."""

    def __init__(self, layout: Layout, run_dir: Path, registry: Registry):
        self.layout, self.run_dir, self.registry = layout, run_dir, registry
        self.server: Server | None = None

    def start(self) -> None:
        port = self.layout.port("upstream")
        if port_in_use(self.layout.host, port):
            raise HarnessError(f"{self.layout.host}:{port} (origin) is already in use: pick another --port-base")
        docroot = self.run_dir / "docroot"
        docroot.mkdir(exist_ok=True)
        (docroot / "16k").write_text(body(16384))
        for d in ("upstream-body",):
            (self.run_dir / d).mkdir(exist_ok=True)
        conf = render(CONF_DIR / "upstream.nginx.conf", self.run_dir / "upstream.nginx.conf",
                      {**_common(self.layout, self.run_dir), "DOCROOT": docroot,
                       "BODY_64": body(64), "BODY_1K": body(1024)})
        self.server = Server("upstream", ["nginx", "-c", str(conf), "-p", str(self.run_dir)],
                             self.run_dir / "upstream.log", self.registry,
                             cpus=self.layout.upstream_cpus)
        self.server.start()
        wait_listening(self.layout.host, port, self.server)
        preflight("origin", self.layout.host, port)

    @property
    def pgid(self) -> int | None:
        return self.server.pgid if self.server else None

    def stop(self) -> None:
        if self.server:
            self.server.stop()


class Running:
    """A started target. `pgid` is the proxy's process group (None for `direct`); `admin` is
    the admin API's host:port when the target serves one."""

    def __init__(self, spec: Spec, port: int, server: Server | None, admin: str | None = None):
        self.spec, self.port, self.server, self.admin = spec, port, server, admin

    @property
    def pgid(self) -> int | None:
        return self.server.pgid if self.server else None

    def stop(self) -> None:
        if self.server:
            self.server.stop()


def coregate_missing(binary: Path, option: str = "--coregate-bin") -> str | None:
    if not binary.is_file() or not os.access(binary, os.X_OK):
        return (f"binary not found at {binary} (build it with `cargo build --release -p "
                f"coregate-bins`, or point {option} at one)")
    return None


def start(spec: Spec, layout: Layout, run_dir: Path, registry: Registry, coregate_bin: Path,
          wrap: list[str] | None = None, start_timeout: float = 10.0,
          baseline_bin: Path | None = None) -> Running:
    """Starts a target on its port, waits until it accepts connections and passes preflight.
    `wrap` prefixes the proxy's command line (profile.py runs it under valgrind that way).
    A baseline spec runs `baseline_bin` instead of `coregate_bin`, with the same config."""
    port = layout.port(spec.name)
    if spec.kind == "direct":
        preflight(spec.name, layout.host, port)
        return Running(spec, port, None)
    if port_in_use(layout.host, port):
        raise HarnessError(f"{layout.host}:{port} ({spec.name}) is already in use: pick another --port-base")
    values = {**_common(layout, run_dir), "LISTEN_ADDR": f"{layout.host}:{port}",
              "TLS_LISTEN_ADDR": f"{layout.host}:{layout.tls_port(spec.name)}"}
    values["TLS_LISTENER"] = (TLS_LISTENER.replace("@@TLS_LISTEN_ADDR@@", values["TLS_LISTEN_ADDR"])
                              .replace("@@CERT@@", str(values["CERT"]))
                              .replace("@@KEY@@", str(values["KEY"]))
                              if layout.tls else "# no TLS phase in this run: no TLS listener")
    log = run_dir / f"{spec.name}.log"
    if spec.kind == "nginx":
        for d in ("nginx-body", "nginx-proxy"):
            (run_dir / d).mkdir(exist_ok=True)
        values["AFFINITY"] = ("worker_cpu_affinity auto;" if layout.pin
                              else "# worker_cpu_affinity: not pinned (--no-pin)")
        conf = render(CONF_DIR / "nginx.conf", run_dir / "nginx.conf", values)
        argv = ["nginx", "-c", str(conf), "-p", str(run_dir)]
    elif spec.kind == "haproxy":
        values["AFFINITY"] = (f"cpu-map auto:1/1-{layout.workers} {values['CPU_LIST']}" if layout.pin
                              else "# cpu-map: not pinned (--no-pin)")
        values["MAXCONN"] = max(1024, layout.nofile - 512)
        conf = render(CONF_DIR / "haproxy.cfg", run_dir / "haproxy.cfg", values)
        argv = ["haproxy", "-db", "-f", str(conf)]
    else:
        if spec.baseline:
            if baseline_bin is None:
                raise HarnessError(f"{spec.name} runs the binary given by --baseline-bin, and none was given")
            coregate_bin = baseline_bin
        missing = coregate_missing(coregate_bin, "--baseline-bin" if spec.baseline else "--coregate-bin")
        if missing:
            raise HarnessError(missing)
        values["CORES"] = f"0-{spec.shards - 1}" if spec.shards > 1 else "0"
        values["FEATURE"] = feature_section(spec, layout, run_dir)
        conf = render(CONF_DIR / "coregate.toml", run_dir / f"{spec.name}.toml", values)
        check_coregate(spec.name, coregate_bin, conf, registry)
        argv = [str(coregate_bin), "run", "--config", str(conf)]
    server = serve(spec.name, [*(wrap or []), *argv], log, registry, layout.host, port,
                   start_timeout)
    try:
        if layout.tls:
            wait_listening(layout.host, layout.tls_port(spec.name), server, start_timeout)
            preflight_tls(spec.name, layout.host, layout.tls_port(spec.name))
    except BaseException:
        server.stop()
        raise
    admin = f"{layout.host}:{layout.port('admin')}" if spec.feature == "admin" else None
    return Running(spec, port, server, admin)


def check_coregate(name: str, coregate_bin: Path, conf: Path, registry: Registry) -> None:
    """Runs `coregate check` on `conf`, so that a refused configuration fails with its reasons
    rather than as a server that never listens."""
    rc, out, err = run_bounded(f"{name}-check", [str(coregate_bin), "check", "--config", str(conf)],
                               registry, timeout=30)
    if rc != 0:
        raise HarnessError(f"`coregate check --config {conf}` refused the config (status {rc}):\n"
                           f"{(err or out).strip()[-600:]}")


def serve(name: str, argv: list[str], log: Path, registry: Registry, host: str, port: int,
          start_timeout: float = 10.0) -> Server:
    """Starts `argv` and waits until it accepts on host:port and passes preflight; on failure
    stops it, saying so when it exited by itself."""
    server = Server(name, argv, log, registry)
    server.start()
    try:
        wait_listening(host, port, server, start_timeout)
        preflight(name, host, port)
    except HarnessError as e:
        time.sleep(0.2)  # a server that refused its config may be exiting: say so if it did
        status = server.exit_status()
        server.stop()
        if status is not None:
            raise HarnessError(f"{name} exited with status {status} (log {log}):\n"
                               f"{server.log_tail()}") from e
        raise
    except BaseException:
        server.stop()
        raise
    return server


def feature_section(spec: Spec, layout: Layout, run_dir: Path) -> str:
    """The TOML a feature target adds to coregate's configuration."""
    if spec.feature == "access_log":
        return f'[access_log]\npath = "{run_dir / (spec.name + "-access.log")}"\nformat = "json"\n'
    if spec.feature == "admin":
        return f'[admin]\nbind = "{layout.host}:{layout.port("admin")}"\n'
    if spec.feature == "rate_limit":
        # Appended to the route's table; a million per second per client is never reached.
        return 'rate_limit = { rate = "1000000/s", key = "client_ip" }\n'
    return "# no optional feature"


def preflight(name: str, host: str, port: int) -> None:
    """What every target must answer before it is measured, on one keep-alive connection:
    each fixed body with its exact length, a 64 KiB POST, then a GET after that POST."""
    conn = http.client.HTTPConnection(host, port, timeout=5)

    def exchange(method: str, path: str, payload: bytes | None = None) -> bytes:
        headers = {"Content-Type": "application/octet-stream"} if payload is not None else {}
        try:
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as e:
            raise HarnessError(f"{name}: {method} {path} failed: {e!r}") from e
        if resp.status != 200:
            raise HarnessError(f"{name}: {method} {path} answered {resp.status} {resp.reason}")
        if resp.will_close:
            raise HarnessError(f"{name}: {method} {path} closed the keep-alive connection")
        return data

    try:
        for path, size in BODY_SIZES.items():
            data = exchange("GET", path)
            expected = b"hello" if path == "/5b" else body(size).encode()
            if data != expected:
                raise HarnessError(f"{name}: GET {path} returned {len(data)} bytes, not the expected {size}")
        sock = conn.sock
        if exchange("POST", "/post", b"x" * 65536) != POST_REPLY:
            raise HarnessError(f"{name}: POST /post (64 KiB) did not return {POST_REPLY!r}")
        if exchange("GET", "/5b") != b"hello" or conn.sock is not sock:
            raise HarnessError(f"{name}: GET after a 64 KiB POST did not reuse the connection")
    finally:
        conn.close()


def preflight_tls(name: str, host: str, port: int) -> None:
    """The TLS listener answers GET /5b and GET /16k on one keep-alive TLS connection, with
    ALPN http/1.1."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    conn = http.client.HTTPSConnection(host, port, timeout=5, context=context)
    try:
        for path, size in (("/5b", 5), ("/16k", 16384)):
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException) as e:
                raise HarnessError(f"{name}: GET {path} over TLS failed: {e!r}") from e
            if resp.status != 200 or len(data) != size:
                raise HarnessError(f"{name}: GET {path} over TLS answered {resp.status}, "
                                   f"{len(data)} bytes")
    finally:
        conn.close()


def taken_ports(layout: Layout, names) -> list[str]:
    """Listeners of `names` already taken by something else on this host."""
    return [f"{n} {layout.host}:{layout.port(n)}" for n in names
            if n != "direct" and port_in_use(layout.host, layout.port(n))]
