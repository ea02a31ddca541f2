"""The windows this worker published, for `/metrics/sms` and the `ardary_sms_window` gauges."""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.agents.liveness import Telemetry
from pipeline.records import SmsMetricsWindow

__all__ = ["BOARD_DEPTH", "GAUGE_FIELDS", "WindowBoard", "board_for", "publish_gauges"]

BOARD_DEPTH = 120  # latest windows kept per (size, login)
GAUGE_FIELDS = (
    "requested",
    "submitted",
    "rejected",
    "delivered",
    "clicks",
    "unique_clicks",
    "incoming_sms",
    "optouts",
    "calls_missed",
    "delivery_rate",
    "click_through_rate",
    "p50_delivery_ms",
    "p95_delivery_ms",
    "overdue",
)


@dataclass
class WindowBoard:
    """The latest windows this worker published, per (window size, login), at most `depth` each."""

    depth: int = BOARD_DEPTH
    windows: dict[tuple[str, str], dict[datetime, SmsMetricsWindow]] = field(default_factory=dict)

    def update(self, record: SmsMetricsWindow) -> None:
        """Keep `record` (replacing the window's previous one), forgetting the oldest past depth."""
        slot = self.windows.setdefault((record.window, record.login), {})
        slot[record.window_start] = record
        if len(slot) > self.depth:
            for start in sorted(slot)[: len(slot) - self.depth]:
                del slot[start]

    def latest(self, window: str, login: str, limit: int = 60) -> list[SmsMetricsWindow]:
        """Most recent first."""
        slot = self.windows.get((window, login), {})
        return [slot[s] for s in sorted(slot, reverse=True)[:limit]]

    def logins(self, window: str) -> list[str]:
        """The logins with at least one window of size `window`."""
        return sorted(login for (w, login) in self.windows if w == window)


# One board per app, forgotten with its app (as `telemetry_for`): several apps may share a process.
_BOARDS: weakref.WeakKeyDictionary[Any, WindowBoard] = weakref.WeakKeyDictionary()


def board_for(app: Any) -> WindowBoard:
    """The window board of `app` (created on first use)."""
    board = _BOARDS.get(app)
    if board is None:
        board = _BOARDS[app] = WindowBoard()
    return board


def publish_gauges(telemetry: Telemetry, board: WindowBoard, record: SmsMetricsWindow) -> None:
    """Set the gauges of `record`'s (size, login) when it is the newest window the board has."""
    latest = board.latest(record.window, record.login, 1)
    if not latest or latest[0].window_start != record.window_start:
        return  # an older window was updated late: the gauges show the newest one
    for name in GAUGE_FIELDS:
        value = getattr(record, name)
        telemetry.sms_window.labels(record.window, record.login, name).set(
            float("nan") if value is None else float(value)
        )
