"""The outbound rate limits: clock-injected token buckets, each worker's share, per-login rates.

OUTBOUND_RATE_PER_SECOND is global. Every worker runs one `TokenBucket` at `rate_share(...)` of
it (its share of the send-requests partitions) and re-divides on every rebalance.

A bucket runs in one of two modes:
- *per tick* (`pacing=None`, as before issue 17): a batch may cost at most one tick of tokens
  (`batch_limit` = `rate * tick`, at least 1), so requests go out in small, evenly spaced
  chunks; the bucket holds two ticks (`capacity`), so a sleep that overshoots loses no tokens,
  and no 1-second window sees more than rate + 3 ticks' worth.
- *paced* (`pacing=interval`): each call carries the tokens accrued over about `interval`
  seconds, and calls go in *slots* on a grid `Pace.spacing` apart (`pipeline.core.pacing` says
  why this keeps the 1-s peak within ~2 % of the rate). A late slot keeps the grid (the next
  one may follow sooner), but never opens less than `Pace.window` (1 + PACING_MARGIN s) after
  the slot k - 1 before it (k = `Pace.calls_per_second`), so no closed 1-s window holds k + 1
  slots, however late some are; a slot more than half a spacing late (or after idleness)
  restarts the grid. The first call in a slot opens it; further calls within `SLOT_SHARING`
  seconds of it share that slot's whole tokens (not those accruing meanwhile: no small extra
  calls), so several logins, or a login's batches of two priorities, may go together.
  A late dispatcher loses no tokens: the bucket holds only `Pace.capacity` (a full bucket must
  not become a burst), but what overflows it while a caller was kept waiting by this bucket
  (`want`: the wait was the rate's, so the overflow is the caller's lateness, not idleness) is
  *owed* and paid back on the following calls, at most CATCH_UP of a call each, so no call
  carries more than a full bucket and the 1-s peak stays within rate * (1 + PACING_MARGIN) *
  (1 + CATCH_UP) + 1. At most OWED_SECONDS of the rate is owed; a 429's pause or a new rate
  forgets it.

OUTBOUND_RATE_PER_LOGIN adds a bucket per listed login, at that login's `rate_share` like the
global one. `SendGate` asks both: a call of login L needs the global bucket's tokens and L's.
`next_batch` picks, among buffered batches, the most urgent one whose login may send now,
taking turns between logins, so one login's backlog never holds up another's.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TypeVar

from pipeline.core.pacing import CATCH_UP, Pace, pace_for
from pipeline.core.sending import BatchKey, PriorityBatcher

__all__ = [
    "DEFAULT_TICK",
    "OWED_SECONDS",
    "SLOT_SHARING",
    "SendGate",
    "TokenBucket",
    "next_batch",
    "rate_share",
]

DEFAULT_TICK = 0.015  # seconds of rate one batch may use: 3 messages at 200/s
# Paced: calls within this many seconds of a slot's first share it (at most half the spacing,
# so a very high rate's slots stay apart). Below PACING_MARGIN (the spacing's 2 % of a second),
# so k + 1 slots still never fit in a closed 1-s window.
SLOT_SHARING = 0.01
OWED_SECONDS = 1.0  # paced: at most this much of the rate lost to lateness is paid back
_UNLIMITED = 1 << 30
_ROUNDING = 1e-9  # paced: 10 tokens accrued in float steps as 9.9999999999 still make 10


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
    `pacing` (seconds) switches to paced mode; `max_batch` caps one paced call.
    """

    def __init__(
        self,
        rate: float | None,
        *,
        tick: float = DEFAULT_TICK,
        pacing: float | None = None,
        max_batch: int = _UNLIMITED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if tick <= 0:
            raise ValueError("tick must be positive")
        if pacing is not None and pacing <= 0:
            raise ValueError("pacing must be positive (or None)")
        self._clock = clock
        self._tick = tick
        self._pacing = pacing
        self._max_batch = max_batch
        self._rate: float | None = None
        self._pace: Pace | None = None
        self._tokens = 0.0
        self._last = clock()
        self._next_slot = self._last  # paced: when the next slot may open
        self._planned = self._last  # paced: when the current slot was due (its place on the grid)
        self._opened: deque[float] = deque()  # paced: when the last k - 1 slots opened
        self._slot_ends = -math.inf  # paced: until when the current slot is shared
        self._slot_budget = 0  # paced: whole tokens the current slot still shares
        self._wanted_since: float | None = None  # paced: a caller waits on this bucket since
        self._owed = 0.0  # paced: tokens that overflowed while a caller waited (lateness)
        self.set_rate(rate)
        # start with one batch, not a full burst
        self._tokens = self._pace.per_call if self._pace else float(self.batch_limit)

    @property
    def rate(self) -> float | None:
        """Messages/s this bucket grants (None: unlimited)."""
        return self._rate

    @property
    def pace(self) -> Pace | None:
        """The pace in paced mode at a positive rate, else None."""
        return self._pace

    @property
    def batch_limit(self) -> int:
        """The largest batch worth sending at once: one tick of the rate (at least 1).

        Paced: the whole tokens the next call may carry (when `delay` says it may go), up to
        `max_batch`.
        """
        if self._rate is None:
            return _UNLIMITED
        if self._pace is not None:
            now = self._clock()
            self._refill(now)
            # project to the next slot's opening: a call in the current slot's sharing window
            # would be a small extra call, not the next batch
            ahead = max(self._next_slot - now, self._last - now, 0.0)
            tokens = min(self._pace.capacity, self._tokens + ahead * self._rate)
            return max(1, min(self._max_batch, math.floor(tokens)))
        return max(1, math.floor(self._rate * self._tick))

    @property
    def capacity(self) -> int:
        """The most tokens the bucket holds: two batches (paced: `Pace.capacity`, rounded)."""
        if self._pace is not None:
            return math.floor(self._pace.capacity)
        return 2 * self.batch_limit

    def set_rate(self, rate: float | None) -> None:
        """Change the rate (a rebalance); tokens earned so far are kept, up to the new burst."""
        if rate is not None and rate < 0:
            raise ValueError("rate must be >= 0")
        self._refill(self._clock())
        idle = not self._rate
        self._owed, self._wanted_since = 0.0, None
        self._opened.clear()
        self._rate = rate
        self._pace = None
        if rate and self._pacing is not None:
            self._pace = pace_for(rate, self._pacing, self._max_batch)
            if idle:  # a worker given partitions starts with one call, like a new bucket
                self._tokens = max(self._tokens, self._pace.per_call)
        self._tokens = min(self._tokens, self._ceiling())

    def _ceiling(self) -> float:
        return self._pace.capacity if self._pace is not None else float(self.capacity)

    def _refill(self, now: float) -> None:
        if now <= self._last:
            return
        if self._rate:
            accrued = self._tokens + (now - self._last) * self._rate
            self._tokens = min(self._ceiling(), accrued)
            if accrued > self._tokens and self._wanted_since is not None and self._pace:
                # overflow while a caller waited on this bucket: its lateness, owed back
                waited = (now - max(self._last, self._wanted_since)) * self._rate
                owed = self._owed + min(accrued - self._tokens, waited)
                self._owed = min(owed, self._rate * OWED_SECONDS)
        self._last = now

    def _call_cap(self, n: int) -> int:
        assert self._pace is not None
        return max(1, min(n, self._max_batch, math.floor(self._pace.capacity)))

    def delay(self, n: int) -> float:
        """Seconds to wait before `n` messages may go (0: now; inf: the rate is 0).

        Paced: `n` (at most one full call) may go out of the current slot's whole tokens while
        it is shared, else at the next slot once they have accrued.
        """
        if self._rate is None:
            return 0.0
        if self._rate == 0:
            return math.inf
        now = self._clock()
        self._refill(now)
        wait = max(0.0, self._last - now)  # inside a pause, refill restarts at its end
        if self._pace is None:
            need = min(n, self.batch_limit)
            return wait + max(0.0, need - self._tokens) / self._rate
        need = self._call_cap(n)
        if now <= self._slot_ends and self._slot_budget >= need:
            return 0.0
        slot = max(0.0, self._next_slot - now)
        return max(slot, wait + max(0.0, need - _ROUNDING - self._tokens) / self._rate)

    def want(self) -> None:
        """A caller waits on this bucket's rate (it was told to `delay`): overflow from now on
        is lateness, owed back (paced mode; see the module docstring)."""
        if self._pace is not None and self._wanted_since is None:
            self._wanted_since = self._clock()

    @property
    def owed(self) -> float:
        """Tokens lost to a late caller, still to be paid back (paced mode)."""
        return self._owed

    def available(self) -> int:
        """How many messages a call may carry now (0: it must wait, see `delay`)."""
        if self._rate is None:
            return _UNLIMITED
        if self.delay(1) > 0:
            return 0
        if self._pace is None:
            return self.batch_limit
        whole = math.floor(self._tokens + _ROUNDING)
        if self._clock() <= self._slot_ends:
            whole = min(whole, self._slot_budget)
        return max(0, min(self._max_batch, whole))

    def take(self, n: int) -> None:
        """Spend `n` tokens (call once `delay(n)` is 0); the balance may go negative.

        Paced: a call after the spacing opens a slot: its whole tokens may be shared by calls
        within SLOT_SHARING seconds; the next slot opens `Pace.spacing` seconds later.
        """
        if self._rate is None:
            return
        now = self._clock()
        self._refill(now)
        if self._pace is not None:
            if now > self._slot_ends:
                self._open_slot(now, self._pace)
                self._slot_budget = math.floor(self._tokens + _ROUNDING)
            self._slot_budget -= n
            self._wanted_since = None
            if self._owed > 0:  # paid back with the next call, at most CATCH_UP of one
                back = min(self._owed, CATCH_UP * self._pace.per_call)
                self._owed -= back
                self._tokens += back
        self._tokens -= n

    def _open_slot(self, now: float, pace: Pace) -> None:
        """A new slot at `now`; the next one on the grid, `spacing` after this one was due.

        A late slot does not push the grid back (its lateness would be lost for good), unless
        it is more than half a spacing late (or the bucket was idle): then the grid restarts
        here, so the next call is never a sliver. Whatever the grid says, a slot opens only
        `Pace.window` (1 + PACING_MARGIN s) after the slot k - 1 before it (k = calls per
        second), so no closed 1-s window ever holds k + 1 slots, even when the calls reach
        Ardary up to PACING_MARGIN s apart from when they left.
        """
        self._slot_ends = now + min(SLOT_SHARING, pace.spacing / 2)
        due = max(self._next_slot, self._planned)
        self._planned = due if now - due <= pace.spacing / 2 else now
        self._next_slot = self._planned + pace.spacing
        self._opened.append(now)
        while len(self._opened) >= pace.calls_per_second:
            self._next_slot = max(self._next_slot, self._opened.popleft() + pace.window)

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
        self._slot_ends = -math.inf
        self._owed, self._wanted_since = 0.0, None  # Ardary asked for less: nothing is owed


class SendGate:
    """The global bucket and one bucket per rated login, for one worker.

    Every rate (global and per login) is this worker's `rate_share` of the configured one,
    re-divided by `set_share` on every assignment. A login's call needs tokens from both its own
    bucket (if it has a rate) and the global one. `turn(login)` says when the login was last
    served, so logins take turns (`next_batch`).
    """

    def __init__(
        self,
        global_rate: float | None,
        per_login: Mapping[str, float] | None = None,
        *,
        pacing: float | None = None,
        max_batch: int = _UNLIMITED,
        tick: float = DEFAULT_TICK,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.global_rate = global_rate
        self.per_login = dict(per_login or {})

        def bucket() -> TokenBucket:
            return TokenBucket(0.0, tick=tick, pacing=pacing, max_batch=max_batch, clock=clock)

        self.overall = bucket()
        self.logins = {login: bucket() for login in self.per_login}
        self._turns: dict[str, int] = {}
        self._turn = 0

    def set_share(self, assigned: int, total: int) -> None:
        """Run at this worker's share (`assigned` of `total` partitions) of every rate."""
        self.overall.set_rate(rate_share(self.global_rate, assigned, total))
        for login, bucket in self.logins.items():
            bucket.set_rate(rate_share(self.per_login[login], assigned, total))

    def rated(self, login: str) -> bool:
        """True when `login` has a rate of its own (OUTBOUND_RATE_PER_LOGIN)."""
        return login in self.logins

    def delay(self, login: str) -> float:
        """Seconds before `login` may make a call (of what will have accrued by then).

        A positive wait marks the bucket(s) it comes from as wanted (`TokenBucket.want`): if
        the caller comes back late, what overflows them meanwhile is owed, not lost.
        """
        wait = self.overall.delay(1)
        own = self.logins.get(login)
        mine = 0.0 if own is None else own.delay(1)
        if wait > 0 and wait >= mine:
            self.overall.want()
        if own is not None and mine > 0 and mine >= wait:
            own.want()
        return max(wait, mine)

    def allowance(self, login: str, want: int) -> int:
        """How many of `want` messages `login` may send now (0: wait `delay(login)`)."""
        if want <= 0 or self.delay(login) > 0:
            return 0
        n = min(want, self.overall.available())
        own = self.logins.get(login)
        return n if own is None else min(n, own.available())

    def take(self, login: str, n: int) -> None:
        """Spend `n` messages of `login` from its bucket and the global one."""
        self.overall.take(n)
        own = self.logins.get(login)
        if own is not None:
            own.take(n)
        self._turn += 1
        if len(self._turns) >= 4096:  # logins are few; a flood of made-up ones is forgotten
            self._turns.clear()
        self._turns[login] = self._turn

    def turn(self, login: str) -> int:
        """When `login` was last served (0: never): the lowest goes first among equals."""
        return self._turns.get(login, 0)

    def pause(self, seconds: float) -> None:
        """Grant nothing to anyone for `seconds` (a 429 or 5xx slows the whole worker)."""
        self.overall.pause(seconds)


T = TypeVar("T")


def next_batch(
    batcher: PriorityBatcher[T], gate: SendGate, now: float, *, force: bool = False
) -> tuple[BatchKey, list[T]] | float:
    """The next batch to send (its tokens taken from `gate`), else seconds to wait.

    Among the groups whose login may send now and that are ready (full, past their linger, or
    holding more than they may send: a backlog), the highest priority goes first; then logins
    with a rate of their own (each takes at most its rate, so they cannot starve the others,
    and they get their rate whenever the global one leaves room); then the login served least
    recently (logins take turns), then the oldest. A login that must wait is passed over, so its
    backlog never holds up another login's messages. The wait is the soonest moment a buffered
    group may go; 1.0 when nothing is buffered. `force` ignores the linger (draining), not the
    rates.
    """
    best: tuple[int, bool, int, float] | None = None
    chosen: tuple[BatchKey, int] | None = None
    soonest = 1.0
    for group in batcher.groups():
        login = group.key.login
        want = min(group.size, batcher.max_batch)
        allowed = gate.allowance(login, want)
        if allowed <= 0:
            soonest = min(soonest, gate.delay(login))
            continue
        lingered = now - group.oldest >= batcher.linger
        if not (force or lingered or group.size >= batcher.max_batch or group.size > allowed):
            soonest = min(soonest, group.oldest + batcher.linger - now)
            continue
        rank = (-group.key.priority, not gate.rated(login), gate.turn(login), group.oldest)
        if best is None or rank < best:
            best, chosen = rank, (group.key, allowed)
    if chosen is None:
        return max(soonest, 0.001)
    key, allowed = chosen
    items = batcher.take(key, allowed)
    gate.take(key.login, len(items))
    return key, items
