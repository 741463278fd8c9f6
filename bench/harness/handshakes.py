#!/usr/bin/env python3
"""TLS handshakes against a proxy's TLS listener: as many as possible, or at a fixed rate.

Each connection: TCP connect, TLS handshake (ALPN http/1.1), one `GET /5b` with `Connection:
close`, read to the end, close. With --resume every connection after a process's first offers
the session (ticket) its previous connection received, so the proxy may resume it; the output
counts how many it did.

    handshakes.py --addr 127.0.0.1:28101 --duration 10 --procs 2            # full, max rate
    handshakes.py --addr 127.0.0.1:28101 --duration 10 --procs 2 --resume   # resumed
    handshakes.py --addr 127.0.0.1:28101 --duration 10 --rate 500           # full, fixed rate

Prints one JSON object: {"mode", "procs", "rate", "seconds", "handshakes", "resumed", "failed",
"per_second"}. Standard library only; every process stops by itself at the deadline.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import socket
import ssl
import sys
import threading
import time

REQUEST = b"GET /5b HTTP/1.1\r\nHost: bench.test\r\nConnection: close\r\n\r\n"


def context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def one(ctx: ssl.SSLContext, host: str, port: int, session=None):
    """One connection; returns (ok, reused, session for the next one)."""
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with ctx.wrap_socket(raw, server_hostname="bench.test", session=session) as s:
                s.sendall(REQUEST)
                data = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                ok = data.startswith(b"HTTP/1.1 200")
                return ok, s.session_reused, s.session
    except (OSError, ssl.SSLError):
        return False, False, None


def flat_out(host: str, port: int, deadline: float, resume: bool, out) -> None:
    """One process: connections back to back until the deadline."""
    ctx = context()
    done = reused = failed = 0
    session = None
    while time.monotonic() < deadline:
        ok, was_reused, new_session = one(ctx, host, port, session if resume else None)
        if ok:
            done += 1
            reused += was_reused
            session = new_session or session
        else:
            failed += 1
    out.put((done, reused, failed))


def fixed_rate(host: str, port: int, rate: float, seconds: float) -> tuple[int, int, int]:
    """Full handshakes started every 1/rate s (each on a thread of its own, at most 256 at a
    time); a start that finds 256 in flight is counted as failed."""
    ctx = context()
    lock = threading.Lock()
    counts = {"done": 0, "failed": 0}
    in_flight = threading.Semaphore(256)

    def run():
        ok, _, _ = one(ctx, host, port)
        with lock:
            counts["done" if ok else "failed"] += 1
        in_flight.release()

    start = time.monotonic()
    n = 0
    threads = []
    while True:
        due = start + n / rate
        now = time.monotonic()
        if due - start >= seconds:
            break
        if due > now:
            time.sleep(due - now)
        if in_flight.acquire(blocking=False):
            t = threading.Thread(target=run, daemon=True)
            t.start()
            threads.append(t)
        else:
            with lock:
                counts["failed"] += 1
        n += 1
    for t in threads:
        t.join(timeout=6)
    return counts["done"], 0, counts["failed"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addr", required=True, help="TLS listener HOST:PORT")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--procs", type=int, default=1, help="processes connecting back to back")
    ap.add_argument("--resume", action="store_true", help="offer the previous session")
    ap.add_argument("--rate", type=float, help="full handshakes per second instead of max")
    args = ap.parse_args()
    host, _, port_text = args.addr.rpartition(":")
    port = int(port_text)
    started = time.monotonic()
    if args.rate:
        done, reused, failed = fixed_rate(host, port, args.rate, args.duration)
    else:
        deadline = started + args.duration
        out = multiprocessing.Queue()
        procs = [multiprocessing.Process(target=flat_out, args=(host, port, deadline, args.resume, out))
                 for _ in range(args.procs)]
        for p in procs:
            p.start()
        results = [out.get(timeout=args.duration + 30) for _ in procs]
        for p in procs:
            p.join(timeout=5)
        done = sum(r[0] for r in results)
        reused = sum(r[1] for r in results)
        failed = sum(r[2] for r in results)
    seconds = time.monotonic() - started
    print(json.dumps({
        "mode": "fixed" if args.rate else ("resumed" if args.resume else "full"),
        "procs": args.procs, "rate": args.rate, "seconds": round(seconds, 3),
        "handshakes": done, "resumed": reused, "failed": failed,
        "per_second": round(done / seconds, 1) if seconds else 0.0,
    }))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
