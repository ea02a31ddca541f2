"""`ardary_lifecycles_overdue_total` counts each message once, on the record that first flags it
overdue — the timer's, or a batch's when the timer will not (`flags_overdue`) — whatever the
order of events, the batching and the timer runs (no rebalance in between)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.agents.correlate import (
    decode_value,
    encode_value,
    flags_overdue,
    fold_events,
    overdue_keys,
)
from pipeline.core.lifecycle import LifecycleState, overdue_record
from pipeline.records import (
    ClickCallback,
    SendRequest,
    SendResult,
    StatusCallback,
)
from tests.agents.streamdata import make_events, shuffled_with_duplicates

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TIMEOUT = 10.0
LIFECYCLE_TYPES = (SendRequest, SendResult, StatusCallback, ClickCallback)


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


class Worker:
    """The correlate agent's table, its two writers, and the counter they feed."""

    def __init__(self) -> None:
        self.data: dict[bytes, dict[str, Any]] = {}
        self.since: datetime | None = None
        self.counted: Counter[str] = Counter()
        self.ever_overdue: set[str] = set()

    def batch(self, events: list[Any], now: datetime) -> None:
        def load(tag: object, mid: str) -> LifecycleState | None:
            return decode_value(self.data.get(mid.encode()))

        touched, _skipped, _latest = fold_events(list(enumerate(events)), load)
        for mid, touch in touched.items():
            self.data[mid.encode()] = encode_value(touch.after, 0)
            record = touch.record(now, TIMEOUT)
            if record.overdue_since is not None:
                self.ever_overdue.add(mid)
            if flags_overdue(touch, record, now, TIMEOUT, self.since):
                self.counted[mid] += 1

    async def timer(self, now: datetime) -> None:
        for key, _partition in await overdue_keys(self.data.items(), now, TIMEOUT, self.since):
            state = decode_value(self.data[key])
            assert state is not None
            if overdue_record(state, now, TIMEOUT, since=self.since) is not None:
                self.ever_overdue.add(key.decode())
                self.counted[key.decode()] += 1
        self.since = now


def _request(mid: str = "m1") -> SendRequest:
    return SendRequest(mid, "alice", "+33612345678", "hi", at(0))


def _submitted(mid: str = "m1", seconds: float = 1) -> SendResult:
    return SendResult(mid, "alice", "+33612345678", "SUBMITTED", at(seconds), sent_time=at(seconds))


def _status(mid: str, status: str, seconds: float) -> StatusCallback:
    return StatusCallback(
        f"{mid}-{status}", "+33612345678", status, at(seconds), "{}", id_sms_api=mid
    )


async def test_the_timer_counts_a_receipt_that_never_came_once() -> None:
    worker = Worker()
    worker.batch([_request(), _submitted()], now=at(2))
    await worker.timer(at(12))
    await worker.timer(at(20))
    worker.batch([_status("m1", "received", 30)], now=at(30))  # late, after the flag
    assert worker.counted == Counter({"m1": 1})


async def test_a_late_receipt_before_the_scan_is_counted_by_its_batch() -> None:
    worker = Worker()
    worker.batch([_request(), _submitted()], now=at(2))
    worker.batch([_status("m1", "received", 15)], now=at(15))  # due at 11, no scan since
    await worker.timer(at(20))
    assert worker.counted == Counter({"m1": 1})


async def test_a_result_processed_after_its_deadline_and_the_scan_is_counted_by_its_batch() -> None:
    worker = Worker()
    await worker.timer(at(50))
    worker.batch([_request(), _submitted()], now=at(60))  # due at 11: behind the scan
    await worker.timer(at(70))
    worker.batch([_status("m1", "sent", 71)], now=at(71))  # a duplicate touch: no recount
    assert worker.counted == Counter({"m1": 1})


async def test_a_receipt_in_time_is_never_counted() -> None:
    worker = Worker()
    worker.batch([_request(), _submitted(), _status("m1", "received", 5)], now=at(5))
    await worker.timer(at(100))
    assert worker.counted == Counter()


@pytest.mark.parametrize(("batch", "seed"), [(1, 5), (13, 6), (1000, 7)])
async def test_every_message_ever_flagged_is_counted_exactly_once(batch: int, seed: int) -> None:
    events = [e for e in make_events(300, seed=seed, base=BASE) if isinstance(e, LIFECYCLE_TYPES)]
    stream = shuffled_with_duplicates(events, seed=seed + 1, dup_rate=0.4)
    worker = Worker()
    clock = BASE
    for i in range(0, len(stream), batch):
        chunk = stream[i : i + batch]
        clock = max([clock, *(e.received_at for e in chunk if hasattr(e, "received_at"))])
        worker.batch(chunk, now=clock)
        if i % (batch * 5) == 0:
            await worker.timer(clock)
    await worker.timer(clock + timedelta(seconds=120))
    assert worker.ever_overdue  # the stream has overdue messages
    assert worker.counted == Counter(dict.fromkeys(worker.ever_overdue, 1))
