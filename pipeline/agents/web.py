"""The worker's HTTP endpoints: /healthz, /readyz, /metrics (Prometheus) and /metrics/sms (JSON)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pipeline.agents.liveness import register_lag_monitor, telemetry_for
from pipeline.agents.metrics import board_for
from pipeline.core.metrics import ALL_LOGINS, WINDOWS
from pipeline.records import SmsMetricsWindow
from pipeline.settings import Settings

if TYPE_CHECKING:  # app.py imports this module
    from pipeline.agents.app import Streams

__all__ = ["BrokerProbe", "register_web", "window_json"]

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


def register_web(app: faust.App, streams: Streams, settings: Settings) -> None:
    """Add the worker's views and the lag monitor to the app (whatever agents it runs)."""
    del streams
    telemetry = telemetry_for(app)
    board = board_for(app)
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
        window = request.query.get("window", "1m")
        login = request.query.get("login", ALL_LOGINS)
        if window not in WINDOWS:
            return self.json(
                {"error": "bad_window", "detail": f"window must be one of {sorted(WINDOWS)}"},
                status=400,
            )
        try:
            limit = max(1, min(int(request.query.get("limit", "60")), 1000))
        except ValueError:
            return self.json(
                {"error": "bad_limit", "detail": "limit must be an integer"}, status=400
            )
        return self.json(
            {
                "window": window,
                "login": login,
                "logins": board.logins(window),
                "windows": [window_json(r) for r in board.latest(window, login, limit)],
            }
        )

    for path, handler in (
        ("/healthz", healthz),
        ("/readyz", readyz),
        ("/metrics", metrics),
        ("/metrics/sms", metrics_sms),
    ):
        app.page(path, name=f"pipeline{path.replace('/', '_')}")(handler)
