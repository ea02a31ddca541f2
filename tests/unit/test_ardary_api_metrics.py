"""Every Ardary API call reaches the injected observer with its endpoint and outcome
(`ardary_api_request_seconds{endpoint,outcome}`)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest

from pipeline.clients.ardary_api import ArdaryClient
from pipeline.errors import ArdaryError
from pipeline.records import ContactSyncRequest, SendRequest

LOGIN = "sender@example.com"
T0 = datetime(2025, 1, 15, 12, 0, tzinfo=UTC)


def _request(i: str = "id1") -> SendRequest:
    return SendRequest(i, LOGIN, "+33612345678", "Hello", T0)


def _sent(request: httpx.Request) -> httpx.Response:
    body = orjson.loads(request.content)
    return httpx.Response(
        200, json={"data": [{"id_sms_api": m["id_sms_api"]} for m in body["messages"]]}
    )


def _refused(code: str) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        body = orjson.loads(request.content)
        data = [{"id_sms_api": m["id_sms_api"], "error": code} for m in body["messages"]]
        return httpx.Response(200, json={"data": data})

    return handler


def _raise(exc: type[Exception]) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)  # type: ignore[call-arg]

    return handler


@pytest.mark.parametrize(
    ("handler", "outcome"),
    [
        (_sent, "ok"),
        (_refused("#007"), "rejected"),
        (lambda r: httpx.Response(429, headers={"Retry-After": "1"}), "throttled"),
        (lambda r: httpx.Response(503), "server_error"),
        (_raise(httpx.ReadTimeout), "timeout"),
        (_raise(httpx.ConnectTimeout), "timeout"),
        (_raise(httpx.ConnectError), "connect_error"),
        (_raise(httpx.ReadError), "connect_error"),
        (lambda r: httpx.Response(401), "auth_error"),
        (_refused("#001"), "auth_error"),
        (lambda r: httpx.Response(418), "protocol_error"),
        (lambda r: httpx.Response(200, content=b"<html>"), "protocol_error"),
    ],
)
async def test_each_send_is_observed_with_its_outcome(handler: Any, outcome: str) -> None:
    seen: list[tuple[str, str, float]] = []
    async with httpx.AsyncClient(
        base_url="https://ardary.test/api", transport=httpx.MockTransport(handler)
    ) as http:
        client = ArdaryClient(http, {LOGIN: "k"}.get, observe=lambda *a: seen.append(a))
        with contextlib.suppress(ArdaryError):
            await client.send_sms(LOGIN, [_request("a"), _request("b")])
    assert [(endpoint, got) for endpoint, got, _ in seen] == [("sendSms", outcome)]
    assert seen[0][2] >= 0.0


async def test_a_call_that_never_leaves_is_not_observed() -> None:
    seen: list[object] = []
    async with httpx.AsyncClient(
        base_url="https://ardary.test/api", transport=httpx.MockTransport(_sent)
    ) as http:
        client = ArdaryClient(http, {}.get, observe=lambda *a: seen.append(a))
        with pytest.raises(ArdaryError):
            await client.send_sms(LOGIN, [_request()])  # no access key: no HTTP call
    assert seen == []


@pytest.mark.parametrize(("result", "outcome"), [("success", "ok"), ("failed", "rejected")])
async def test_a_contact_sync_is_observed_under_its_endpoint(result: str, outcome: str) -> None:
    seen: list[tuple[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        entry = {"phonenumber": "+33612345678", "result": result}
        return httpx.Response(200, json={"data": {"contact": [entry]}})

    async with httpx.AsyncClient(
        base_url="https://ardary.test/api", transport=httpx.MockTransport(handler)
    ) as http:
        client = ArdaryClient(http, {LOGIN: "k"}.get, observe=lambda e, o, s: seen.append((e, o)))
        await client.sync_contacts(LOGIN, [ContactSyncRequest("+33612345678", LOGIN, T0)])
    assert seen == [("contact", outcome)]


async def test_the_mobile_route_is_its_own_endpoint() -> None:
    seen: list[str] = []
    async with httpx.AsyncClient(
        base_url="https://ardary.test/api", transport=httpx.MockTransport(_sent)
    ) as http:
        client = ArdaryClient(http, {LOGIN: "k"}.get, observe=lambda e, o, s: seen.append(e))
        mobile = SendRequest("m", LOGIN, "+33612345678", "Hello", T0, routing="MOBILE")
        await client.send_sms(LOGIN, [mobile], "MOBILE")
    assert seen == ["sendSmsSolo"]
