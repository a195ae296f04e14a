"""A delay line: TCP relays on 127.0.0.1 that hold every byte sent through them for a
fixed time, and pass the answers back at once (netem's ``delay`` on a host's egress).

    python -m tests.scale.delay_line --delay 0.05 5432=10.77.0.2:5432 6379=10.77.0.2:6379

Run on the slowed host (``ip netns exec``); its worker's URLs name 127.0.0.1. Bytes are
held, not connections: a stream keeps its order and its throughput, only later.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

CHUNK = 65_536


async def _delayed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def release() -> None:
        while True:
            due, data = await held.get()
            if not data:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(data)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    releasing = asyncio.create_task(release())
    try:
        while data := await reader.read(CHUNK):
            held.put_nowait((time.monotonic() + delay, data))
    finally:
        held.put_nowait((0.0, b""))
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await releasing


async def _straight(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()
    with contextlib.suppress(OSError):
        writer.write_eof()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def _relay(target: tuple[str, int], delay: float) -> Handler:
    async def serve(client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        try:
            server_in, server_out = await asyncio.open_connection(*target)
        except OSError:
            client_out.close()
            return
        try:
            await asyncio.gather(
                _delayed(client_in, server_out, delay),
                _straight(server_in, client_out),
                return_exceptions=True,
            )
        finally:
            server_out.close()
            client_out.close()

    return serve


async def _main(delay: float, routes: list[tuple[int, tuple[str, int]]]) -> None:
    servers = [
        await asyncio.start_server(_relay(target, delay), "127.0.0.1", port)
        for port, target in routes
    ]
    print("relaying", flush=True)  # the harness waits for this line
    await asyncio.gather(*(server.serve_forever() for server in servers))


def _route(text: str) -> tuple[int, tuple[str, int]]:
    port, target = text.split("=")
    host, target_port = target.rsplit(":", 1)
    return int(port), (host, int(target_port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--delay", type=float, required=True, help="seconds")
    parser.add_argument("routes", nargs="+", type=_route, help="PORT=HOST:PORT")
    arguments = parser.parse_args()
    asyncio.run(_main(arguments.delay, arguments.routes))


if __name__ == "__main__":
    main()
