#!/usr/bin/env python3
"""Memory a proxy spends per idle keep-alive client connection.

Opens N client connections to ADDR, sends one GET on each and reads the whole response (so the
connection really went through the proxy: accepted, parsed, routed, answered), then leaves all of
them open and idle. Reads the resident memory (VmRSS, summed over every process of one process
group: for NGINX the master and its workers) before and after, and prints one JSON object:

    {"conns": 10000, "ok": 10000, "open_at_measure": 10000,
     "rss_before_kib": ..., "rss_after_kib": ..., "bytes_per_conn": ...}

bytes_per_conn = (rss_after - rss_before) / open_at_measure. It counts the memory the proxy's own
process gains per connection (buffers, connection state, allocator overhead); kernel socket memory
is not in VmRSS and not counted. Memory a proxy preallocates at start (NGINX's connection array of
worker_connections entries) is in the "before" figure, not in the delta.

With --tls each connection first completes a TLS handshake (ALPN http/1.1, no certificate
check), so what is measured is an idle HTTPS keep-alive connection: the proxy's TLS state
included.

Standard library only; raises its own open-file limit as far as the hard limit allows.

    python3 bench/harness/idle_conns.py --addr 127.0.0.1:28003 --pgid 12345 --conns 10000
    python3 bench/harness/idle_conns.py --addr 127.0.0.1:28103 --pgid 12345 --conns 10000 --tls
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import resource
import selectors
import socket
import ssl
import sys
import time


def group_pids(pgid: int) -> list[int]:
    """Every live process whose process group is `pgid`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        # Fields after the command name, which may itself hold spaces or parentheses.
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid:  # fields[0] is the state, [1] ppid, [2] pgrp
            pids.append(int(entry))
    return pids


def rss_kib(pgid: int) -> int:
    """VmRSS summed over the process group, KiB."""
    total = 0
    for pid in group_pids(pgid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def raise_nofile(wanted: int) -> int:
    """Raise the soft open-file limit towards `wanted`; returns the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    for new_hard in (max(hard, wanted), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, new_hard), new_hard))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Conn:
    """One client connection on its way to idle: connect -> send -> read response -> idle."""

    __slots__ = ("sock", "state", "buf", "need")

    def __init__(self, sock):
        self.sock = sock
        self.state = "connecting"
        self.buf = b""
        self.need = -1  # total bytes of head + body, once the head is complete

    def response_complete(self) -> bool:
        if self.need < 0:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            length = 0
            for line in self.buf[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            self.need = end + 4 + length
        return len(self.buf) >= self.need


def tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def open_idle(host: str, port: int, path: str, conns: int, parallel: int, deadline: float,
              tls: ssl.SSLContext | None = None):
    """Returns (idle sockets, failure count). At most `parallel` connections are in flight.
    With `tls`, each connection shakes hands (non-blocking) before it sends its request."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: idle-conns\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    idle: list[socket.socket] = []
    failed = 0
    started = 0
    in_flight = 0

    def fail(c: Conn):
        nonlocal failed, in_flight
        sel.unregister(c.sock)
        c.sock.close()
        failed += 1
        in_flight -= 1

    while (started < conns or in_flight) and time.monotonic() < deadline:
        while started < conns and in_flight < parallel:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((host, port))
            started += 1
            if err not in (0, errno.EINPROGRESS):
                s.close()
                failed += 1
                continue
            sel.register(s, selectors.EVENT_WRITE, Conn(s))
            in_flight += 1
        for key, _ in sel.select(timeout=0.5):
            c: Conn = key.data
            if c.state == "connecting":
                if c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    fail(c)
                    continue
                c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if tls is not None:
                    sel.unregister(c.sock)
                    c.sock = tls.wrap_socket(c.sock, server_hostname="bench.test",
                                             do_handshake_on_connect=False)
                    sel.register(c.sock, selectors.EVENT_WRITE, c)
                    c.state = "handshake"
                else:
                    c.sock.send(request)  # small enough for an empty socket buffer
                    c.state = "reading"
                    sel.modify(c.sock, selectors.EVENT_READ, c)
            elif c.state == "handshake":
                try:
                    c.sock.do_handshake()
                except ssl.SSLWantReadError:
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                    continue
                except ssl.SSLWantWriteError:
                    sel.modify(c.sock, selectors.EVENT_WRITE, c)
                    continue
                except OSError:
                    fail(c)
                    continue
                c.sock.send(request)
                c.state = "reading"
                sel.modify(c.sock, selectors.EVENT_READ, c)
            else:
                try:
                    chunk = c.sock.recv(65536)
                except ssl.SSLWantReadError:
                    continue  # a TLS record not yet whole (or a session ticket)
                except OSError:
                    fail(c)
                    continue
                if not chunk:
                    fail(c)  # closed by the proxy
                    continue
                c.buf += chunk
                if len(c.buf) >= 12 and not c.buf.startswith(b"HTTP/1.1 200"):
                    fail(c)
                    continue
                if c.response_complete():
                    sel.unregister(c.sock)
                    idle.append(c.sock)
                    in_flight -= 1
    for key in list(sel.get_map().values()):  # still in flight at the deadline
        key.fileobj.close()
        failed += 1
    sel.close()
    return idle, failed + (conns - started)


def still_open(socks: list[socket.socket]) -> int:
    """How many connections the proxy has not closed (a peek that would block means open)."""
    return sum(is_open(s) for s in socks)


def is_open(s: socket.socket) -> bool:
    """A non-blocking peek at the socket itself (below TLS, for an SSL socket)."""
    raw = socket.socket(fileno=s.fileno()) if isinstance(s, ssl.SSLSocket) else s
    try:
        # Bytes waiting (unexpected, but the connection is open); b"" is a close.
        return len(raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)) > 0
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        if raw is not s:
            raw.detach()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addr", required=True, help="proxy HOST:PORT")
    ap.add_argument("--pgid", type=int, required=True, help="process group of the proxy")
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--path", default="/5b")
    ap.add_argument("--parallel", type=int, default=256, help="connections in flight at once")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds idle before measuring (past the second after which coregate "
                         "parks an idle connection; the same for every target)")
    ap.add_argument("--timeout", type=float, default=60.0, help="bound on opening them all")
    ap.add_argument("--tls", action="store_true", help="HTTPS: shake hands before the request")
    args = ap.parse_args()

    host, _, port = args.addr.rpartition(":")
    limit = raise_nofile(args.conns + 64)
    if limit < args.conns + 64:
        print(f"idle_conns: open-file limit {limit} is below --conns {args.conns} + 64",
              file=sys.stderr)
        return 2
    if not group_pids(args.pgid):
        print(f"idle_conns: no process in group {args.pgid}", file=sys.stderr)
        return 2

    before = rss_kib(args.pgid)
    t0 = time.monotonic()
    idle, failed = open_idle(host, int(port), args.path, args.conns, args.parallel,
                             t0 + args.timeout, tls_context() if args.tls else None)
    opened_s = time.monotonic() - t0
    time.sleep(args.settle)  # let the proxy finish its per-connection work and go idle
    open_now = still_open(idle)
    after = rss_kib(args.pgid)
    for s in idle:
        s.close()

    result = {
        "conns": args.conns,
        "ok": len(idle),
        "failed": failed,
        "open_at_measure": open_now,
        "open_seconds": round(opened_s, 3),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "bytes_per_conn": round((after - before) * 1024 / open_now) if open_now else None,
    }
    print(json.dumps(result))
    return 0 if open_now == args.conns else 1


if __name__ == "__main__":
    sys.exit(main())
