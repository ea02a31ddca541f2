"""A bounded, mergeable latency histogram (log-spaced buckets) for delivery-time percentiles.

Error bound: values are whole milliseconds; for any recorded value ``x`` in ``0 … MAX_MS``
(7 days) the value reported in its place is within ``RELATIVE_ERROR * x`` (1 %) of ``x``, then
rounded to the nearest millisecond, so ``|quantile(q) - exact(q)| <= 0.01 * exact(q) + 0.5``
where ``exact(q)`` is the nearest-rank percentile of the recorded values (the ``ceil(q * n)``-th
smallest, 1-based; ``q = 0`` means the smallest). Values above ``MAX_MS`` are clamped to
``MAX_MS`` (the bound does not hold for them). Buckets follow DDSketch: bucket ``i`` holds
``(G**(i-1), G**i]`` with ``G = (1 + a) / (1 - a)`` and reports ``2 * G**i / (G + 1)``; zero has
its own bucket. About 1,000 buckets cover 1 ms … 7 days, so the state is bounded whatever the
traffic, and two histograms merge by adding counts (order-independent, as windows need).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["MAX_MS", "RELATIVE_ERROR", "LatencyHistogram"]

RELATIVE_ERROR = 0.01
MAX_MS = 7 * 24 * 3600 * 1000
_GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA = math.log(_GAMMA)
_ZERO = -1  # bucket of the value 0 (every positive whole ms has an index >= 0)


def _index(ms: int) -> int:
    if ms <= 0:
        return _ZERO
    return math.ceil(math.log(min(ms, MAX_MS)) / _LOG_GAMMA)


def _value(index: int) -> int:
    if index == _ZERO:
        return 0
    return round(2 * _GAMMA**index / (_GAMMA + 1))


class LatencyHistogram:
    """Counts of latencies per log-spaced bucket; add, remove, merge, ask for percentiles."""

    __slots__ = ("_counts", "_total")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self._total = 0

    @property
    def total(self) -> int:
        """How many values are recorded."""
        return self._total

    def add(self, ms: int, count: int = 1) -> None:
        """Record `ms` (a non-negative whole number of milliseconds) `count` times."""
        if ms < 0:
            raise ValueError(f"latency must be >= 0 ms, got {ms}")
        if count <= 0:
            return
        idx = _index(ms)
        self._counts[idx] = self._counts.get(idx, 0) + count
        self._total += count

    def remove(self, ms: int, count: int = 1) -> None:
        """Undo `add(ms, count)`: a retracted fact leaves no trace (an absent value is ignored)."""
        if ms < 0 or count <= 0:
            return
        idx = _index(ms)
        have = self._counts.get(idx, 0)
        taken = min(have, count)
        if taken == 0:
            return
        if have == taken:
            del self._counts[idx]
        else:
            self._counts[idx] = have - taken
        self._total -= taken

    def merge(self, other: LatencyHistogram) -> None:
        """Add every value of `other` into this histogram (commutative, associative)."""
        for idx, n in other._counts.items():
            self._counts[idx] = self._counts.get(idx, 0) + n
        self._total += other._total

    def quantile(self, q: float) -> int | None:
        """The nearest-rank `q`-quantile (0 ≤ q ≤ 1) within the module's bound; None if empty."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], got {q}")
        if self._total == 0:
            return None
        rank = max(1, math.ceil(q * self._total))
        seen = 0
        for idx in sorted(self._counts):
            seen += self._counts[idx]
            if seen >= rank:
                return _value(idx)
        return _value(max(self._counts))  # pragma: no cover - rank <= total always stops above

    def to_dict(self) -> dict[str, int]:
        """Sparse JSON-able form: bucket index (as a string) → count."""
        return {str(idx): n for idx, n in sorted(self._counts.items())}

    @classmethod
    def from_dict(cls, data: Mapping[str, int]) -> LatencyHistogram:
        """Rebuild a histogram saved with `to_dict`."""
        hist = cls()
        for key, n in data.items():
            if int(n) > 0:
                hist._counts[int(key)] = int(n)
                hist._total += int(n)
        return hist

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LatencyHistogram):
            return NotImplemented
        return self._counts == other._counts

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LatencyHistogram(total={self._total}, buckets={len(self._counts)})"
