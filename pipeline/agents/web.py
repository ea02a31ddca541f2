"""The worker's HTTP endpoints: /healthz, /readyz, /metrics (Prometheus) and /metrics/sms (JSON).

`/metrics/sms?window=1m|1h&login=L&limit=N` answers from every worker's windows as `metrics.sms`
holds them (`MetricsView`, fed by a group-less reader of the whole topic that each worker runs),
so any worker's answer is the same: ``{"window", "login", "logins", "windows": [most recent
first], "caught_up"}``; `caught_up` is false until the reader has reached the end the topic had
when the worker started (the windows may be incomplete until then).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.agents.liveness import register_lag_monitor, telemetry_for
from pipeline.agents.metrics.board import MetricsView
from pipeline.core.metrics import ALL_LOGINS, WINDOWS
from pipeline.kafka.config import KafkaClientConfig
from pipeline.records import SmsMetricsWindow
from pipeline.settings import Settings

if TYPE_CHECKING:  # app.py imports this module
    from pipeline.agents.app import Streams

__all__ = ["BrokerProbe", "metrics_sms_answer", "register_web", "window_json"]

BROKER_PROBE_TTL_S = 2.0
BROKER_PROBE_TIMEOUT_S = 1.0


class BrokerProbe:
    """Whether a bootstrap broker accepts a TCP connection; the answer is cached briefly."""

    def __init__(self, bootstrap: str) -> None:
        self.hosts = [h.strip() for h in bootstrap.split(",") if h.strip()]
        self._at = 0.0
        self._ok = False

    async def reachable(self) -> bool:
        if time.monotonic() - self._at < BROKER_PROBE_TTL_S:
            return self._ok
        self._ok = any([await self._try(h) for h in self.hosts])
        self._at = time.monotonic()
        return self._ok

    @staticmethod
    async def _try(hostport: str) -> bool:
        host, _, port = hostport.rpartition(":")
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]") or "localhost", int(port or 9092)),
                BROKER_PROBE_TIMEOUT_S,
            )
        except (OSError, TimeoutError, ValueError):
            return False
        writer.close()
        return True


def window_json(record: SmsMetricsWindow) -> dict[str, Any]:
    """A metrics window as JSON (times ISO-8601 UTC)."""
    return {
        k: v.isoformat() if isinstance(v, datetime) else v
        for k, v in dataclasses.asdict(record).items()
    }


def metrics_sms_answer(view: MetricsView, query: Mapping[str, str]) -> tuple[dict[str, Any], int]:
    """The body and status of `/metrics/sms` for the request's `query` parameters."""
    window = query.get("window", "1m")
    login = query.get("login", ALL_LOGINS)
    if window not in WINDOWS:
        detail = f"window must be one of {sorted(WINDOWS)}"
        return {"error": "bad_window", "detail": detail}, 400
    try:
        limit = max(1, min(int(query.get("limit", "60")), 1000))
    except ValueError:
        return {"error": "bad_limit", "detail": "limit must be an integer"}, 400
    body = {
        "window": window,
        "login": login,
        "logins": view.logins(window),
        "windows": [window_json(r) for r in view.latest(window, login, limit)],
        "caught_up": view.caught_up,
    }
    return body, 200


def register_web(app: faust.App, streams: Streams, settings: Settings) -> None:
    """Add the worker's views, the lag monitor and the `metrics.sms` reader to the app (whatever
    agents it runs)."""
    telemetry = telemetry_for(app)
    view = MetricsView(streams.codec.codec.decode)
    metrics_topic = streams["metrics.sms"].get_topic_name()
    probe = BrokerProbe(settings.kafka_bootstrap_servers or "")
    register_lag_monitor(app, telemetry)

    def recovered() -> bool:
        tables: Any = app.tables  # faust types it as TableManagerT, without `recovery`
        return bool(tables.recovery.completed.is_set()) and not app.rebalancing

    async def healthz(self: Any, request: Any) -> Any:
        return self.json({"status": "ok"})

    async def readyz(self: Any, request: Any) -> Any:
        checks = {"recovered": recovered(), "broker": await probe.reachable()}
        ready = all(checks.values())
        return self.json(
            {"status": "ready" if ready else "not ready", **checks}, status=200 if ready else 503
        )

    async def metrics(self: Any, request: Any) -> Any:
        # one registry per app: every agent's metrics plus the process, platform and GC ones
        body = generate_latest(telemetry.registry).decode()
        return self.text(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def metrics_sms(self: Any, request: Any) -> Any:
        body, status = metrics_sms_answer(view, request.query)
        return self.json(body, status=status)

    @app.task  # type: ignore[misc,untyped-decorator]
    async def metrics_sms_feed() -> None:
        await view.follow(KafkaClientConfig.from_settings(settings).aiokafka(), metrics_topic)

    for path, handler in (
        ("/healthz", healthz),
        ("/readyz", readyz),
        ("/metrics", metrics),
        ("/metrics/sms", metrics_sms),
    ):
        app.page(path, name=f"pipeline{path.replace('/', '_')}")(handler)
