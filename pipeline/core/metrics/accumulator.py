"""One window's counters and latency histogram: facts add and retract, the record is derived."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pipeline.core.histogram import LatencyHistogram
from pipeline.core.metrics.facts import MetricFact
from pipeline.core.metrics.windows import WindowKey
from pipeline.records import SmsMetricsWindow

__all__ = ["WindowAccumulator", "window_record"]

_COUNTERS: dict[str, str] = {
    "requested": "requested",
    "submitted": "submitted",
    "rejected": "rejected",
    "delivered": "delivered",
    "click": "clicks",
    "incoming_sms": "incoming_sms",
    "optout": "optouts",
    "call_missed": "calls_missed",
    "overdue": "overdue",
}


@dataclass
class WindowAccumulator:
    """Counters and the latency histogram of one window and login; facts add and retract.

    Mutable on purpose: a batch updates one window's accumulator in place for every fact, and
    the window holds only counters and a bounded histogram, never sets of ids.
    """

    requested: int = 0
    submitted: int = 0
    rejected: int = 0
    delivered: int = 0
    clicks: int = 0
    unique_clicks: int = 0
    incoming_sms: int = 0
    optouts: int = 0
    calls_missed: int = 0
    overdue: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def add(self, fact: MetricFact) -> None:
        """Count a fact (de-duplication happens per owner, before: see `MetricsFold`)."""
        self._bump(fact, +1)

    def remove(self, fact: MetricFact) -> None:
        """Retract a fact counted before by `add`."""
        self._bump(fact, -1)

    def _bump(self, fact: MetricFact, sign: int) -> None:
        name = _COUNTERS[fact.kind]
        setattr(self, name, getattr(self, name) + sign * fact.count)
        if fact.kind == "click":
            self.unique_clicks += sign
        if fact.kind == "delivered" and fact.value_ms is not None:
            if sign > 0:
                self.latency.add(fact.value_ms)
            else:
                self.latency.remove(fact.value_ms)

    def is_empty(self) -> bool:
        """True when no fact is counted (the window can be forgotten)."""
        return all(getattr(self, name) == 0 for name in _COUNTERS.values()) and (
            self.unique_clicks == 0 and self.latency.total == 0
        )

    def to_record(
        self, window_start: datetime, window_end: datetime, login: str, window_label: str
    ) -> SmsMetricsWindow:
        """The `SmsMetricsWindow` record of this window."""
        return SmsMetricsWindow(
            window_start=window_start,
            window_end=window_end,
            login=login,
            window=window_label,
            requested=self.requested,
            submitted=self.submitted,
            rejected=self.rejected,
            delivered=self.delivered,
            clicks=self.clicks,
            unique_clicks=self.unique_clicks,
            incoming_sms=self.incoming_sms,
            optouts=self.optouts,
            calls_missed=self.calls_missed,
            delivery_rate=self.delivered / self.submitted if self.submitted else None,
            click_through_rate=self.unique_clicks / self.delivered if self.delivered else None,
            p50_delivery_ms=self.latency.quantile(0.50),
            p95_delivery_ms=self.latency.quantile(0.95),
            overdue=self.overdue,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for the agent's table of windows."""
        d: dict[str, Any] = {name: getattr(self, name) for name in _COUNTERS.values()}
        d["unique_clicks"] = self.unique_clicks
        d["latency"] = self.latency.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WindowAccumulator:
        """Rebuild an accumulator saved with `to_dict`."""
        acc = cls(latency=LatencyHistogram.from_dict(d.get("latency", {})))
        for name in (*_COUNTERS.values(), "unique_clicks"):
            setattr(acc, name, int(d.get(name, 0)))
        return acc


def window_record(
    key: WindowKey, acc: WindowAccumulator, sizes: Mapping[str, int]
) -> SmsMetricsWindow:
    """The `SmsMetricsWindow` of one window (`sizes`: label → seconds, for its end)."""
    end = key.start + timedelta(seconds=sizes[key.window])
    return acc.to_record(key.start, end, key.login, key.window)
