"""The correlate agent's overdue receipts, without a broker: the batches derive records as of a
"now", the timer's scan picks the deadlines that fell since its last run, and together they
equal `batch_lifecycles(events, now=N, …)` for a "now" after the timer's last run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.agents.correlate import (
    decode_value,
    encode_value,
    fold_events,
    overdue_candidate,
    overdue_keys,
    overdue_scan_interval,
)
from pipeline.core.lifecycle import LifecycleState, apply, batch_lifecycles, overdue_record
from pipeline.records import (
    ClickCallback,
    SendRequest,
    SendResult,
    SmsLifecycle,
    StatusCallback,
)
from tests.agents.streamdata import make_events, shuffled_with_duplicates

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
TIMEOUT = 10.0
LIFECYCLE_TYPES = (SendRequest, SendResult, StatusCallback, ClickCallback)


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


class Worker:
    """The agent's table and emissions, with its two writers: batches and the overdue timer."""

    def __init__(self) -> None:
        self.data: dict[bytes, dict[str, Any]] = {}
        self.emitted: dict[str, SmsLifecycle] = {}
        self.since: datetime | None = None

    def batch(self, events: list[Any], now: datetime) -> None:
        def load(tag: object, mid: str) -> LifecycleState | None:
            return decode_value(self.data.get(mid.encode()))

        touched, _skipped, _latest = fold_events(list(enumerate(events)), load)
        for mid, touch in touched.items():
            self.data[mid.encode()] = encode_value(touch.after, 0)
            self.emitted[mid] = touch.record(now, TIMEOUT)

    async def timer(self, now: datetime) -> list[str]:
        found = await overdue_keys(self.data.items(), now, TIMEOUT, self.since)
        fired = []
        for key, _partition in found:
            state = decode_value(self.data[key])
            assert state is not None
            record = overdue_record(state, now, TIMEOUT, since=self.since)
            if record is not None:
                self.emitted[key.decode()] = record
                fired.append(key.decode())
        self.since = now
        return fired


def _request(mid: str = "m1") -> SendRequest:
    return SendRequest(mid, "alice", "+33612345678", "hi", at(0))


def _submitted(mid: str = "m1", **kw: Any) -> SendResult:
    return SendResult(mid, "alice", "+33612345678", "SUBMITTED", at(1), sent_time=at(1), **kw)


def _status(mid: str, status: str, seconds: float) -> StatusCallback:
    return StatusCallback(
        f"{mid}-{status}", "+33612345678", status, at(seconds), "{}", id_sms_api=mid
    )


async def test_the_timer_emits_a_message_that_sees_no_event_past_its_deadline() -> None:
    worker = Worker()
    worker.batch([_request(), _submitted(), _status("m1", "sent", 2)], now=at(3))
    assert worker.emitted["m1"].overdue_since is None
    assert await worker.timer(at(10)) == []  # due at 11
    assert await worker.timer(at(12)) == ["m1"]
    record = worker.emitted["m1"]
    assert (record.state, record.overdue_since, record.updated_at) == ("SENT", at(11), at(11))
    assert await worker.timer(at(20)) == []  # once: its deadline lies before the last run


async def test_a_late_receipt_moves_the_state_on_and_keeps_the_field() -> None:
    worker = Worker()
    worker.batch([_request(), _submitted()], now=at(2))
    await worker.timer(at(12))
    worker.batch([_status("m1", "received", 30)], now=at(30))
    record = worker.emitted["m1"]
    assert (record.state, record.overdue_since) == ("DELIVERED", at(11))
    assert await worker.timer(at(40)) == []


async def test_a_receipt_in_time_never_makes_it_overdue() -> None:
    worker = Worker()
    worker.batch([_request(), _submitted(), _status("m1", "received", 5)], now=at(5))
    assert await worker.timer(at(100)) == []
    assert worker.emitted["m1"].overdue_since is None


async def test_a_batch_after_the_deadline_emits_it_overdue_without_the_timer() -> None:
    worker = Worker()
    worker.batch([_request(), _submitted()], now=at(60))  # processed late (a replay, a lag)
    assert worker.emitted["m1"].overdue_since == at(11)


async def test_a_scheduled_message_is_due_after_its_scheduled_time() -> None:
    worker = Worker()
    worker.batch([_request(), _submitted(scheduled_for=at(3600))], now=at(2))
    assert await worker.timer(at(3605)) == []
    assert await worker.timer(at(3612)) == ["m1"]
    assert worker.emitted["m1"].overdue_since == at(3610)


@pytest.mark.parametrize("batch", [1, 13, 1000])
async def test_stream_with_timer_runs_equals_batch_with_the_same_now(batch: int) -> None:
    events = [e for e in make_events(300, seed=3, base=BASE) if isinstance(e, LIFECYCLE_TYPES)]
    stream = shuffled_with_duplicates(events, seed=4, dup_rate=0.4)
    worker = Worker()
    clock = BASE
    # the clock runs as the events come; a timer run now and then
    for i in range(0, len(stream), batch):
        chunk = stream[i : i + batch]
        clock = max([clock, *(e.received_at for e in chunk if hasattr(e, "received_at"))])
        worker.batch(chunk, now=clock)
        if i % (batch * 5) == 0:
            await worker.timer(clock)
    end = clock + timedelta(seconds=120)
    await worker.timer(end)
    expected = batch_lifecycles(events, now=end, receipt_timeout_seconds=TIMEOUT)
    assert worker.emitted == expected
    overdue = [r for r in expected.values() if r.overdue_since is not None]
    assert overdue and any(r.state == "DELIVERED" for r in overdue)  # late receipts kept it
    assert any(r.state == "SENT" for r in overdue)  # receipts that never came


def test_the_scan_decodes_only_submitted_messages_without_a_final_status() -> None:
    submitted = apply(apply(None, _request()), _submitted())
    delivered = apply(submitted, _status("m1", "received", 4))
    rejected = apply(
        apply(None, _request()), SendResult("m1", "alice", "+336", "REJECTED", at(1), ("#007",))
    )
    now = at(100)
    assert overdue_candidate(encode_value(submitted, 0), now, TIMEOUT, None)
    assert overdue_candidate(encode_value(submitted, 0), now, TIMEOUT, at(10))
    assert not overdue_candidate(encode_value(submitted, 0), now, TIMEOUT, at(11))
    assert not overdue_candidate(encode_value(submitted, 0), at(10), TIMEOUT, None)
    assert not overdue_candidate(encode_value(delivered, 0), now, TIMEOUT, None)
    assert not overdue_candidate(encode_value(rejected, 0), now, TIMEOUT, None)


def test_a_state_saved_before_final_seen_at_existed_is_not_made_overdue() -> None:
    delivered = apply(apply(apply(None, _request()), _submitted()), _status("m1", "received", 4))
    old = encode_value(delivered, 0)
    del old["s"]["final_seen_at"]  # as written before issue 17
    assert not overdue_candidate(old, at(100), TIMEOUT, None)
    state = decode_value(old)
    assert state is not None and state.final_seen_at == at(4)  # its receipt's own time
    still_waiting = encode_value(apply(apply(None, _request()), _submitted()), 0)
    del still_waiting["s"]["final_seen_at"]
    assert overdue_candidate(still_waiting, at(100), TIMEOUT, None)


def test_overdue_scan_interval_is_bounded() -> None:
    assert overdue_scan_interval(5) == 1.0
    assert overdue_scan_interval(300) == 30.0
    assert overdue_scan_interval(48 * 3600) == 60.0
