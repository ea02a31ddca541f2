"""The age of a partition's oldest unprocessed record, from what a lag refresh sees."""

from __future__ import annotations

from pipeline.core.lag_time import LagClock, PartitionView

TP = ("t", 0)


def test_a_caught_up_partition_has_no_lag() -> None:
    clock = LagClock()
    assert clock.seconds(TP, PartitionView(committed=10, highwater=10), now=1000.0) == 0.0


def test_a_record_in_hand_is_aged_by_its_own_timestamp() -> None:
    clock = LagClock()
    view = PartitionView(committed=5, highwater=10, taken=7, oldest_unacked=990.0)
    assert clock.seconds(TP, view, now=1000.0) == 10.0


def test_records_taken_and_acked_but_not_committed_yet_are_no_lag() -> None:
    clock = LagClock()
    view = PartitionView(committed=5, highwater=10, taken=9)
    assert clock.seconds(TP, view, now=1000.0) == 0.0


def test_a_stalled_consumer_ages_from_the_last_record_it_held() -> None:
    clock = LagClock()
    clock.seconds(TP, PartitionView(5, 10, taken=7, oldest_unacked=990.0), now=1000.0)
    # the agent finished that record and took nothing since: records 8 to 11 wait, untaken
    stalled = PartitionView(committed=8, highwater=12, taken=7)
    assert clock.seconds(TP, stalled, now=1005.0) == 15.0
    assert clock.seconds(TP, stalled, now=1065.0) == 75.0  # grows with the wall clock


def test_a_stall_after_being_caught_up_ages_from_then() -> None:
    clock = LagClock()
    clock.seconds(TP, PartitionView(committed=10, highwater=10), now=1000.0)
    stalled = PartitionView(committed=10, highwater=13, taken=9)
    assert clock.seconds(TP, stalled, now=1030.0) == 30.0


def test_a_backlog_found_at_assignment_counts_from_the_first_refresh_that_saw_it() -> None:
    clock = LagClock()
    backlog = PartitionView(committed=0, highwater=500)
    assert clock.seconds(TP, backlog, now=1000.0) == 0.0
    assert clock.seconds(TP, backlog, now=1005.0) == 5.0
    taken = PartitionView(committed=0, highwater=500, taken=10, oldest_unacked=400.0)
    assert clock.seconds(TP, taken, now=1010.0) == 610.0  # the record's own age, once held


def test_revoked_partitions_are_forgotten() -> None:
    clock = LagClock()
    other = ("t", 1)
    clock.seconds(TP, PartitionView(5, 10, oldest_unacked=900.0), now=1000.0)
    clock.seconds(other, PartitionView(5, 10, oldest_unacked=900.0), now=1000.0)
    clock.retain([other])
    # TP assigned again later: it starts without a floor, as at a first assignment
    assert clock.seconds(TP, PartitionView(5, 10), now=2000.0) == 0.0
    assert clock.seconds(other, PartitionView(5, 10), now=2000.0) == 1100.0
