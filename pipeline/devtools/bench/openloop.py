"""An open-loop load generator at a fixed rate, in its own process (Debian has no wrk2).

Latency counts from each request's scheduled send time, so a slow server cannot hide its
queueing (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import re
from typing import Any

__all__ = ["fixed_rate"]


def _open_loop_main(
    port: int, paths: list[str], rate: int, seconds: float, out: Any
) -> None:  # pragma: no cover - runs in a child process
    with contextlib.suppress(ImportError):
        import uvloop

        uvloop.install()
    out.put(asyncio.run(_open_loop(port, paths, rate, seconds)))


async def _open_loop(port: int, paths: list[str], rate: int, seconds: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def one(path: bytes, scheduled: float) -> None:
        if idle:
            reader, writer = idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: bench\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        latencies.append(loop.time() - scheduled)
        statuses[status] = statuses.get(status, 0) + 1
        idle.append((reader, writer))

    encoded = [p.encode() for p in paths]
    tasks = []
    total = int(rate * seconds)
    start = loop.time() + 0.1
    for n in range(total):
        scheduled = start + n / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(encoded[n % len(encoded)], scheduled)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start
    for _, writer in idle:
        writer.close()
    latencies.sort()
    return {
        "sent": total,
        "achieved_rate": total / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "statuses": statuses,
    }


def fixed_rate(port: int, paths: list[str], rate: int, seconds: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    proc = ctx.Process(target=_open_loop_main, args=(port, paths, rate, seconds, out))
    proc.start()
    try:
        result: dict[str, Any] = out.get(timeout=seconds + 120)
    finally:
        proc.join(30)
    return result
