#!/usr/bin/env python3
"""A small keep-alive HTTP/1.1 origin for the failover scenario: answers every request `200`
with a 3-byte body, reading any Content-Length body first. One process per endpoint, so the
harness can kill one (SIGKILL: the kernel closes its sockets as a crash would) and start it
again on the same port.

    origin.py --port 28111 [--host 127.0.0.1]

asyncio, one thread: a few thousand requests a second per process, ample for the scenario's
rate split over three endpoints; the proxy's behaviour, not the origin's speed, is measured.
"""

from __future__ import annotations

import argparse
import asyncio

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nok\n"


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip() or 0)
            if length:
                await reader.readexactly(length)
            writer.write(RESPONSE)
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def main(host: str, port: int) -> None:
    server = await asyncio.start_server(serve, host, port, reuse_address=True, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    asyncio.run(main(args.host, args.port))
