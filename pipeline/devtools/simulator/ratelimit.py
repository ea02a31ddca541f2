"""A sliding 1-second window of messages, as Ardary's own rate limit (clock injected)."""

from __future__ import annotations

import math
from collections import deque

__all__ = ["SlidingWindow"]


class SlidingWindow:
    """At most `limit` messages in any 1-s window; a batch is admitted whole or not at all."""

    def __init__(self, limit: float, window: float = 1.0) -> None:
        self.limit = limit
        self.window = window
        self._events: deque[tuple[float, int]] = deque()
        self._count = 0

    def _expire(self, now: float) -> None:
        while self._events and self._events[0][0] <= now - self.window:
            _, n = self._events.popleft()
            self._count -= n

    def admit(self, n: int, now: float) -> float:
        """0 if `n` messages may go now (and counts them), else seconds until they may.

        A batch larger than the limit is admitted into an empty window, or it never could be.
        """
        self._expire(now)
        if self._count + n <= self.limit or self._count == 0:
            self._events.append((now, n))
            self._count += n
            return 0.0
        needed = self._count + n - self.limit
        freed = 0
        for at, count in self._events:
            freed += count
            if freed >= needed:
                return max(0.001, at + self.window - now)
        return self.window  # pragma: no cover - unreachable: the whole window frees enough

    @staticmethod
    def header_value(wait: float) -> str:
        """Retry-After as whole seconds (HTTP requires an integer), at least 1."""
        return str(max(1, math.ceil(wait)))
