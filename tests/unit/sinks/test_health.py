"""The sink's lag arithmetic and readiness decision, without a broker."""

from __future__ import annotations

import pytest

from pipeline.sinks.base import TopicPartition
from pipeline.sinks.health import (
    PartitionProgress,
    ProgressTracker,
    Readiness,
    TopicLag,
    lag_seconds,
    partition_lag,
    readiness,
    topic_lags,
)

TP0 = TopicPartition("p.callbacks.status", 0)
TP1 = TopicPartition("p.callbacks.status", 1)
NOW = 1_700_000_100.0  # wall-clock seconds
NOW_MS = int(NOW * 1000)


def progress(
    highwater: int | None,
    committed: int | None,
    oldest_ms: int | None = None,
    behind_since: float | None = None,
    partition: int = 0,
) -> PartitionProgress:
    return PartitionProgress(
        "p.callbacks.status", partition, highwater, committed, oldest_ms, behind_since
    )


@pytest.mark.parametrize(
    ("highwater", "committed", "lag"),
    [
        (10, 4, 6),
        (10, 10, 0),
        (10, 12, 0),  # a stored offset ahead of a stale highwater is no negative lag
        (None, 4, None),  # no fetch answered yet: unknown
        (0, None, 0),  # an empty partition owes nothing, stored offset or not
        (7, None, None),  # records, but where the sink starts is not known yet
    ],
)
def test_partition_lag(highwater: int | None, committed: int | None, lag: int | None) -> None:
    assert partition_lag(highwater, committed) == lag


def test_lag_seconds_is_the_age_of_the_oldest_uncommitted_record() -> None:
    assert lag_seconds(progress(10, 4, oldest_ms=NOW_MS - 42_000), NOW) == pytest.approx(42.0)
    # caught up: 0, whatever a stale run says
    assert lag_seconds(progress(10, 10, oldest_ms=NOW_MS - 42_000), NOW) == 0.0
    # a producer clock ahead of ours never makes a negative age
    assert lag_seconds(progress(10, 4, oldest_ms=NOW_MS + 5_000), NOW) == 0.0
    # behind with none of the records in hand: counted from when that was first seen
    assert lag_seconds(progress(10, 4, behind_since=NOW - 7.5), NOW) == pytest.approx(7.5)
    assert lag_seconds(progress(None, 4, oldest_ms=NOW_MS - 42_000), NOW) == 0.0


def test_topic_lags_sum_records_and_take_the_oldest_age() -> None:
    lags = topic_lags(
        [
            progress(10, 4, oldest_ms=NOW_MS - 30_000, partition=0),
            progress(5, 2, oldest_ms=NOW_MS - 90_000, partition=1),
            progress(None, 0, partition=2),  # unknown: left out
            PartitionProgress("p.sms.lifecycle", 0, 3, 3, None, None),
        ],
        NOW,
    )
    assert lags == {
        "p.callbacks.status": TopicLag(9, pytest.approx(90.0)),  # type: ignore[arg-type]
        "p.sms.lifecycle": TopicLag(0, 0.0),
    }


@pytest.mark.parametrize(
    ("running", "stopping", "assigned", "broker_up", "expected"),
    [
        (True, False, 3, True, Readiness(True, "ok")),
        (False, False, 0, True, Readiness(False, "starting: the consumer loop is not running yet")),
        (True, False, 0, True, Readiness(False, "no partitions assigned (yet)")),
        (True, False, 3, False, Readiness(False, "no bootstrap broker accepts a connection")),
        (True, True, 3, True, Readiness(False, "stopping")),
    ],
)
def test_readiness(
    running: bool, stopping: bool, assigned: int, broker_up: bool, expected: Readiness
) -> None:
    got = readiness(running=running, stopping=stopping, assigned=assigned, broker_up=broker_up)
    assert got == expected


def test_tracker_follows_polls_and_commits() -> None:
    tracker = ProgressTracker()
    tracker.assigned(TP0, 100)  # the warehouse holds everything before 100
    tracker.assigned(TP1, None)  # never stored
    [p0, p1] = tracker.view({TP0: 100, TP1: 0}, NOW)
    assert (partition_lag(p0.highwater, p0.committed), p0.oldest_uncommitted_ms) == (0, None)
    assert partition_lag(p1.highwater, p1.committed) == 0

    # two polls of TP0, one of TP1 (which starts where its first record is)
    tracker.polled(TP0, 100, 149, NOW_MS - 60_000)
    tracker.polled(TP0, 150, 199, NOW_MS - 30_000)
    tracker.polled(TP1, 40, 44, NOW_MS - 10_000)
    [p0, p1] = tracker.view({TP0: 200, TP1: 45}, NOW)
    assert partition_lag(p0.highwater, p0.committed) == 100
    assert lag_seconds(p0, NOW) == pytest.approx(60.0)
    assert (p1.committed, partition_lag(p1.highwater, p1.committed)) == (40, 5)

    # the first run is stored: the age is now the second run's
    tracker.committed({TP0: 150})
    [p0, _] = tracker.view({TP0: 200, TP1: 45}, NOW)
    assert partition_lag(p0.highwater, p0.committed) == 50
    assert lag_seconds(p0, NOW) == pytest.approx(30.0)
    # partly stored: still counted from the run's first record (the documented approximation)
    tracker.committed({TP0: 170})
    [p0, _] = tracker.view({TP0: 200, TP1: 45}, NOW)
    assert lag_seconds(p0, NOW) == pytest.approx(30.0)

    tracker.committed({TP0: 200, TP1: 45})
    [p0, p1] = tracker.view({TP0: 200, TP1: 45}, NOW)
    assert [lag_seconds(p, NOW) for p in (p0, p1)] == [0.0, 0.0]
    assert [partition_lag(p.highwater, p.committed) for p in (p0, p1)] == [0, 0]


def test_tracker_counts_a_stall_from_when_it_first_saw_it() -> None:
    tracker = ProgressTracker()
    tracker.assigned(TP0, 100)
    [p0] = tracker.view({TP0: 120}, NOW)  # 20 records out there, none fetched yet
    assert p0.behind_since == NOW
    [p0] = tracker.view({TP0: 125}, NOW + 10)
    assert p0.behind_since == NOW  # kept while the stall lasts
    assert lag_seconds(p0, NOW + 10) == pytest.approx(10.0)
    tracker.polled(TP0, 100, 124, NOW_MS - 50_000)  # now the records are in hand
    [p0] = tracker.view({TP0: 125}, NOW + 11)
    assert p0.behind_since is None and lag_seconds(p0, NOW + 11) == pytest.approx(61.0)


def test_tracker_forgets_revoked_partitions_and_ignores_their_late_commits() -> None:
    tracker = ProgressTracker()
    tracker.assigned(TP0, 5)
    tracker.polled(TP0, 5, 9, NOW_MS)
    tracker.revoked([TP0])
    tracker.committed({TP0: 10})  # a write that was in flight when the partition went away
    [p0] = tracker.view({TP0: 10}, NOW)  # reported again only as a new assignment says
    assert p0.committed is None and p0.oldest_uncommitted_ms is None


def test_a_record_without_timestamp_falls_back_to_the_stall_clock() -> None:
    tracker = ProgressTracker()
    tracker.assigned(TP0, 0)
    tracker.polled(TP0, 0, 3, -1)  # old message format: no timestamp
    [p0] = tracker.view({TP0: 4}, NOW)
    assert p0.oldest_uncommitted_ms is None and p0.behind_since == NOW
