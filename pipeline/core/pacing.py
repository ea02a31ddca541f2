"""Pacing by interval: how a rate-limited sender spends its rate in a few calls per second.

With a backlog, sending one message whenever one token has accrued makes one Ardary call per
message (at 40/s, 40 calls of 1), and the rate is then capped by latency, not by the setting.
Paced, each call carries the tokens that accrued over a pacing interval (OUTBOUND_PACING_SECONDS,
0.25 s: 10 messages at 40/s), up to OUTBOUND_MAX_BATCH.

The catch is the 1-second peak. Calls exactly 1/k s apart carrying rate/k each put k + 1 calls
(rate * (1 + 1/k)) into a closed 1-s window whenever one call is a little late and the next on
time. So calls are due `spacing = (1 + PACING_MARGIN) / k` apart: k calls span
`(1 + PACING_MARGIN) * (k - 1) / k` < 1 s, k + 1 calls 1 + PACING_MARGIN > 1 s; and since a late
call must not delay the ones after it (that time would be lost), the bucket lets the next call
go on time but never less than `window` (1 + PACING_MARGIN s) after the call k - 1 before it,
so no closed 1-s window ever holds more than k calls, however late some are, even with calls
reaching Ardary up to PACING_MARGIN s apart from when they left. Each call carries the whole tokens
accrued since the last one (`per_call` = rate * spacing on average; fractions carry over), so
the rate is kept exactly; the bucket holds at most `capacity` = `per_call` * (1 + CATCH_UP) + 1,
so a late call catches up its lateness up to CATCH_UP of an interval and the fraction never
gets lost (what a longer lateness overflows is owed and paid back CATCH_UP of a call at a time:
`pipeline.core.ratelimit`). On time, the largest 1-s window
holds k * `per_call` = rate * (1 + PACING_MARGIN), plus one message from the carried fractions.

k is the number of calls per second: (1 + PACING_MARGIN) / interval rounded down (4 at 0.25 s),
no more than the rate (each call carries at least one message), and as many as
OUTBOUND_MAX_BATCH requires.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["CATCH_UP", "PACING_MARGIN", "Pace", "pace_for"]

PACING_MARGIN = 0.02
CATCH_UP = 0.05


@dataclass(frozen=True, slots=True)
class Pace:
    """How a paced bucket spends its rate: a call at most every `spacing` seconds."""

    calls_per_second: int
    spacing: float
    per_call: float
    capacity: float

    @property
    def window(self) -> float:
        """Seconds that k + 1 calls always span (1 + PACING_MARGIN): more than one second."""
        return self.calls_per_second * self.spacing

    @property
    def nominal(self) -> int:
        """The whole messages a call waits for under a backlog (at least 1)."""
        return max(1, math.floor(self.per_call))


def pace_for(rate: float, interval: float, max_batch: int) -> Pace:
    """The pace of `rate` messages/s with calls every ~`interval` s of at most `max_batch`.

    `interval` is at most 1 s in effect: one call per second is the slowest pace (two seconds'
    worth of tokens in one call would double the 1-s peak).
    """
    if rate <= 0 or interval <= 0 or max_batch < 1:
        raise ValueError("a pace needs a positive rate, interval and batch size")
    calls = max(1, math.floor((1 + PACING_MARGIN) / interval + 1e-9))
    calls = min(calls, max(1, math.floor(rate)))
    calls = max(calls, math.ceil(rate * (1 + PACING_MARGIN) / max_batch))
    spacing = (1 + PACING_MARGIN) / calls
    per_call = rate * spacing
    return Pace(calls, spacing, per_call, per_call * (1 + CATCH_UP) + 1)
