"""AckOrder: finished events are released per partition in offset order, never past a busy one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipeline.core.ackorder import AckOrder


def test_in_order_finishes_are_released_at_once() -> None:
    order: AckOrder[str] = AckOrder()
    for offset in (0, 1, 2):
        order.received(0, offset)
    assert order.finished(0, 0, "a") == ["a"]
    assert order.finished(0, 1, "b") == ["b"]
    assert order.finished(0, 2, "c") == ["c"]
    assert order.held == 0


def test_a_later_offset_waits_for_the_earlier_busy_one() -> None:
    order: AckOrder[str] = AckOrder()
    for offset in (10, 11, 12):
        order.received(0, offset)
    assert order.finished(0, 11, "b") == []
    assert order.finished(0, 12, "c") == []
    assert order.held == 2
    assert order.finished(0, 10, "a") == ["a", "b", "c"]
    assert order.held == 0


def test_partitions_do_not_wait_for_each_other() -> None:
    order: AckOrder[str] = AckOrder()
    order.received(0, 5)
    order.received(1, 7)
    order.received(1, 8)
    assert order.finished(1, 8, "p1-8") == []
    assert order.finished(1, 7, "p1-7") == ["p1-7", "p1-8"]
    assert order.finished(0, 5, "p0-5") == ["p0-5"]


def test_an_offset_received_twice_is_released_when_both_copies_finish() -> None:
    order: AckOrder[str] = AckOrder()
    order.received(0, 3)
    order.received(0, 3)  # re-fetched after a seek: the same message, a second event
    order.received(0, 4)
    assert order.finished(0, 4, "d") == []
    assert order.finished(0, 3, "first") == []
    assert order.finished(0, 3, "second") == ["first", "second", "d"]


def test_a_forgotten_partition_drops_what_it_held_and_what_finishes_later() -> None:
    order: AckOrder[str] = AckOrder()
    order.received(2, 0)
    order.received(2, 1)
    assert order.finished(2, 1, "held") == []
    assert order.forget(2) == 1
    assert order.held == 0
    # a batch of the revoked partition finishing later is never released: acked during the
    # revocation it would be committed out of order (issue 18)
    assert order.finished(2, 0, "late") == []
    assert order.held == 0
    assert order.forget(2) == 0


@given(st.permutations(range(30)))
def test_released_offsets_are_always_a_prefix_in_order(finish_order: list[int]) -> None:
    order: AckOrder[int] = AckOrder()
    for offset in range(30):
        order.received(0, offset)
    released: list[int] = []
    finished: set[int] = set()
    for offset in finish_order:
        finished.add(offset)
        released.extend(order.finished(0, offset, offset))
        # exactly the longest run 0..k-1 of finished offsets is out
        k = 0
        while k in finished:
            k += 1
        assert released == list(range(k))
        assert order.held == len(finished) - k
