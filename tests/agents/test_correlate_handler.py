"""The correlate agent's batch fold, without a broker: emissions, replays, orphans, TTL."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from pipeline.agents.correlate import (
    CRASH_ENV,
    decode_value,
    encode_value,
    fold_events,
)
from pipeline.core.lifecycle import LifecycleState, batch_lifecycles
from pipeline.kafka.tables import ttl_scan_interval
from pipeline.records import ClickCallback, SendRequest, SendResult, StatusCallback
from tests.agents.streamdata import make_events, shuffled_with_duplicates

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIFECYCLE_TYPES = (SendRequest, SendResult, StatusCallback, ClickCallback)


class FakeTable:
    """Stands for the faust table: states by id, encoded as the agent stores them."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, object]] = {}
        self.loads = 0

    def load(self, tag: object, mid: str) -> LifecycleState | None:
        self.loads += 1
        return decode_value(self.data.get(mid))

    def run(self, events: list[object], batch: int) -> dict[str, object]:
        """Feed events in batches like the agent; return the last record emitted per id."""
        emitted: dict[str, object] = {}
        for i in range(0, len(events), batch):
            chunk = [(n, e) for n, e in enumerate(events[i : i + batch])]
            touched, _skipped, _latest = fold_events(chunk, self.load)
            for mid, touch in touched.items():
                self.data[mid] = encode_value(touch.after, 0)
                emitted[mid] = touch.record()
        return emitted


def _request(mid: str = "m1") -> SendRequest:
    return SendRequest(mid, "alice", "+33612345678", "hi", BASE, metadata={"k": "v"})


def _status(mid: str, status: str, seconds: int, event_id: str | None = None) -> StatusCallback:
    at = BASE + timedelta(seconds=seconds)
    return StatusCallback(
        event_id=event_id or f"{mid}-{status}",
        phone_number="+33612345678",
        status=status,
        received_at=at,
        raw="{}",
        id_sms_api=mid,
        login="alice",
        date_status=at,
    )


@pytest.mark.parametrize("batch", [1, 7, 1000])
def test_any_order_any_batching_equals_batch(batch: int) -> None:
    events = [e for e in make_events(60, seed=1, base=BASE) if isinstance(e, LIFECYCLE_TYPES)]
    stream = shuffled_with_duplicates(events, seed=2, dup_rate=0.5)
    table = FakeTable()
    emitted = table.run(stream, batch)
    expected = batch_lifecycles(events)
    assert emitted == expected
    assert {mid: decode_value(v) for mid, v in table.data.items()}.keys() == expected.keys()


def test_a_replayed_event_re_emits_the_state_the_store_already_holds() -> None:
    # A worker SIGKILLed after writing its store but before the broker acknowledged the batch's
    # lifecycle: the restart replays the event against a store that already holds its effect.
    table = FakeTable()
    first = table.run([_request(), _status("m1", "received", 5)], batch=10)
    assert first["m1"].state == "DELIVERED"  # type: ignore[attr-defined]
    stored = dict(table.data)
    again = table.run([_status("m1", "received", 5)], batch=10)  # the output of `first` lost
    assert again == first
    assert table.data == stored


def test_orphan_is_emitted_then_merged_when_the_send_arrives() -> None:
    table = FakeTable()
    orphan = table.run([_status("m1", "sent", 3)], batch=10)["m1"]
    assert orphan.state == "SENT" and orphan.requested_at is None  # type: ignore[attr-defined]
    merged = table.run([_request()], batch=10)["m1"]
    assert merged.requested_at == BASE and merged.metadata == {"k": "v"}  # type: ignore[attr-defined]
    assert merged.sent_at == BASE + timedelta(seconds=3)  # type: ignore[attr-defined]


def test_callbacks_without_id_are_skipped_and_counted() -> None:
    no_id = StatusCallback("e1", "+33612345678", "received", BASE, "{}", flags=("MISSING",))
    touched, skipped, latest = fold_events([(0, no_id), (1, "not a record")], lambda t, m: None)
    assert touched == {} and skipped == 2 and latest is None


def test_state_is_loaded_once_per_message_per_batch() -> None:
    table = FakeTable()
    table.run([_request(), _status("m1", "sent", 1), _status("m1", "received", 2)], batch=10)
    assert table.loads == 1


def test_crash_hook_raises_only_for_its_id() -> None:
    fold_events([(0, _request("m1"))], lambda t, m: None, crash_on="other")
    with pytest.raises(RuntimeError, match=CRASH_ENV):
        fold_events([(0, _request("boom"))], lambda t, m: None, crash_on="boom")


def test_latest_event_time_is_the_batch_maximum() -> None:
    events = [
        _status("m1", "sent", s, event_id=f"e{s}") for s in random.Random(4).sample(range(50), 10)
    ]
    _touched, _skipped, latest = fold_events(list(enumerate(events)), lambda t, m: None)
    assert latest == max(e.received_at for e in events)


def test_ttl_scan_interval_is_bounded() -> None:
    assert ttl_scan_interval(60) == 7.5
    assert ttl_scan_interval(7 * 24 * 3600) == 600.0
    assert ttl_scan_interval(1) == 5.0
