"""The batch recomputation of the metric windows: what the streaming stages must equal."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from pipeline.core.lifecycle import LifecycleEvent, batch_lifecycles
from pipeline.core.metrics.accumulator import WindowAccumulator, window_record
from pipeline.core.metrics.facts import MetricFact, facts_from
from pipeline.core.metrics.windows import WINDOWS, WindowKey, window_keys
from pipeline.records import (
    CallEvent,
    ClickCallback,
    IncomingSms,
    OptOut,
    SendRequest,
    SendResult,
    SmsMetricsWindow,
    StatusCallback,
)

__all__ = ["batch_metrics", "batch_metrics_from_events"]


def batch_metrics(
    facts: Iterable[MetricFact], sizes: Mapping[str, int] = WINDOWS
) -> dict[WindowKey, SmsMetricsWindow]:
    """The batch recomputation from facts (per message: those of its FINAL lifecycle record).

    Several facts with one `fact_id` count once: the smallest by `MetricFact.sort_key`.
    """
    best: dict[str, MetricFact] = {}
    for f in facts:
        have = best.get(f.fact_id)
        if have is None or f.sort_key() < have.sort_key():
            best[f.fact_id] = f
    windows: dict[WindowKey, WindowAccumulator] = {}
    for f in best.values():
        for key in window_keys(f, sizes):
            windows.setdefault(key, WindowAccumulator()).add(f)
    return {key: window_record(key, acc, sizes) for key, acc in windows.items()}


def batch_metrics_from_events(
    events: Iterable[LifecycleEvent | IncomingSms | OptOut | CallEvent],
    sizes: Mapping[str, int] = WINDOWS,
    *,
    now: datetime | None = None,
    receipt_timeout_seconds: float | None = None,
) -> dict[WindowKey, SmsMetricsWindow]:
    """Batch from raw events: lifecycles by `batch_lifecycles`, then their facts and the rest's.

    `now` and `receipt_timeout_seconds` are `batch_lifecycles`' (overdue receipts as of `now`).
    """
    message_events: list[LifecycleEvent] = []
    facts: list[MetricFact] = []
    for ev in events:
        if isinstance(ev, SendRequest | SendResult | StatusCallback | ClickCallback):
            message_events.append(ev)
        else:
            facts.extend(facts_from(ev))
    lifecycles = batch_lifecycles(
        message_events, now=now, receipt_timeout_seconds=receipt_timeout_seconds
    )
    for rec in lifecycles.values():
        facts.extend(facts_from(rec))
    return batch_metrics(facts, sizes)
