"""The correlate agent's spans: parented to the SMS's trace, linked to the callbacks' ingress
spans, the SMS's context kept in the table value for callbacks that come later."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.agents.correlate import decode_value, encode_value
from pipeline.agents.correlate_traces import SmsTraces, overdue_headers, stored_trace
from pipeline.core.lifecycle import LifecycleState, apply
from pipeline.records import SendRequest, SendResult, StatusCallback
from tests.tracing_support import trace_id_of, traced

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SMS_TRACE = "11111111111111111111111111111111"
INGRESS_TRACE = "22222222222222222222222222222222"
SEND_SPAN = "00-" + SMS_TRACE + "-aaaaaaaaaaaaaaaa-01"
INGRESS_SPAN = "00-" + INGRESS_TRACE + "-bbbbbbbbbbbbbbbb-01"


def _event(value: Any, traceparent: str | None) -> Any:
    headers = [("traceparent", traceparent.encode())] if traceparent else None
    return SimpleNamespace(value=value, message=SimpleNamespace(headers=headers, partition=0))


def _result(mid: str) -> SendResult:
    return SendResult(mid, "alice", "+33612345678", "SUBMITTED", AT, (), 1, None, 1)


def _status(mid: str) -> StatusCallback:
    return StatusCallback(
        event_id=f"{mid}-s",
        phone_number="+33612345678",
        status="received",
        received_at=AT,
        raw="{}",
        id_sms_api=mid,
        login="alice",
        date_status=AT,
    )


def test_a_callback_is_parented_to_the_send_and_linked_to_its_ingress_span(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with traced(monkeypatch) as t:
        events = [_event(_result("m1"), SEND_SPAN), _event(_status("m1"), INGRESS_SPAN)]
        traces = SmsTraces(t.tracing, events, {})
        kept, headers = traces.start("m1")
        traces.end()
        span = t.one("sms.correlate")
    assert kept == SEND_SPAN
    assert trace_id_of(headers) == SMS_TRACE
    assert f"{span.context.trace_id:032x}" == SMS_TRACE
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "a" * 16
    assert [f"{link.context.trace_id:032x}" for link in span.links] == [INGRESS_TRACE]


def test_a_later_callback_finds_the_sms_context_the_table_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with traced(monkeypatch) as t:
        traces = SmsTraces(t.tracing, [_event(_status("m1"), INGRESS_SPAN)], {"m1": SEND_SPAN})
        kept, headers = traces.start("m1")
        traces.end()
        span = t.one("sms.correlate")
    assert kept == SEND_SPAN and trace_id_of(headers) == SMS_TRACE
    assert f"{span.context.trace_id:032x}" == SMS_TRACE
    assert len(span.links) == 1


def test_the_result_wins_over_the_request_and_an_orphan_starts_a_trace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    request_span = "00-" + "3" * 32 + "-cccccccccccccccc-01"
    request = SendRequest("m2", "alice", "+33612345678", "hi", AT)
    with traced(monkeypatch) as t:
        events = [
            _event(_result("m2"), SEND_SPAN),
            _event(request, request_span),  # replayed after its result: the result's stands
            _event(_status("orphan"), INGRESS_SPAN),
        ]
        traces = SmsTraces(t.tracing, events, {})
        assert traces.start("m2")[0] == SEND_SPAN
        kept, headers = traces.start("orphan")
        traces.end()
    assert kept is None  # nothing to keep until its send comes
    assert trace_id_of(headers) not in (SMS_TRACE, INGRESS_TRACE)


def test_the_table_value_keeps_the_trace_only_while_tracing() -> None:
    state = apply(None, _result("m1"))
    assert isinstance(state, LifecycleState)
    assert "t" not in encode_value(state, 3)
    value = encode_value(state, 3, SEND_SPAN)
    assert value["t"] == SEND_SPAN and stored_trace(value) == SEND_SPAN
    assert decode_value(value) == decode_value(encode_value(state, 3))
    assert stored_trace(None) is None and stored_trace(encode_value(state, 3)) is None


def test_an_overdue_record_goes_in_the_sms_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    state = apply(None, _result("m1"))
    with traced(monkeypatch) as t:
        headers = overdue_headers(t.tracing, encode_value(state, 0, SEND_SPAN), "m1")
        assert trace_id_of(headers) == SMS_TRACE
        assert t.one("sms.overdue").parent is not None
