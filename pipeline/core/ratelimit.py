"""The outbound rate limit: a clock-injected token bucket and each worker's share of the rate.

OUTBOUND_RATE_PER_SECOND is global. Every worker runs one `TokenBucket` at `rate_share(...)` of
it (its share of the send-requests partitions) and re-divides on every rebalance. A batch may
cost at most one *pacing tick* of tokens (`batch_limit` = `rate * tick`, at least 1), so requests
go out in small, evenly spaced chunks; the bucket holds two ticks (`capacity`), so a sleep that
overshoots loses no tokens, and no 1-second window sees more than rate + 3 ticks' worth.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["DEFAULT_TICK", "TokenBucket", "rate_share"]

DEFAULT_TICK = 0.015  # seconds of rate one batch may use: 3 messages at 200/s


def rate_share(global_rate: float | None, assigned: int, total: int) -> float | None:
    """This worker's messages/s: the global rate times its share of the partitions.

    None (unlimited) stays None; a worker with no partitions gets 0 (it has nothing to send).
    """
    if global_rate is None:
        return None
    if total <= 0 or assigned <= 0:
        return 0.0
    return global_rate * min(assigned, total) / total


class TokenBucket:
    """A token bucket with debt: `take(n)` may go below zero, later callers wait it off.

    `rate=None` means unlimited. `clock` returns monotonic seconds (injected for tests).
    """

    def __init__(
        self,
        rate: float | None,
        *,
        tick: float = DEFAULT_TICK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if tick <= 0:
            raise ValueError("tick must be positive")
        self._clock = clock
        self._tick = tick
        self._rate: float | None = None
        self._tokens = 0.0
        self._last = clock()
        self._paused_until = self._last
        self.set_rate(rate)
        self._tokens = float(self.batch_limit)  # start with one batch, not a full burst

    @property
    def rate(self) -> float | None:
        """Messages/s this bucket grants (None: unlimited)."""
        return self._rate

    @property
    def batch_limit(self) -> int:
        """The largest batch worth sending at once: one tick of the rate (at least 1)."""
        if self._rate is None:
            return 1 << 30
        return max(1, math.floor(self._rate * self._tick))

    @property
    def capacity(self) -> int:
        """The most tokens the bucket holds: two batches."""
        return 2 * self.batch_limit

    def set_rate(self, rate: float | None) -> None:
        """Change the rate (a rebalance); tokens earned so far are kept, up to the new burst."""
        if rate is not None and rate < 0:
            raise ValueError("rate must be >= 0")
        self._refill(self._clock())
        self._rate = rate
        self._tokens = min(self._tokens, float(self.capacity))

    def _refill(self, now: float) -> None:
        if now <= self._last:
            return
        if self._rate:
            self._tokens = min(float(self.capacity), self._tokens + (now - self._last) * self._rate)
        self._last = now

    def delay(self, n: int) -> float:
        """Seconds to wait before `n` messages may go (0: now; inf: the rate is 0)."""
        if self._rate is None:
            return 0.0
        if self._rate == 0:
            return math.inf
        now = self._clock()
        self._refill(now)
        need = min(n, self.batch_limit)
        wait = max(0.0, self._last - now)  # inside a pause, refill restarts at its end
        return wait + max(0.0, need - self._tokens) / self._rate

    def take(self, n: int) -> None:
        """Spend `n` tokens (call once `delay(n)` is 0); the balance may go negative."""
        if self._rate is None:
            return
        self._refill(self._clock())
        self._tokens -= n

    def pause(self, seconds: float) -> None:
        """Grant nothing for `seconds` (a 429's Retry-After), then refill from empty."""
        if seconds <= 0:
            return
        now = self._clock()
        self._refill(now)
        until = now + seconds
        if until > self._last:
            self._last = until
        self._tokens = min(self._tokens, 0.0)
