"""The latency histogram keeps its documented error bound, merges and round-trips."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.histogram import MAX_MS, RELATIVE_ERROR, LatencyHistogram

latencies = st.lists(st.integers(min_value=0, max_value=MAX_MS), min_size=1, max_size=300)
quantiles = st.sampled_from([0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0]) | st.floats(0, 1)


def nearest_rank(values: list[int], q: float) -> int:
    """Exact percentile, nearest-rank definition: the ceil(q*n)-th smallest (1-based, min 1)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def build(values: list[int]) -> LatencyHistogram:
    hist = LatencyHistogram()
    for v in values:
        hist.add(v)
    return hist


@given(latencies, quantiles)
def test_quantile_within_documented_bound(values: list[int], q: float) -> None:
    exact = nearest_rank(values, q)
    estimate = build(values).quantile(q)
    assert estimate is not None
    assert abs(estimate - exact) <= RELATIVE_ERROR * exact + 0.5 + 1e-9 * exact


@given(st.lists(st.integers(0, 49), min_size=1, max_size=50), quantiles)
def test_small_latencies_are_exact(values: list[int], q: float) -> None:
    # Below 50 ms, 1 % is under half a millisecond: rounding recovers the exact value.
    assert build(values).quantile(q) == nearest_rank(values, q)


@given(latencies, latencies)
def test_merge_equals_one_histogram_of_everything(a: list[int], b: list[int]) -> None:
    left, right = build(a), build(b)
    left.merge(right)
    assert left == build(a + b)
    assert left.total == len(a) + len(b)
    other_way = build(b)
    other_way.merge(build(a))
    assert other_way == left


@given(latencies, latencies)
def test_remove_undoes_add(keep: list[int], extra: list[int]) -> None:
    hist = build(keep + extra)
    for v in extra:
        hist.remove(v)
    assert hist == build(keep)
    assert hist.total == len(keep)


@given(latencies)
def test_dict_round_trip_is_json(values: list[int]) -> None:
    hist = build(values)
    data = json.loads(json.dumps(hist.to_dict()))
    again = LatencyHistogram.from_dict(data)
    assert again == hist
    assert again.total == hist.total
    assert again.quantile(0.95) == hist.quantile(0.95)


def test_bounded_number_of_buckets_over_the_whole_range() -> None:
    hist = LatencyHistogram()
    for v in range(0, MAX_MS, 997):
        hist.add(v)
    assert len(hist.to_dict()) < 1100


def test_values_above_range_are_clamped_to_seven_days() -> None:
    hist = build([MAX_MS * 10])
    estimate = hist.quantile(1.0)
    assert estimate is not None
    assert abs(estimate - MAX_MS) <= RELATIVE_ERROR * MAX_MS


def test_empty_and_invalid_inputs() -> None:
    hist = LatencyHistogram()
    assert hist.quantile(0.5) is None
    with pytest.raises(ValueError):
        hist.add(-1)
    with pytest.raises(ValueError):
        hist.quantile(1.5)
    hist.remove(10)  # removing an absent value leaves nothing behind
    assert hist.total == 0
    assert hist.to_dict() == {}
