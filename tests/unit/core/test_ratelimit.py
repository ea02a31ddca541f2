"""The outbound token bucket and rate shares, on a fake clock."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.ratelimit import TokenBucket, rate_share


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drive(bucket: TokenBucket, clock: FakeClock, seconds: float, batch: int) -> list[float]:
    """Send batches as soon as the bucket allows for `seconds`; one timestamp per message."""
    stamps: list[float] = []
    end = clock.now + seconds
    while True:
        wait = bucket.delay(batch)
        if clock.now + wait >= end:
            return stamps
        clock.now += wait
        bucket.take(batch)
        stamps.extend([clock.now] * batch)


def peak(stamps: list[float]) -> int:
    """Largest number of messages in any closed 1-s window."""
    best = 0
    j = 0
    for i, start in enumerate(stamps):
        j = max(j, i)
        while j < len(stamps) and stamps[j] <= start + 1.0:
            j += 1
        best = max(best, j - i)
    return best


@pytest.mark.parametrize("rate", [10.0, 200.0, 1000.0])
def test_sustained_rate_and_peak_stay_close_to_the_rate(rate: float) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, clock=clock)
    stamps = drive(bucket, clock, 20.0, bucket.batch_limit)
    achieved = len(stamps) / 20.0
    assert achieved == pytest.approx(rate, rel=0.02)
    # under a backlog the bucket is empty: one batch over the rate, plus the start
    assert peak(stamps) <= rate + 2 * bucket.batch_limit


def test_a_batch_is_one_pacing_tick_and_the_bucket_holds_two() -> None:
    clock = FakeClock()
    bucket = TokenBucket(200.0, tick=0.02, clock=clock)
    assert (bucket.batch_limit, bucket.capacity) == (4, 8)
    assert TokenBucket(5.0, tick=0.02, clock=clock).batch_limit == 1  # never below one message


def test_late_wakeups_lose_no_tokens() -> None:
    # a sender that always oversleeps by 30 % of a tick still achieves the rate
    clock = FakeClock()
    bucket = TokenBucket(200.0, tick=0.02, clock=clock)
    sent = 0
    end = clock.now + 10.0
    while clock.now < end:
        wait = bucket.delay(4)
        clock.now += wait + 0.006
        bucket.take(4)
        sent += 4
    assert sent / 10.0 == pytest.approx(200.0, rel=0.02)


def test_a_batch_larger_than_the_burst_goes_into_debt_and_later_callers_wait() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10.0, tick=0.2, clock=clock)  # batches of 2, starts with 2
    assert bucket.delay(2) == 0
    bucket.take(10)
    assert bucket.delay(1) == pytest.approx((10 - 2 + 1) / 10.0)


def test_pause_grants_nothing_until_it_ends_then_refills_from_empty() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, tick=0.05, clock=clock)  # batches of 5
    bucket.pause(2.0)
    assert bucket.delay(1) == pytest.approx(2.0 + 1 / 100.0)
    clock.now += 2.0
    assert bucket.delay(5) == pytest.approx(5 / 100.0)
    clock.now += 1.0
    assert bucket.delay(5) == 0


def test_set_rate_rescales_and_zero_rate_never_grants() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100.0, clock=clock)
    bucket.set_rate(0.0)
    assert math.isinf(bucket.delay(1))
    bucket.set_rate(50.0)
    clock.now += 1.0
    assert bucket.delay(1) == 0
    assert bucket.rate == 50.0


def test_unlimited_bucket_never_waits() -> None:
    bucket = TokenBucket(None, clock=FakeClock())
    bucket.take(10_000)
    assert bucket.delay(10_000) == 0


def test_rate_share_divides_by_partitions() -> None:
    assert rate_share(200.0, 3, 6) == pytest.approx(100.0)
    assert rate_share(200.0, 0, 6) == 0.0
    assert rate_share(None, 3, 6) is None


@given(
    st.integers(min_value=1, max_value=64),
    st.lists(st.integers(min_value=0, max_value=64), min_size=1, max_size=8),
)
def test_shares_of_a_full_assignment_add_up_to_the_rate(total: int, cuts: list[int]) -> None:
    # any split of `total` partitions among workers: the shares sum to the global rate
    bounds = sorted({0, total, *(c % (total + 1) for c in cuts)})
    parts = [b - a for a, b in itertools.pairwise(bounds)]
    shares = [rate_share(300.0, p, total) or 0.0 for p in parts]
    assert sum(shares) == pytest.approx(300.0)


def test_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(-1.0)
