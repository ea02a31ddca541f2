"""Pacing by interval and per-login rates, on an injected clock.

A simulated dispatcher drives the buckets the way the outbound agent does: the global bucket
alone (`batch_limit` → `delay` → take), or `next_batch` over a PriorityBatcher and a SendGate.
Peaks are counted in closed 1-s windows, as `bench outbound` counts them.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from pipeline.core.pacing import CATCH_UP, PACING_MARGIN, pace_for
from pipeline.core.ratelimit import SendGate, TokenBucket, next_batch
from pipeline.core.sending import BatchKey, PriorityBatcher


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def peak(stamps: list[float]) -> int:
    """The largest number of stamps in any closed 1-s window [t, t + 1]."""
    stamps = sorted(stamps)
    best, j = 0, 0
    for i, start in enumerate(stamps):
        j = max(j, i)
        while j < len(stamps) and stamps[j] <= start + 1.0 + 1e-9:
            j += 1
        best = max(best, j - i)
    return best


# --- the pace --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "max_batch", "calls", "per_call"),
    [
        (40, 100, 4, 10.2),  # 0.25 s: four calls a second, ~10 messages each
        (200, 100, 4, 51.0),
        (1000, 100, 11, 1020 / 11),  # OUTBOUND_MAX_BATCH caps a call: more calls
        (3, 100, 3, 1.02),  # at least one message a call
        (0.5, 100, 1, 0.51),  # slower than one a second: one call waits for its token
    ],
)
def test_pace_for(rate: float, max_batch: int, calls: int, per_call: float) -> None:
    pace = pace_for(rate, 0.25, max_batch)
    assert pace.calls_per_second == calls
    assert pace.spacing == pytest.approx((1 + PACING_MARGIN) / calls)
    assert pace.per_call == pytest.approx(per_call)
    assert pace.per_call <= max_batch
    assert pace.calls_per_second * pace.spacing > 1  # k + 1 calls never fit in 1 s


# --- one bucket, driven as the outbound dispatcher drives it today ---------------------------


def drain(bucket: TokenBucket, clock: FakeClock, queued: int, *, late: float = 0.0) -> list[int]:
    """Send `queued` messages as the dispatcher loop does; returns the size of every call.

    `late`: each sleep overshoots by up to that many seconds (seeded).
    """
    rng = random.Random(7)
    sizes: list[int] = []
    stamps: list[float] = []
    while queued:
        size = min(queued, bucket.batch_limit)
        wait = bucket.delay(size)
        if wait > 0:
            clock.now += max(wait, 1e-6) + rng.uniform(0, late)  # a real sleep moves time on
            continue
        bucket.take(size)
        sizes.append(size)
        stamps.extend([clock.now] * size)
        queued -= size
    drain.stamps = stamps  # type: ignore[attr-defined]
    return sizes


def test_200_queued_at_40_per_second_go_in_calls_of_ten_without_a_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(40.0, pacing=0.25, max_batch=100, clock=clock)
    start = clock.now
    sizes = drain(bucket, clock, 200)
    stamps: list[float] = drain.stamps  # type: ignore[attr-defined]
    assert sum(sizes) == 200
    assert sum(sizes) / len(sizes) >= 10  # not one message a call
    assert peak(stamps) <= 40 * 1.05  # no 1-s window above the rate + 5 %
    # and the rate itself: the last call leaves when 200 - 10 (the first call's) have accrued
    assert stamps[-1] - start == pytest.approx((200 - 10.2) / 40, abs=0.3)


def test_the_same_backlog_per_tick_made_one_call_per_message() -> None:
    # what issue 17 found: the tick bucket (pacing=None) releases one message per 25 ms
    clock = FakeClock()
    sizes = drain(TokenBucket(40.0, clock=clock), clock, 200)
    assert set(sizes) == {1}


@pytest.mark.parametrize("rate", [5.0, 20.0, 40.0, 80.0, 200.0, 1000.0])
@pytest.mark.parametrize("late", [0.0, 0.004, 0.02])
def test_rate_and_peak_hold_with_late_wakeups(rate: float, late: float) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, pacing=0.25, max_batch=100, clock=clock)
    start = clock.now
    drain(bucket, clock, int(rate * 30))
    stamps: list[float] = drain.stamps  # type: ignore[attr-defined]
    achieved = len(stamps) / (stamps[-1] - start)
    # late wake-ups are caught up (CATCH_UP) as long as they stay small
    assert achieved == pytest.approx(rate, rel=0.02 if late <= 0.004 else 0.06)
    assert peak(stamps) <= rate * (1 + PACING_MARGIN) * 1.05 + 1


def test_a_trickle_waits_at_most_one_spacing() -> None:
    # a message arriving now and then goes out at once, or at the login's next slot
    clock = FakeClock()
    bucket = TokenBucket(40.0, pacing=0.25, max_batch=100, clock=clock)
    pace = bucket.pace
    assert pace is not None
    for _ in range(20):
        clock.now += 0.1
        wait = bucket.delay(1)
        assert wait <= pace.spacing
        clock.now += wait
        bucket.take(1)


def test_pause_and_zero_rate_in_paced_mode() -> None:
    clock = FakeClock()
    bucket = TokenBucket(40.0, pacing=0.25, max_batch=100, clock=clock)
    bucket.pause(2.0)
    assert bucket.delay(10) == pytest.approx(2.0 + 10 / 40)
    bucket.set_rate(0.0)
    assert math.isinf(bucket.delay(1)) and bucket.available() == 0
    bucket.set_rate(None)
    assert bucket.delay(10_000) == 0


# --- per-login rates: next_batch over a PriorityBatcher and a SendGate -----------------------


@dataclass
class Sim:
    """A dispatcher on a fake clock: arrivals wake it, `next_batch` decides."""

    gate: SendGate
    clock: FakeClock
    max_batch: int = 100
    linger: float = 0.02
    late: float = 0.0  # each wake-up overshoots by up to this many seconds (seeded)
    batcher: PriorityBatcher[int] = field(init=False)
    sent: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    calls: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    waited: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def __post_init__(self) -> None:
        self.batcher = PriorityBatcher(self.max_batch, self.linger)
        self._rng = random.Random(11)

    def run(self, arrivals: list[tuple[float, str]], until: float) -> None:
        arrivals = sorted(arrivals)
        arrived: dict[int, float] = {}
        i = 0
        while self.clock.now < until:
            while i < len(arrivals) and arrivals[i][0] <= self.clock.now:
                at, login = arrivals[i]
                arrived[i] = at
                self.batcher.add(BatchKey(login, "SERVER", None, 1), i, at)
                i += 1
            out = next_batch(self.batcher, self.gate, self.clock.now)
            if isinstance(out, tuple):
                key, items = out
                self.calls[key.login].append(len(items))
                for item in items:
                    self.sent[key.login].append(self.clock.now)
                    self.waited[key.login].append(self.clock.now - arrived[item])
                continue
            wake = arrivals[i][0] if i < len(arrivals) else math.inf
            sleep = max(out, 1e-6) + self._rng.uniform(0, self.late)
            self.clock.now = min(self.clock.now + sleep, wake, until)


def flood(login: str, count: int, at: float) -> list[tuple[float, str]]:
    return [(at, login)] * count


def test_one_logins_backlog_never_holds_up_anothers() -> None:
    clock = FakeClock()
    gate = SendGate(100.0, {"a": 5.0, "b": 20.0}, pacing=0.25, max_batch=100, clock=clock)
    gate.set_share(6, 6)
    t0 = clock.now
    trickle = [(t0 + 0.1 * k, "b") for k in range(200)]  # b: 10/s, under its 20/s
    sim = Sim(gate, clock)
    sim.run(flood("a", 1000, t0) + trickle, until=t0 + 21)
    # a floods at its own pace ...
    a = [t for t in sim.sent["a"] if t0 + 2 <= t < t0 + 18]
    assert len(a) / 16 == pytest.approx(5.0, rel=0.03)
    # ... while b's messages go out as they come: never behind a's backlog
    assert len(sim.sent["b"]) == 200
    assert max(sim.waited["b"]) <= gate.logins["b"].pace.spacing + 0.03  # type: ignore[union-attr]


def test_two_logins_flooding_each_get_their_rate_inside_the_global_one() -> None:
    clock = FakeClock()
    gate = SendGate(100.0, {"a": 5.0, "b": 20.0}, pacing=0.25, max_batch=100, clock=clock)
    gate.set_share(6, 6)
    t0 = clock.now
    sim = Sim(gate, clock)
    sim.run(flood("a", 2000, t0) + flood("b", 2000, t0) + flood("c", 5000, t0), until=t0 + 30)
    for login, rate in (("a", 5.0), ("b", 20.0)):
        stamps = [t for t in sim.sent[login] if t0 + 2 <= t < t0 + 28]
        assert len(stamps) / 26 == pytest.approx(rate, rel=0.03), login
        # whole messages: at 5/s one more than the rate is 20 % (a call of 2 in 1,1,1,2,...)
        assert peak(stamps) <= rate * (1 + PACING_MARGIN) + 1, login
    # c has no rate of its own: it gets what the global rate leaves, and the total holds
    everything = [t for stamps in sim.sent.values() for t in stamps if t0 + 2 <= t < t0 + 28]
    assert len(everything) / 26 == pytest.approx(100.0, rel=0.03)
    assert peak(everything) <= 100 * (1 + PACING_MARGIN) + 1
    assert sum(sim.calls["c"]) / len(sim.calls["c"]) >= 15  # paced calls, not one by one


@pytest.mark.parametrize("late", [0.0, 0.003])
def test_login_rates_of_20_and_80_hold_their_peak_within_10_percent(late: float) -> None:
    # the per-login benchmark, simulated: two logins at 20 and 80 msg/s, 60 s
    clock = FakeClock()
    gate = SendGate(200.0, {"a": 20.0, "b": 80.0}, pacing=0.25, max_batch=100, clock=clock)
    gate.set_share(6, 6)
    t0 = clock.now
    sim = Sim(gate, clock, late=late)
    sim.run(flood("a", 2000, t0) + flood("b", 6000, t0), until=t0 + 60)
    for login, rate in (("a", 20.0), ("b", 80.0)):
        stamps = [t for t in sim.sent[login] if t0 + 2 <= t < t0 + 58]
        assert len(stamps) / 56 == pytest.approx(rate, rel=0.03), login
        assert peak(stamps) <= rate * 1.10, login


def test_logins_without_their_own_rate_share_the_global_pace() -> None:
    clock = FakeClock()
    gate = SendGate(40.0, pacing=0.25, max_batch=100, clock=clock)
    gate.set_share(3, 3)
    t0 = clock.now
    sim = Sim(gate, clock)
    sim.run(flood("a", 400, t0) + flood("b", 400, t0), until=t0 + 10)
    everything = sorted(t for stamps in sim.sent.values() for t in stamps)
    assert len([t for t in everything if t < t0 + 10]) == pytest.approx(400, abs=12)
    assert peak(everything) <= 40 * 1.05
    calls = sim.calls["a"] + sim.calls["b"]
    assert sum(calls) / len(calls) >= 10


def test_set_share_divides_every_rate_by_partitions() -> None:
    clock = FakeClock()
    gate = SendGate(100.0, {"a": 20.0}, pacing=0.25, max_batch=100, clock=clock)
    gate.set_share(3, 6)
    assert gate.overall.rate == 50.0
    assert gate.logins["a"].rate == 10.0
    gate.set_share(0, 6)
    assert gate.allowance("a", 1) == 0 and math.isinf(gate.delay("a"))
    assert gate.allowance("z", 1) == 0  # a login without a rate still needs the global one


def test_a_pause_stops_every_login() -> None:
    clock = FakeClock()
    gate = SendGate(100.0, {"a": 20.0}, pacing=0.25, max_batch=100, clock=clock)
    gate.set_share(1, 1)
    assert gate.allowance("a", 5) == 5 and gate.allowance("b", 5) == 5
    gate.pause(3.0)
    assert gate.allowance("a", 5) == 0 and gate.allowance("b", 5) == 0
    assert gate.delay("b") == pytest.approx(3.0 + 1 / 100)


def test_next_batch_waits_for_the_linger_when_a_group_may_go_but_is_not_full() -> None:
    clock = FakeClock()
    gate = SendGate(None, clock=clock)
    gate.set_share(1, 1)  # unlimited
    batcher: PriorityBatcher[int] = PriorityBatcher(10, 0.05)
    batcher.add(BatchKey("a", "SERVER", None, 1), 1, clock.now)
    assert next_batch(batcher, gate, clock.now) == pytest.approx(0.05)
    clock.now += 0.06
    assert next_batch(batcher, gate, clock.now) == (BatchKey("a", "SERVER", None, 1), [1])
    assert next_batch(batcher, gate, clock.now) == 1.0  # nothing buffered


def test_a_very_high_rate_is_not_held_by_slot_sharing() -> None:
    # `bench outbound`'s unlimited run sets 1e9 msg/s: its slots are 0.1 µs apart, so a slot is
    # shared for at most half of that, and every call (50 µs apart) carries a full batch
    clock = FakeClock()
    gate = SendGate(1e9, pacing=0.25, max_batch=100, clock=clock)
    gate.set_share(6, 6)
    for _ in range(50):
        assert gate.allowance("a", 100) == 100
        gate.take("a", 100)
        clock.now += 50e-6


@pytest.mark.parametrize("rate", [20.0, 100.0, 200.0])
def test_a_late_dispatcher_loses_no_tokens(rate: float) -> None:
    # every wake-up 0-50 ms late (a loaded event loop): the slots keep their grid and what
    # overflows the bucket meanwhile is owed back, so the rate holds and the peak stays bounded
    clock = FakeClock()
    gate = SendGate(rate, pacing=0.25, max_batch=100, clock=clock)
    gate.set_share(1, 1)
    t0 = clock.now
    sim = Sim(gate, clock, late=0.05)
    sim.run(flood("c", int(rate * 80), t0), until=t0 + 40)
    stamps = [t for t in sim.sent["c"] if t0 + 2 <= t < t0 + 38]
    assert len(stamps) / 36 == pytest.approx(rate, rel=0.01)
    assert peak(stamps) <= rate * (1 + PACING_MARGIN) * 1.05 + 2


def test_tokens_lost_to_one_stall_are_paid_back_a_little_each_call() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, pacing=0.25, max_batch=100, clock=clock)
    pace = bucket.pace
    assert pace is not None
    bucket.take(bucket.available())
    wait = bucket.delay(1)
    bucket.want()  # the dispatcher is told to wait ...
    clock.now += wait + 0.5  # ... and comes back half a second late
    bucket.take(bucket.available())  # a full bucket: the rest of the stall is owed
    overflow = 100 * (wait + 0.5) - pace.capacity  # what a capped bucket used to lose
    assert bucket.owed == pytest.approx(overflow - CATCH_UP * pace.per_call, abs=1)
    owed = bucket.owed
    sizes = []
    for _ in range(8):
        clock.now += bucket.delay(1)
        sizes.append(bucket.available())
        bucket.take(sizes[-1])
    assert max(sizes) <= math.floor(pace.capacity)  # never more than a full bucket
    assert bucket.owed < owed  # paid back, CATCH_UP of a call each time


def test_an_idle_bucket_owes_nothing() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, pacing=0.25, max_batch=100, clock=clock)
    clock.now += 10.0  # nobody waited: a full bucket, nothing owed
    assert bucket.available() == math.floor(bucket.pace.capacity)  # type: ignore[union-attr]
    bucket.take(bucket.available())
    assert bucket.owed == 0
