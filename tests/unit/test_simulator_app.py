"""The simulator's routes in-process (ASGI transport, no sockets): answers and validation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from pipeline.devtools.simulator.app import build_app
from pipeline.devtools.simulator.config import SimulatorConfig
from pipeline.devtools.simulator.dispatcher import CallbackDispatcher
from pipeline.devtools.simulator.ledger import FiredCallback, Ledger
from pipeline.devtools.simulator.plan import AcceptedMessage

PHONE = "+33612345678"


@pytest.fixture
async def sim() -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(SimulatorConfig())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sim"
    ) as client:
        yield client


def body(*messages: dict[str, object], mode: str = "prod") -> dict[str, object]:
    return {
        "header": {"login": "a@b.c", "accessKey": "k", "mode": mode},
        "messages": list(messages),
    }


@pytest.mark.parametrize("path", ["/api/sendSms", "/sendSms", "/api/sendSmsSolo", "/sendSmsSolo"])
async def test_routes_with_and_without_api_prefix(sim: httpx.AsyncClient, path: str) -> None:
    r = await sim.post(path, json=body({"id_sms_api": "x", "phone_number": PHONE, "message": "m"}))
    assert r.status_code == 200
    assert r.json()["data"][0]["id_sms_api"] == "x"


async def test_count_sent_only_when_something_failed(sim: httpx.AsyncClient) -> None:
    ok = {"id_sms_api": "a", "phone_number": PHONE, "message": "m"}
    bad = {"id_sms_api": "b", "phone_number": PHONE, "message": ""}
    assert "count_sent" not in (await sim.post("/api/sendSms", json=body(ok))).json()
    answer = (await sim.post("/api/sendSms", json=body(ok, bad))).json()
    assert answer["count_sent"] == 1
    assert answer["data"][1] == {"id_sms_api": "b", "error": ["#006"]}


@pytest.mark.parametrize(
    "payload",
    [b"not json", b"[]", b'{"header": {"login": "a", "accessKey": "k"}, "messages": "x"}'],
)
async def test_unreadable_requests_are_400(sim: httpx.AsyncClient, payload: bytes) -> None:
    r = await sim.post("/api/sendSms", content=payload)
    assert r.status_code == 400 and "error" in r.json()


async def test_contact_codes(sim: httpx.AsyncClient) -> None:
    contacts = [{"firstname": "no phone"}, {"phonenumber": ""}, {"phonenumber": PHONE}]
    r = await sim.post(
        "/api/contact", json={"header": {"login": "a@b.c", "accessKey": "k"}, "contacts": contacts}
    )
    results = r.json()["data"]["contact"]
    assert [c.get("errors") for c in results] == [["#003"], ["#002"], None]
    assert [c["result"] for c in results] == ["failed", "failed", "success"]


async def test_runtime_config_endpoint(sim: httpx.AsyncClient) -> None:
    r = await sim.post("/_sim/config", json={"fail_rate": 1.0})
    assert r.json() == {"fail_rate": 1.0}
    assert (await sim.post("/api/sendSms", json=body())).status_code == 503
    assert (await sim.post("/_sim/config", json={"seed": 3})).status_code == 400
    assert (await sim.post("/_sim/config", content=b"[")).status_code == 400


async def test_the_ledger_keeps_what_scheduling_and_compliance_fields_came() -> None:
    from datetime import UTC, datetime

    from pipeline.ardary.api import build_send_payload
    from pipeline.records import SendRequest

    later = datetime(2026, 3, 2, 7, 0, tzinfo=UTC)
    requests = [
        SendRequest("mk", "a@b.c", PHONE, "Promo", later, marketing=True, date_to_send=later),
        SendRequest("tx", "a@b.c", PHONE, "Code 1234", later),
    ]
    payload = build_send_payload("a@b.c", "k", requests, mode="prod", routing="SERVER")
    app = build_app(SimulatorConfig())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sim"
    ) as client:
        assert (await client.post("/api/sendSms", json=payload)).status_code == 200
        ledger = {m["id_sms_api"]: m for m in (await client.get("/_sim/ledger")).json()["messages"]}
        legacy = body({"id_sms_api": "php", "phone_number": PHONE, "message": "m", "add_stop": 0})
        await client.post("/api/sendSms", json=legacy)
        php = (await client.get("/_sim/ledger/php")).json()
    marketing, transactional = ledger["mk"], ledger["tx"]
    assert marketing["date_to_send"] == "2026-03-02 08:00:00"  # Paris: Ardary's own clock
    assert (marketing["marketing"], marketing["add_stop"]) == (1, 1)
    assert marketing["add_stop_keys"] == ["addStop", "add_stop"]
    assert (transactional["marketing"], transactional["add_stop"]) == (None, None)
    assert transactional["date_to_send"] is None and transactional["add_stop_keys"] == []
    assert (php["add_stop"], php["add_stop_keys"]) == (0, ["add_stop"])


async def test_every_callback_attempt_and_its_answer_is_in_the_ledger() -> None:
    refused: list[str] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        if "sent" in request.url.params["status"] and not refused:
            refused.append("sent")  # the first `sent` status is refused once
            return httpx.Response(503)
        return httpx.Response(200)

    ledger = Ledger()
    config = SimulatorConfig(
        callback_url="http://ingress/cb",
        callback_attempts=2,
        callback_backoff_ms=1,
        delivery_delay_ms=1,
        click_probability=0,
        reply_probability=0,
        stop_probability=0,
        missed_call_probability=0,
    )

    async def get(url: str) -> int:
        return receiver(httpx.Request("GET", url)).status_code

    dispatcher = CallbackDispatcher(lambda: config, lambda _: None, get, ledger.fired)
    dispatcher.schedule(AcceptedMessage("m1", "a@b.c", PHONE, "hi", None, datetime.now(UTC)))
    while dispatcher.pending:
        await asyncio.sleep(0.01)
    attempts: list[FiredCallback] = ledger.callbacks
    assert sorted((a.kind, a.attempt, a.outcome, a.status) for a in attempts) == [
        ("status:received", 1, "ok", 200),
        ("status:sent", 1, "http 503", 503),
        ("status:sent", 2, "ok", 200),
    ]
    assert all(a.id_sms_api == "m1" and '"id_sms_api":"m1"' in a.raw for a in attempts)


async def test_the_callbacks_route_lists_the_attempts(sim: httpx.AsyncClient) -> None:
    r = await sim.get("/_sim/callbacks")
    assert r.status_code == 200
    assert r.json() == {"count": 0, "callbacks": []}
