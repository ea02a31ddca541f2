"""Worker liveness: per-app Prometheus telemetry, consumer lag, and crash-the-process agents.

faust's supervisor restarts a crashed agent silently, and a consumer can stop fetching without a
word (both reported on faust-streaming's tracker). So every agent here runs under `guarded`: an
exception escaping the agent body is logged and the process exits with status 1, for the
orchestrator to restart it (at-least-once: uncommitted input is replayed, and the agents'
effects are idempotent). Lag per agent and topic-partition is exported as a gauge so a silently
stalled consumer shows. Every metric of a worker, the process's own included, is on its app's
one registry (`Telemetry`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    PlatformCollector,
    ProcessCollector,
)

from pipeline.kafka.lag import committed_offsets

__all__ = [
    "CRASH_EXIT_CODE",
    "Telemetry",
    "crash_process",
    "guarded",
    "register_lag_monitor",
    "telemetry_for",
]

log = logging.getLogger(__name__)

CRASH_EXIT_CODE = 1
LAG_INTERVAL_S = 5.0


class Telemetry:
    """The Prometheus metrics of one worker app (own registry: several apps may share a process).

    The worker exports this registry alone: it also carries prometheus_client's process,
    platform and garbage-collector collectors, which would otherwise sit on the library's
    global registry. `status` maps an agent name to a function returning a snapshot of that
    agent's state (e.g. the outbound agent's buffered and in-flight messages) for a page
    or a test to read through the app, never through a module global.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.events_processed = Counter(
            "ardary_agent_events_processed", "Events an agent processed.", ["agent"], registry=r
        )
        self.events_skipped = Counter(
            "ardary_agent_events_skipped",
            "Events an agent skipped, by reason.",
            ["agent", "reason"],
            registry=r,
        )
        self.records_emitted = Counter(
            "ardary_agent_records_emitted", "Records an agent produced.", ["agent"], registry=r
        )
        self.agent_up = Gauge(
            "ardary_agent_up", "1 while the agent's loop is running.", ["agent"], registry=r
        )
        self.last_batch = Gauge(
            "ardary_agent_last_batch_timestamp_seconds",
            "Wall-clock time of the agent's last processed batch.",
            ["agent"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "ardary_consumer_lag",
            "Highwater minus committed offset, per agent and topic-partition.",
            ["agent", "topic", "partition"],
            registry=r,
        )
        self.lifecycle_table_size = Gauge(
            "ardary_lifecycle_table_size",
            "Live lifecycles in this worker's correlate table (as of the last TTL scan).",
            registry=r,
        )
        self.lifecycles_expired = Counter(
            "ardary_lifecycles_expired", "Lifecycles deleted by the TTL.", registry=r
        )
        self.metrics_too_late = Counter(
            "ardary_metrics_facts_too_late",
            "Metric facts dropped because their window had closed (end + grace).",
            registry=r,
        )
        self.metrics_windows_expired = Counter(
            "ardary_metrics_windows_expired", "Closed metric windows forgotten.", registry=r
        )
        self.sms_window = Gauge(
            "ardary_sms_window",
            "Latest SMS metrics window of this worker, per window size, login and field.",
            ["window", "login", "field"],
            registry=r,
        )
        self.send_result_codes = Counter(
            "ardary_send_result_codes",
            "Error codes of SendResults that were not SUBMITTED (at-least-once: a redelivered "
            "result counts again).",
            ["code"],
            registry=r,
        )
        self._outbound(r)
        self.watched: dict[str, frozenset[str]] = {}
        self.status: dict[str, Callable[[], Mapping[str, Any]]] = {}

    def _outbound(self, r: CollectorRegistry) -> None:
        self.outbound_results = Counter(
            "ardary_outbound_results_total",
            "SendResults produced, by outcome",
            ["outcome"],
            registry=r,
        )
        self.outbound_batches = Counter(
            "ardary_outbound_batches_total", "Ardary send requests made", registry=r
        )
        self.outbound_rate_share = Gauge(
            "ardary_outbound_rate_share", "This worker's share of the rate, msg/s", registry=r
        )
        self.outbound_in_flight = Gauge(
            "ardary_outbound_in_flight", "Messages handed to Ardary, outcome pending", registry=r
        )
        self.outbound_buffered = Gauge(
            "ardary_outbound_buffered", "Requests buffered, waiting for their batch", registry=r
        )
        self.outbound_states_expired = Counter(
            "ardary_outbound_states_expired_total",
            "Published send states deleted after the state TTL",
            registry=r,
        )

    def batch_done(self, agent: str, processed: int, emitted: int) -> None:
        """Count one processed batch of `agent` (events in, records out, when)."""
        self.events_processed.labels(agent).inc(processed)
        self.records_emitted.labels(agent).inc(emitted)
        self.last_batch.labels(agent).set(time.time())

    def watch(self, agent: str, topics: Iterable[str]) -> None:
        """Export the consumer lag of `topics` (full names) under `agent`."""
        self.watched[agent] = frozenset(topics)


_TELEMETRY: weakref.WeakKeyDictionary[Any, Telemetry] = weakref.WeakKeyDictionary()


def telemetry_for(app: Any) -> Telemetry:
    """The telemetry of `app`, created on first use (one registry per app)."""
    tel = _TELEMETRY.get(app)
    if tel is None:
        tel = _TELEMETRY[app] = Telemetry()
    return tel


def crash_process(agent: str, exc: BaseException) -> None:
    """Log the failure (type and message only: records may hold personal data) and exit 1.

    `os._exit`, not `sys.exit`: faust would catch SystemExit in the agent's task and restart it.
    Output already produced stays; uncommitted input is replayed after the restart.
    """
    log.critical("agent %s crashed: %s: %s; exiting", agent, type(exc).__name__, exc)
    logging.shutdown()
    os._exit(CRASH_EXIT_CODE)


def guarded(
    agent: str,
    body: Callable[[Any], Awaitable[None]],
    telemetry: Telemetry,
    on_crash: Callable[[str, BaseException], None] = crash_process,
) -> Callable[[Any], Awaitable[None]]:
    """Wrap an agent body so that an exception takes the process down instead of being retried."""

    async def run(stream: Any) -> None:
        telemetry.agent_up.labels(agent).set(1)
        try:
            await body(stream)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            on_crash(agent, exc)
            raise
        finally:
            telemetry.agent_up.labels(agent).set(0)

    run.__name__ = run.__qualname__ = f"{agent}_agent"
    return run


async def _lag_once(app: Any, telemetry: Telemetry) -> None:
    consumer = app.consumer
    committed_by_tp = committed_offsets(consumer)
    for tp in consumer.assignment():
        agents = [a for a, topics in telemetry.watched.items() if tp.topic in topics]
        if not agents:
            continue
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        committed = committed_by_tp.get(tp)
        if committed is None:
            committed = await consumer.position(tp)
        if committed is None:
            continue
        for agent in agents:
            telemetry.consumer_lag.labels(agent, tp.topic, str(tp.partition)).set(
                max(0, int(highwater) - int(committed))
            )


def register_lag_monitor(app: Any, telemetry: Telemetry, interval: float = LAG_INTERVAL_S) -> None:
    """Refresh the consumer-lag gauges every `interval` seconds while the worker runs."""

    @app.timer(interval, name="pipeline.lag_monitor")  # type: ignore[untyped-decorator]
    async def lag_monitor() -> None:
        if app.consumer is None or app.rebalancing:
            return
        try:
            await _lag_once(app, telemetry)
        except Exception as exc:  # a metrics refresh must never take the worker down
            log.warning("lag refresh failed: %s: %s", type(exc).__name__, exc)
