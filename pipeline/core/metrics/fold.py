"""The streaming computation in one place: records folded into windows over two mappings.

The worker splits this computation in two stages (`pipeline.agents.metrics`) because an owner's
facts and a window live in different partitions; `MetricsFold` is the same arithmetic in one
process, the reference the stages and `batch_metrics` are checked against.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pipeline.core.metrics.accumulator import WindowAccumulator, window_record
from pipeline.core.metrics.facts import FactSource, MetricFact, owner_update, resolve_facts
from pipeline.core.metrics.windows import DEFAULT_GRACE_S, WINDOWS, WindowKey, WindowPolicy
from pipeline.records import SmsMetricsWindow

__all__ = ["FeedResult", "MetricsFold"]


@dataclass(frozen=True, slots=True)
class FeedResult:
    """What one `MetricsFold.feed` did: windows whose record changed, facts dropped as late."""

    changed: tuple[WindowKey, ...]
    too_late: int = 0


class MetricsFold:
    """The streaming computation, over two injected mappings (plain dicts, or Faust tables).

    `owners`: owner key → list of fact dicts (its facts currently counted); `windows`: encoded
    `WindowKey` → accumulator dict. Values are always re-assigned, never mutated in place, so a
    changelog-backed table records every change. Feeding records in any order and with any
    duplicates (lifecycle records of one message in the order the correlate agent produced
    them) yields `records() == batch_metrics(...)`, less facts for closed windows.
    """

    def __init__(
        self,
        owners: MutableMapping[str, Any] | None = None,
        windows: MutableMapping[str, Any] | None = None,
        *,
        sizes: Mapping[str, int] = WINDOWS,
        grace_s: float = DEFAULT_GRACE_S,
    ) -> None:
        self.owners: MutableMapping[str, Any] = {} if owners is None else owners
        self.windows: MutableMapping[str, Any] = {} if windows is None else windows
        self.policy = WindowPolicy(dict(sizes), grace_s)

    def feed(self, record: FactSource, *, watermark: datetime | None = None) -> FeedResult:
        """Fold one record in; `watermark` (e.g. the max event time seen) closes old windows."""
        update = owner_update(record)
        if update is None:
            return FeedResult(())
        owner, closed = update.owner, self.policy.closed
        current = tuple(MetricFact.from_dict(d) for d in self.owners.get(owner, ()))
        new = resolve_facts(current, update.facts, replace=update.replace)
        old_set, new_set = set(current), set(new)
        deltas: dict[WindowKey, WindowAccumulator] = {}
        kept: list[MetricFact] = []
        too_late = 0
        for f in current:
            if f in new_set:
                kept.append(f)
                continue
            for key in self.policy.keys(f):
                if not closed(key, watermark):
                    self._acc(deltas, key).remove(f)
        for f in new:
            if f in old_set:
                continue
            keys = self.policy.keys(f)
            open_keys = [k for k in keys if not closed(k, watermark)]
            too_late += len(open_keys) < len(keys)
            for key in open_keys:
                self._acc(deltas, key).add(f)
            if open_keys:
                kept.append(f)
        if kept:
            self.owners[owner] = [f.to_dict() for f in sorted(kept, key=lambda f: f.fact_id)]
        elif owner in self.owners:
            del self.owners[owner]
        for key, acc in deltas.items():
            enc = key.encode()
            if acc.is_empty():
                if enc in self.windows:
                    del self.windows[enc]
            else:
                self.windows[enc] = acc.to_dict()
        return FeedResult(tuple(deltas), too_late)

    def _acc(self, deltas: dict[WindowKey, WindowAccumulator], key: WindowKey) -> WindowAccumulator:
        acc = deltas.get(key)
        if acc is None:
            stored = self.windows.get(key.encode())
            acc = WindowAccumulator() if stored is None else WindowAccumulator.from_dict(stored)
            deltas[key] = acc
        return acc

    def record(self, key: WindowKey) -> SmsMetricsWindow:
        """The current record of one window (all zero once its last fact was retracted)."""
        stored = self.windows.get(key.encode())
        acc = WindowAccumulator() if stored is None else WindowAccumulator.from_dict(stored)
        return window_record(key, acc, self.policy.sizes)

    def records(self) -> dict[WindowKey, SmsMetricsWindow]:
        """Every non-empty window's record (compare with `batch_metrics`)."""
        out: dict[WindowKey, SmsMetricsWindow] = {}
        for enc in list(self.windows.keys()):
            key = WindowKey.decode(enc)
            out[key] = self.record(key)
        return out

    def expire(self, watermark: datetime) -> list[WindowKey]:
        """Forget closed windows, and owners whose facts all lie in closed windows."""
        closed = self.policy.closed
        gone = [
            WindowKey.decode(enc)
            for enc in list(self.windows.keys())
            if closed(WindowKey.decode(enc), watermark)
        ]
        for key in gone:
            del self.windows[key.encode()]
        for owner in list(self.owners.keys()):
            facts = [MetricFact.from_dict(d) for d in self.owners[owner]]
            if self.policy.all_closed(facts, watermark):
                del self.owners[owner]
        return gone
