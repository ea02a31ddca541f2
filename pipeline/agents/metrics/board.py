"""Metric windows kept in memory: every worker's, read from `metrics.sms`, and this worker's own.

`MetricsView` answers `/metrics/sms` and the dashboard. The windows of one size and login are
computed by whichever worker holds their partition of the contributions topic, so with two
workers each one computes about half of them; every record they publish lands in `metrics.sms`
(keyed by window, start and login: the latest record per key is the truth), and each worker
reads that whole topic for itself, without a consumer group (`follow_topic`), into a bounded
view. Values are kept as the bytes read and decoded only when asked for: a worker that starts
reads the whole compacted topic, and most of it is forgotten before anyone looks.

`WindowBoard` holds the windows THIS worker published, as it published them; the metrics stage
sets the `ardary_sms_window` gauges from it (`publish_gauges`).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pipeline.agents.liveness import Telemetry
from pipeline.errors import PipelineError
from pipeline.kafka.readers import TopicRecord, follow_topic
from pipeline.records import SmsMetricsWindow

__all__ = [
    "BOARD_DEPTH",
    "FOLLOW_RETRY_S",
    "GAUGE_FIELDS",
    "MetricsView",
    "WindowBoard",
    "board_for",
    "parse_metrics_key",
    "publish_gauges",
]

log = logging.getLogger(__name__)

BOARD_DEPTH = 120  # latest windows kept per (size, login)
FOLLOW_RETRY_S = 5.0  # after a retriable broker error, read the topic again this much later
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


def parse_metrics_key(key: bytes) -> tuple[str, datetime, str] | None:
    """(size, start, login) of a `metrics.sms` key (`pipeline.topics.metrics_key`); None if it
    is not one. The login is last and may itself contain `|`."""
    try:
        window, start, login = key.decode().split("|", 2)
        return window, datetime.fromisoformat(start), login
    except ValueError:  # UnicodeDecodeError is one
        return None


class MetricsView:
    """Every worker's windows as `metrics.sms` holds them: per (size, login), the latest record
    of each of the `depth` most recent windows (bytes; decoded by `latest`).

    Memory is bounded: a slot is cut back to its `depth` newest windows once it holds twice as
    many (one sort per `depth` windows read, not one per record). Records are applied in
    offset order per partition and a record at an offset already applied is skipped, so reading
    the topic again after an error never puts an older record over a newer one.
    """

    def __init__(self, decode: Callable[[bytes], Any], depth: int = BOARD_DEPTH) -> None:
        self.depth = depth
        self._decode = decode
        self._slots: dict[tuple[str, str], dict[datetime, bytes]] = {}
        self._next: dict[int, int] = {}  # partition -> first offset not applied yet
        self.caught_up = False  # read up to the topic's end as it was when the feed started
        self.records = 0  # records applied (tombstones and foreign keys included)
        self.skipped = 0  # foreign keys, and values that did not decode to a window

    def apply(self, record: TopicRecord) -> None:
        """Fold one record of `metrics.sms` in (the latest per key wins)."""
        if record.offset < self._next.get(record.partition, 0):
            return  # read again after a restart of the feed: already applied
        self._next[record.partition] = record.offset + 1
        self.records += 1
        parsed = None if record.key is None else parse_metrics_key(record.key)
        if parsed is None:
            self.skipped += 1
            return
        window, start, login = parsed
        if record.value is None:  # a tombstone: the window is gone
            self._slots.get((window, login), {}).pop(start, None)
            return
        slot = self._slots.setdefault((window, login), {})
        slot[start] = record.value
        if len(slot) > 2 * self.depth:
            for old in sorted(slot)[: len(slot) - self.depth]:
                del slot[old]

    def latest(self, window: str, login: str, limit: int = 60) -> list[SmsMetricsWindow]:
        """Most recent first, at most `min(limit, depth)` windows."""
        slot = self._slots.get((window, login), {})
        found: list[SmsMetricsWindow] = []
        for start in sorted(slot, reverse=True)[: min(limit, self.depth)]:
            try:
                value = self._decode(slot[start])
            except PipelineError:  # DecodeError: skipped, as any foreign value
                value = None
            if isinstance(value, SmsMetricsWindow):
                found.append(value)
            else:
                self.skipped += 1
                del slot[start]  # the next record of that window replaces it
        return found

    def logins(self, window: str) -> list[str]:
        """The logins with at least one window of size `window`."""
        return sorted(login for (w, login), slot in self._slots.items() if w == window and slot)

    def _on_caught_up(self) -> None:
        if not self.caught_up:
            self.caught_up = True
            log.info(
                "metrics.sms read up to its end",
                extra={"records": self.records, "slots": len(self._slots)},
            )

    async def follow(
        self, client: Mapping[str, Any], topic: str, retry_s: float = FOLLOW_RETRY_S
    ) -> None:
        """Read `topic` (all partitions, no group) forever (`client`: aiokafka consumer
        arguments); after a retriable error, read it again `retry_s` later. Returns only by
        cancellation; a non-retriable error (say, an authorization failure) is raised."""
        while True:
            try:
                await follow_topic(client, topic, self.apply, self._on_caught_up)
            except PipelineError as exc:
                if not exc.retriable:
                    raise
                log.warning(
                    "metrics.sms feed interrupted; reading it again in %.0f s: %s", retry_s, exc
                )
                await asyncio.sleep(retry_s)
