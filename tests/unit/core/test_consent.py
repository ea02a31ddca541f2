"""The consent rule: which records state an opt-out, and the one OptOut each states."""

from __future__ import annotations

from datetime import UTC, datetime

from pipeline.core.consent import optout_for, optout_for_reply, optout_for_result
from pipeline.records import IncomingSms, OptOut, SendResult

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_a_stop_listed_result_states_an_optout_with_the_code_as_keyword() -> None:
    result = SendResult("m1", "alice", "+33612345678", "SUPPRESSED", AT, ("#003",))
    assert optout_for_result(result) == OptOut(
        phone_number="+33612345678",
        opted_out=True,
        source="SEND_RESULT",
        event_id="send-result:m1",
        at=AT,
        login="alice",
        keyword="#003",
    )
    assert optout_for(result) == optout_for_result(result)


def test_other_results_state_nothing() -> None:
    assert optout_for_result(SendResult("m1", "alice", "+336", "REJECTED", AT, ("#007",))) is None
    assert optout_for_result(SendResult("m1", "alice", "+336", "SUBMITTED", AT)) is None


def test_a_reply_states_its_verdict() -> None:
    sms = IncomingSms("e1", "+33612345678", "STOP", AT, "{}", device_identification="bob")
    out = optout_for_reply(sms)
    assert out is not None
    assert (out.opted_out, out.source, out.event_id, out.keyword, out.login) == (
        True,
        "INCOMING_SMS",
        "e1",
        "STOP",
        "bob",
    )
    assert optout_for(sms) == out
    assert optout_for(object()) is None
