"""Waiting for the stack to go quiet after the load, and sampling what an operator would see.

Quiet means: no callback left to fire in the simulator, an empty ingress spool, no lag in the
workers' group or the sink's, and no topic growing between two looks a few seconds apart (a
late callback, a result, a lifecycle still on its way would move an end offset).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from pipeline.devtools.chaos.probes import (
    end_offsets,
    gauge,
    group_lag,
    group_lag_by_partition,
    status_of,
)
from pipeline.devtools.chaos.stack import WORKERS, ChaosStack
from pipeline.topics import TOPICS, WAREHOUSE_TOPICS

__all__ = ["Quiet", "observe", "wait_quiet"]

# what the workers' group reads (faust adds its own topics, found in the group's commits)
_WORKER_SOURCES = (
    "sms.send-requests",
    "sms.send-results",
    "callbacks.status",
    "callbacks.clicks",
    "callbacks.incoming-sms",
    "callbacks.calls",
    "sms.lifecycle",
)


@dataclass(frozen=True, slots=True)
class Quiet:
    """How the wait ended: `reached`, after how long, and the last look."""

    reached: bool
    seconds: float
    last: dict[str, Any]


def _look(stack: ChaosStack) -> dict[str, Any]:
    """One look at everything that must be zero or still."""
    look: dict[str, Any] = {}
    try:
        stats = httpx.get(f"{stack.simulator_url}/_sim/stats", timeout=5).json()
        look["simulator_pending"] = int(stats["callbacks_pending"])
    except (httpx.HTTPError, ValueError, KeyError):
        look["simulator_pending"] = None
    look["spool_records"] = gauge(f"{stack.ingress_url}/metrics", "ardary_ingress_spool_records")
    names = [stack.prefix + t for t in _WORKER_SOURCES]
    try:
        by_partition = group_lag_by_partition(stack.client, stack.worker_group, names)
        look["worker_lag"] = sum(by_partition.values())
        look["worker_lag_by_partition"] = by_partition  # the report names a stalled partition
        sink_topics = [s.full_name(stack.prefix) for s in WAREHOUSE_TOPICS]
        look["sink_lag"] = group_lag(stack.client, stack.sink_group, sink_topics)
        ends = end_offsets(stack.client, [s.full_name(stack.prefix) for s in TOPICS])
        look["records"] = sum(ends.values())
    except Exception as exc:  # the cluster may still be coming back
        look["kafka"] = repr(exc)
    look["down"] = [n for n, s in stack.services.by_name.items() if not s.alive()]
    return look


def _quiet(look: dict[str, Any], before: dict[str, Any] | None) -> bool:
    zero = all(
        look.get(k) == 0 for k in ("simulator_pending", "spool_records", "worker_lag", "sink_lag")
    )
    still = before is not None and before.get("records") == look.get("records")
    return zero and still and not look["down"] and "kafka" not in look


def wait_quiet(
    stack: ChaosStack, deadline_s: float, tick: Callable[[], None], interval: float = 3.0
) -> Quiet:
    """Look every `interval` s until two looks in a row are quiet, or `deadline_s` passes.

    `tick` runs between looks (the supervisor: a child that dies now is restarted too).
    """
    started = time.monotonic()
    before: dict[str, Any] | None = None
    while True:
        tick()
        look = _look(stack)
        if _quiet(look, before):
            return Quiet(True, time.monotonic() - started, look)
        if time.monotonic() - started > deadline_s:
            return Quiet(False, time.monotonic() - started, look)
        before = look
        time.sleep(interval)


def observe(stack: ChaosStack, t0: float) -> dict[str, Any]:
    """One sample of what an operator sees: the ingress's broker and spool gauges, its answers
    so far, each worker's readiness and in-flight sends, which processes are down."""
    ingress = f"{stack.ingress_url}/metrics"
    sample: dict[str, Any] = {
        "t": round(time.monotonic() - t0, 1),
        "ingress_ready": status_of(f"{stack.ingress_url}/readyz"),
        "broker_up": gauge(ingress, "ardary_ingress_broker_up"),
        "spool_records": gauge(ingress, "ardary_ingress_spool_records"),
        "spool_oldest_s": gauge(ingress, "ardary_ingress_spool_oldest_age_seconds"),
        "forwarded": gauge(ingress, "ardary_ingress_spool_forwarded_records_total"),
    }
    for name in WORKERS:
        url = stack.worker_urls[name]
        sample[f"{name}_ready"] = status_of(f"{url}/readyz")
        sample[f"{name}_lag"] = gauge(f"{url}/metrics", "ardary_consumer_lag")
    sample["down"] = [n for n, s in stack.services.by_name.items() if not s.alive()]
    return sample
