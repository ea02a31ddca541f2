"""The ingress's spool under a broker outage: `bench ingress`'s last run (local cluster only).

An open-loop load at a fixed rate (a separate process that never retries) runs while every
broker of the local cluster is stopped for a while and started again. It reports what the
callers saw (statuses, p50/p99 while the ingress spooled), the most the spool held, and the
seconds from the cluster's return until the forwarder has emptied the spool.
"""

from __future__ import annotations

import re
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.devtools.bench.openloop import fixed_rate
from pipeline.devtools.bench.servers import running_server
from pipeline.devtools.waiting import wait_until

if TYPE_CHECKING:
    from pipeline.devtools.localkafka import LocalKafka

__all__ = ["OutageRun", "spool_run"]

_SPOOLED = re.compile(rb"^ardary_ingress_spool_records (\S+)$", re.MULTILINE)


@dataclass(frozen=True)
class OutageRun:
    """What one outage run measured."""

    rate: int
    load_seconds: float
    down_seconds: float
    statuses: dict[int, int]
    p50_ms: float
    p99_ms: float
    spooled_peak: int
    drain_seconds: float

    def lines(self) -> list[str]:
        return [
            f"spool run: {self.rate}/s open loop for {self.load_seconds:g} s, every broker "
            f"stopped for {self.down_seconds:.1f} s (until listed again): statuses "
            f"{self.statuses}, p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms",
            f"spool run: the spool held up to {self.spooled_peak:,} requests and was empty "
            f"{self.drain_seconds:.1f} s after the cluster came back",
        ]


def _spooled(port: int) -> int | None:
    """Requests the spool holds, from the ingress's /metrics (None: no answer within 10 s)."""
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            found = _SPOOLED.search(response.read())
    except OSError:
        return None
    return int(float(found.group(1))) if found else 0


def spool_run(
    kafka: LocalKafka,
    port: int,
    argv: list[str],
    env: dict[str, str],
    paths: list[str],
    rate: int,
    *,
    before: float = 5.0,
    outage: float = 10.0,
    after: float = 10.0,
) -> OutageRun:
    """Load the ingress at `rate`/s; `before` s in, stop every broker for `outage` s."""
    load_seconds = before + outage + after
    result: dict[str, Any] = {}
    peak = 0
    with running_server(argv, env, f"http://127.0.0.1:{port}/readyz"):
        load = threading.Thread(
            target=lambda: result.update(fixed_rate(port, paths, rate, load_seconds)), daemon=True
        )
        load.start()
        time.sleep(before)  # a benchmark's schedule, not a wait for a condition
        down_at = time.monotonic()
        for node_id in range(1, kafka.nodes + 1):
            kafka.stop_node(node_id)
        while time.monotonic() - down_at < outage:
            peak = max(peak, _spooled(port) or 0)
            time.sleep(0.5)
        kafka.start_nodes()
        up_at = time.monotonic()
        load.join(load_seconds + 180)

        def drained() -> bool:
            nonlocal peak
            held = _spooled(port)
            peak = max(peak, held or 0)
            return held == 0

        wait_until(drained, 180, "the ingress spool to drain", interval=0.2)
        drain = time.monotonic() - up_at
    return OutageRun(
        rate=rate,
        load_seconds=load_seconds,
        down_seconds=up_at - down_at,
        statuses=result.get("statuses", {}),
        p50_ms=result.get("p50_ms", float("nan")),
        p99_ms=result.get("p99_ms", float("nan")),
        spooled_peak=peak,
        drain_seconds=drain,
    )
