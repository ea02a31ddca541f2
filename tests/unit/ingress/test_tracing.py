"""The ingress while tracing is on: a server span per callback request, its context on the
records (and on a dead letter), never the token in a span."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from opentelemetry.trace import SpanKind

from tests.tracing_support import trace_id_of, traced

from .conftest import TOKEN, FakePublisher
from .samples import status_json

CB = f"/callbacks/{TOKEN}"
PARENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = f"00-{PARENT_TRACE}-b7ad6b7169203331-01"


async def test_off_the_records_carry_no_headers(
    client: httpx.AsyncClient, publisher: FakePublisher
) -> None:
    response = await client.get(f"{CB}?status={quote(status_json('id-1'), safe='')}")
    assert response.status_code == 200
    assert publisher.headers == [None]


async def test_a_callback_is_a_server_span_whose_context_its_records_carry(
    client: httpx.AsyncClient, publisher: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    with traced(monkeypatch) as t:
        response = await client.get(f"{CB}?status={quote(status_json('id-2'), safe='')}")
        assert response.status_code == 200
        server = t.one("GET /callbacks")
        (headers,) = publisher.headers
        assert trace_id_of(headers) == f"{server.context.trace_id:032x}"
        assert server.kind is SpanKind.SERVER
        assert server.parent is None  # Ardary sends no context: a new trace
        attributes = dict(server.attributes or {})
        assert attributes["http.response.status_code"] == 200
        assert attributes["ardary.callback.kind"] == "status"
        assert attributes["http.route"] == "/callbacks"
        assert not any(TOKEN in str(v) for v in attributes.values())


async def test_a_callers_traceparent_is_the_parent_and_a_dead_letter_carries_it_too(
    client: httpx.AsyncClient, publisher: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    with traced(monkeypatch) as t:
        response = await client.get(f"{CB}?status=not-json", headers={"traceparent": PARENT})
        assert response.status_code == 400
        server = t.one("GET /callbacks")
        assert f"{server.context.trace_id:032x}" == PARENT_TRACE
        assert server.parent is not None and f"{server.parent.span_id:016x}" == PARENT[36:52]
        (headers,) = publisher.headers
        assert trace_id_of(headers) == PARENT_TRACE


async def test_a_503_marks_the_span_as_an_error(
    client: httpx.AsyncClient, publisher: FakePublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    publisher.fail = True
    with traced(monkeypatch) as t:
        response = await client.get(f"{CB}?status={quote(status_json('id-3'), safe='')}")
        assert response.status_code == 503
        assert not t.one("GET /callbacks").status.is_ok
