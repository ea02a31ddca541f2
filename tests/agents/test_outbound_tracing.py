"""The outbound agent's spans: one Ardary call serves several SMS traces."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pipeline.agents.outbound.dispatch import _call_span
from pipeline.agents.outbound.progress import Progress
from pipeline.core.sending import BatchKey
from tests.tracing_support import traced


def test_a_call_is_a_child_of_the_first_request_and_linked_both_ways_to_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with traced(monkeypatch) as t:
        on = t.tracing
        spans = [on.span(f"sms.send {n}") for n in range(3)]
        entries = [SimpleNamespace(span=s) for s in spans]
        call = _call_span(on, BatchKey("acme", "SERVER", None, 1), entries)  # type: ignore[arg-type]
        assert call is not None
        call.end()
        for s in spans:
            s.end()
        made = t.one("ardary.send")
        first, second, third = (t.one(f"sms.send {n}") for n in range(3))
    assert made.parent is not None and made.parent.span_id == first.context.span_id
    assert made.context.trace_id == first.context.trace_id
    assert [link.context.span_id for link in made.links] == [
        second.context.span_id,
        third.context.span_id,
    ]
    for other in (second, third):
        assert [link.context.span_id for link in other.links] == [made.context.span_id]
    assert dict(made.attributes or {})["ardary.batch_size"] == 3


def test_no_span_without_traced_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    with traced(monkeypatch) as t:
        entries = [SimpleNamespace(span=None)]
        assert _call_span(t.tracing, BatchKey("acme", "SERVER", None, 1), entries) is None  # type: ignore[arg-type]


def test_an_abandoned_request_ends_its_span(monkeypatch: pytest.MonkeyPatch) -> None:
    with traced(monkeypatch) as t:
        span = t.tracing.span("sms.send")
        entry = SimpleNamespace(span=span, request=SimpleNamespace(id_sms_api="m1"))
        Progress(10).abandon([entry])  # type: ignore[list-item]
        assert dict(t.one("sms.send").attributes or {})["ardary.abandoned"] is True
