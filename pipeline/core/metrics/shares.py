"""An owner's share of each window: what the metrics-facts stage sends, metrics-windows applies.

A window sums facts of many owners (messages, events) that live in different partitions, so
the worker that knows an owner is not the one that holds the window. The owner's side sends,
for every window whose share changed, a `Contribution` (window, owner, the owner's facts in that
window; empty when it left the window); the window's side keeps each owner's latest share and
replaces it (`apply_share`): retract the old facts, count the new ones. A share equal to the
stored one changes nothing, so a redelivered contribution never counts twice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import orjson

from pipeline.core.metrics.accumulator import WindowAccumulator
from pipeline.core.metrics.facts import MetricFact
from pipeline.core.metrics.windows import WINDOWS, WindowKey, window_keys

__all__ = ["Contribution", "apply_share", "contributions"]


@dataclass(frozen=True, slots=True)
class Contribution:
    """One owner's facts inside one window (empty: the owner left that window)."""

    window: WindowKey
    owner: str
    facts: tuple[MetricFact, ...]

    def key(self) -> bytes:
        """The record key: the window, so every share of one window meets in one partition."""
        return self.window.encode().encode()

    def to_bytes(self) -> bytes:
        """The record value (JSON)."""
        return orjson.dumps(
            {"w": self.window.encode(), "o": self.owner, "f": [f.to_dict() for f in self.facts]}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Contribution:
        """Inverse of `to_bytes`."""
        d = orjson.loads(data)
        return cls(WindowKey.decode(d["w"]), d["o"], tuple(MetricFact.from_dict(f) for f in d["f"]))


def _by_window(
    facts: Iterable[MetricFact], sizes: Mapping[str, int]
) -> dict[WindowKey, tuple[MetricFact, ...]]:
    grouped: dict[WindowKey, list[MetricFact]] = defaultdict(list)
    for f in facts:
        for key in window_keys(f, sizes):
            grouped[key].append(f)
    return {k: tuple(sorted(v, key=lambda f: f.fact_id)) for k, v in grouped.items()}


def contributions(
    owner: str,
    before: Sequence[MetricFact],
    after: Sequence[MetricFact],
    sizes: Mapping[str, int] = WINDOWS,
) -> list[Contribution]:
    """The windows whose share of `owner` changed from `before` to `after`, with the new share."""
    old, new = _by_window(before, sizes), _by_window(after, sizes)
    return [
        Contribution(key, owner, new.get(key, ()))
        for key in sorted(old.keys() | new.keys())
        if new.get(key, ()) != old.get(key, ())
    ]


def apply_share(
    acc: WindowAccumulator, before: Sequence[MetricFact], after: Sequence[MetricFact]
) -> None:
    """Replace an owner's share of a window: retract `before`, count `after`."""
    for f in before:
        acc.remove(f)
    for f in after:
        acc.add(f)
