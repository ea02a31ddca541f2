"""The outbound agent's pure parts: checks, priority batching, send-state values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.ardary.segments import count_segments
from pipeline.core.sending import (
    UNKNOWN_AFTER_CRASH,
    BatchKey,
    Done,
    InFlight,
    Prepared,
    PriorityBatcher,
    Refusal,
    backoff_delay,
    check_request,
    decode_state,
    encode_state,
    expired_partition,
    make_result,
    redelivery_result,
)
from pipeline.records import SendRequest

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def req(**fields: object) -> SendRequest:
    values: dict[str, object] = {
        "id_sms_api": "id-1",
        "login": "acme",
        "phone_number": "+33612345678",
        "message": "Hello",
        "requested_at": NOW,
    }
    values.update(fields)
    return SendRequest(**values)  # type: ignore[arg-type]


def never(_: str) -> bool:
    return False


def test_a_valid_request_is_prepared_with_its_segments() -> None:
    text = "é" * 10 + "€"  # GSM-7 with an extension character
    checked = check_request(req(message=text), opted_out=never, now=NOW)
    assert isinstance(checked, Prepared)
    assert checked.segments == count_segments(text)


@pytest.mark.parametrize(
    ("fields", "codes"),
    [
        ({"phone_number": "+33 abc"}, ("#007",)),
        ({"phone_number": "+331"}, ("#007",)),
        ({"message": "  \n"}, ("#006",)),
        ({"message": "Go [Link]", "url": None}, ("LINK_WITHOUT_URL",)),
        ({"message": "Go [Lien_Tracking]", "url": ""}, ("LINK_WITHOUT_URL",)),
        ({"phone_number": "nope", "message": ""}, ("#007", "#006")),
    ],
)
def test_unusable_requests_are_rejected_with_their_codes(
    fields: dict[str, object], codes: tuple[str, ...]
) -> None:
    checked = check_request(req(**fields), opted_out=never, now=NOW)
    assert isinstance(checked, Refusal)
    assert (checked.outcome, checked.error_codes) == ("REJECTED", codes)


def test_a_link_with_its_url_is_fine() -> None:
    checked = check_request(
        req(message="Go [Link]", url="https://example.com"), opted_out=never, now=NOW
    )
    assert isinstance(checked, Prepared)


def test_an_opted_out_number_is_suppressed_by_its_e164_form() -> None:
    seen: list[str] = []

    def opted_out(phone: str) -> bool:
        seen.append(phone)
        return phone == "+33612345678"

    checked = check_request(req(phone_number="0033 6 12 34 56 78"), opted_out=opted_out, now=NOW)
    assert isinstance(checked, Refusal)
    assert (checked.outcome, checked.error_codes) == ("SUPPRESSED", ("#003",))
    assert seen == ["+33612345678"]


def test_phone_is_normalised_and_a_past_date_to_send_dropped() -> None:
    checked = check_request(
        req(phone_number="+33 6 12 34 56 78", date_to_send=NOW - timedelta(minutes=1)),
        opted_out=never,
        now=NOW,
    )
    assert isinstance(checked, Prepared)
    assert checked.request.phone_number == "+33612345678"
    assert checked.request.date_to_send is None


def test_a_future_date_to_send_is_kept_for_ardary() -> None:
    later = NOW + timedelta(days=1)
    checked = check_request(req(date_to_send=later), opted_out=never, now=NOW)
    assert isinstance(checked, Prepared)
    assert checked.request.date_to_send == later


# --- batching -------------------------------------------------------------------------------

KEY0 = BatchKey("acme", "SERVER", None, 0)
KEY1 = BatchKey("acme", "SERVER", None, 1)
KEY2 = BatchKey("acme", "SERVER", None, 2)


def test_a_group_waits_for_its_linger_unless_full() -> None:
    b: PriorityBatcher[int] = PriorityBatcher(max_batch=3, linger=0.5)
    b.add(KEY1, 1, now=0.0)
    assert b.pop(now=0.1) is None
    assert b.next_deadline() == pytest.approx(0.5)
    assert b.pop(now=0.5) == (KEY1, [1])
    for i in range(3):
        b.add(KEY1, i, now=1.0)
    assert b.pop(now=1.0) == (KEY1, [0, 1, 2])  # full: no linger


def test_backlog_is_served_by_priority_then_age() -> None:
    b: PriorityBatcher[str] = PriorityBatcher(max_batch=2, linger=0.0)
    b.add(KEY0, "low-a", now=0.0)
    b.add(KEY0, "low-b", now=0.0)
    b.add(KEY1, "mid", now=1.0)
    b.add(KEY2, "high", now=2.0)
    order = []
    while (popped := b.pop(now=3.0)) is not None:
        order.append(popped)
    assert order == [(KEY2, ["high"]), (KEY1, ["mid"]), (KEY0, ["low-a", "low-b"])]
    assert len(b) == 0


def test_pop_respects_the_limit_and_remove_if_drops_items() -> None:
    b: PriorityBatcher[int] = PriorityBatcher(max_batch=10, linger=0.0)
    for i in range(6):
        b.add(KEY1, i, now=0.0)
    assert b.pop(now=0.0, limit=4) == (KEY1, [0, 1, 2, 3])
    assert b.remove_if(lambda i: i == 5) == [5]
    assert len(b) == 1
    assert b.pop(now=0.0) == (KEY1, [4])


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 100)), max_size=60))
def test_every_item_comes_out_once_and_groups_never_mix(items: list[tuple[int, int]]) -> None:
    b: PriorityBatcher[tuple[int, int]] = PriorityBatcher(max_batch=4, linger=0.0)
    keys = [KEY0, KEY1, KEY2]
    for n, (prio, value) in enumerate(items):
        b.add(keys[prio], (n, value), now=float(n))
    out: list[tuple[int, int]] = []
    last_priority = 3
    while (popped := b.pop(now=1e9)) is not None:
        key, batch = popped
        assert 1 <= len(batch) <= 4
        assert all(items[n][0] == key.priority for n, _ in batch)
        assert key.priority <= last_priority  # everything is ready: never a lower one first
        last_priority = key.priority
        out.extend(batch)
    assert sorted(out) == sorted(enumerate(v for _, v in items))


# --- states ---------------------------------------------------------------------------------


def result(**fields: object):  # type: ignore[no-untyped-def]
    base = make_result(
        req(),
        "SUBMITTED",
        completed_at=NOW,
        sms_per_message=2,
        sent_time=NOW,
        attempts=3,
    )
    return base if not fields else make_result(req(), completed_at=NOW, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "state",
    [
        InFlight(NOW, 2),
        Done(result()),
        Done(result(), published=True),
        Done(make_result(req(), "FAILED", completed_at=NOW, error_codes=("#001", "X"))),
        Done(make_result(req(), "SUBMITTED", completed_at=NOW, scheduled_for=NOW + DAY)),
    ],
)
def test_states_survive_the_table_round_trip(state: object) -> None:
    assert decode_state(encode_state(state)) == state  # type: ignore[arg-type]


def test_a_result_without_scheduled_for_is_stored_as_before_issue_17() -> None:
    raw = encode_state(Done(result(), published=True), 3)
    assert b"scheduled_for" not in raw  # the same bytes as states already in the table
    assert b"scheduled_for" in encode_state(Done(result(scheduled_for=NOW, outcome="SUBMITTED")))


def test_only_published_states_older_than_the_cutoff_expire_with_their_partition() -> None:
    published = encode_state(Done(result(), published=True), partition=4)
    assert decode_state(published) == Done(result(), published=True)
    after = NOW + timedelta(seconds=1)
    assert expired_partition(published, after) == 4
    assert expired_partition(published, NOW) is None  # completed exactly at the cutoff: kept
    assert expired_partition(encode_state(Done(result()), partition=4), after) is None
    assert expired_partition(encode_state(InFlight(NOW - timedelta(days=90)), 4), after) is None
    legacy = encode_state(Done(result(), published=True))  # written before "p" was stored
    assert expired_partition(legacy, after) is None
    assert expired_partition(b"\xff", after) is None
    assert expired_partition(None, after) is None


@pytest.mark.parametrize("raw", [b"", b"{}", b'{"s":"WHAT"}', b'{"s":"IN_FLIGHT"}', b"\xff"])
def test_garbage_is_not_a_state(raw: bytes) -> None:
    with pytest.raises(ValueError):
        decode_state(raw)


def test_redelivery_after_publish_produces_nothing() -> None:
    assert redelivery_result(Done(result(), published=True), req(), NOW) is None


def test_redelivery_after_done_produces_the_same_result() -> None:
    stored = result()
    assert redelivery_result(Done(stored), req(), NOW + timedelta(hours=1)) == stored


def test_redelivery_in_flight_is_unknown_never_resent() -> None:
    later = NOW + timedelta(minutes=5)
    got = redelivery_result(InFlight(NOW, attempts=2), req(), later)
    assert got is not None
    assert (got.outcome, got.error_codes, got.attempts) == ("FAILED", (UNKNOWN_AFTER_CRASH,), 2)
    assert got.completed_at == later


@given(st.integers(1, 20), st.floats(0, 0.999999))
def test_backoff_is_jittered_below_an_exponential_cap(attempt: int, draw: float) -> None:
    delay = backoff_delay(attempt, base=0.5, cap=30.0, draw=draw)
    assert 0 <= delay <= min(30.0, 0.5 * 2 ** (attempt - 1))
