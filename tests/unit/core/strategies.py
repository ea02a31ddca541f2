"""Hypothesis strategies: random but plausible event histories of a few messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from pipeline.records import (
    CallEvent,
    ClickCallback,
    IncomingSms,
    OptOut,
    SendRequest,
    SendResult,
    StatusCallback,
)

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
IDS = ["m1", "m2", "m3", "m4"]
LOGINS = ["alice", "bob"]
PHONES = ["+33600000001", "+33600000002"]

offsets = st.integers(min_value=0, max_value=3 * 3600 * 1000).map(
    lambda ms: T0 + timedelta(milliseconds=ms)
)
opt_times = st.none() | offsets


@st.composite
def send_requests(draw: st.DrawFn, mid: str) -> SendRequest:
    return SendRequest(
        id_sms_api=mid,
        login=draw(st.sampled_from(LOGINS)),
        phone_number=draw(st.sampled_from(PHONES)),
        message="hello",
        requested_at=draw(offsets),
        metadata=draw(st.dictionaries(st.sampled_from(["a", "b"]), st.sampled_from(["1", "2"]))),
    )


@st.composite
def send_results(draw: st.DrawFn, mid: str) -> SendResult:
    return SendResult(
        id_sms_api=mid,
        login=draw(st.sampled_from(LOGINS)),
        phone_number=draw(st.sampled_from(PHONES)),
        outcome=draw(st.sampled_from(["SUBMITTED", "REJECTED", "SUPPRESSED", "FAILED"])),
        completed_at=draw(offsets),
        error_codes=draw(st.sampled_from([(), ("#003",), ("#005", "#007")])),
        sms_per_message=draw(st.none() | st.integers(1, 3)),
        sent_time=draw(opt_times),
    )


@st.composite
def statuses(draw: st.DrawFn, mid: str) -> StatusCallback:
    return StatusCallback(
        event_id=draw(st.sampled_from(["s1", "s2", "s3"])) + mid,
        id_sms_api=mid,
        login=draw(st.none() | st.sampled_from(LOGINS)),
        phone_number=draw(st.sampled_from(PHONES)),
        status=draw(st.sampled_from(["sent", "received", "RECEIVED ", "failed", "queued"])),
        date_status=draw(opt_times),
        received_at=draw(offsets),
        raw="{}",
    )


@st.composite
def clicks(draw: st.DrawFn, mid: str) -> ClickCallback:
    return ClickCallback(
        event_id=draw(st.sampled_from(["c1", "c2", "c3", "c4"])) + mid,
        id_sms_api=mid,
        phone_number=draw(st.sampled_from(PHONES)),
        date=draw(opt_times),
        received_at=draw(offsets),
        raw="{}",
    )


def message_events(mid: str) -> st.SearchStrategy[object]:
    return st.one_of(send_requests(mid), send_results(mid), statuses(mid), clicks(mid))


@st.composite
def other_events(draw: st.DrawFn) -> object:
    eid = draw(st.sampled_from(["e1", "e2", "e3"]))
    device = draw(st.none() | st.sampled_from(LOGINS))
    kind = draw(st.sampled_from(["incoming", "optout", "call"]))
    if kind == "incoming":
        return IncomingSms(
            event_id="in" + eid,
            from_number=PHONES[0],
            body="STOP",
            received_at=draw(offsets),
            raw="{}",
            device_identification=device,
            date=draw(opt_times),
        )
    if kind == "optout":
        return OptOut(
            phone_number=PHONES[0],
            opted_out=draw(st.booleans()),
            source="incoming_sms",
            event_id="oo" + eid,
            at=draw(offsets),
            login=device,
        )
    return CallEvent(
        event_id="ca" + eid,
        direction=draw(st.sampled_from(["INCOMING", "OUTGOING", "MISSED"])),
        phone_number=PHONES[1],
        received_at=draw(offsets),
        raw="{}",
        device_identification=device,
        call_time=draw(opt_times),
    )


lifecycle_events = st.lists(st.sampled_from(IDS).flatmap(message_events), min_size=1, max_size=25)
all_events = st.lists(
    st.one_of(st.sampled_from(IDS).flatmap(message_events), other_events()),
    min_size=1,
    max_size=30,
)


@st.composite
def reshuffled(draw: st.DrawFn, events: list[object]) -> list[object]:
    """The same events in another order, with some delivered more than once."""
    dupes = draw(st.lists(st.sampled_from(events), max_size=len(events)))
    return draw(st.permutations(events + dupes))
