"""The Ardary simulator over real HTTP on loopback, driven by the real ArdaryClient."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline.ardary.codes import CodeCategory
from pipeline.clients.ardary_api import ArdaryClient, ArdaryOutcomeUnknown
from pipeline.devtools.simulator.config import Account, SimulatorConfig
from pipeline.devtools.simulator.runner import RunningSimulator, run_simulator, serve_app
from pipeline.errors import ArdaryAuthError, ArdaryTransientError
from pipeline.procutil import free_port
from pipeline.records import ContactSyncRequest, SendRequest
from tests.polling import wait_until, wait_until_async

pytestmark = pytest.mark.integration

LOGIN = "shop@example.com"
KEY = "sim-secret-key"
ACCOUNTS = {LOGIN: Account(KEY), "off@example.com": Account("k2", active=False)}
NOW = datetime(2025, 1, 1, tzinfo=UTC)
OK_PHONE = "+33612345678"
OTHER_PHONE = "+33698765432"
ALWAYS = {
    "click_probability": 1.0,
    "reply_probability": 1.0,
    "stop_probability": 1.0,
    "missed_call_probability": 1.0,
}


def req(i: str, phone: str = OK_PHONE, message: str = "Hello", **kw: Any) -> SendRequest:
    return SendRequest(i, kw.pop("login", LOGIN), phone, message, NOW, **kw)


@asynccontextmanager
async def client_for(
    sim: RunningSimulator, *, mode: str = "prod", timeout: float = 5.0
) -> AsyncIterator[ArdaryClient]:
    keys = {LOGIN: KEY, "off@example.com": "k2", "wrong@example.com": "nope"}
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        yield ArdaryClient(http, keys.get, mode=mode, timeout=timeout)  # type: ignore[arg-type]


class Receiver:
    """A tiny callback endpoint recording each GET's decoded query parameters."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.url = ""

    async def handle(self, request: Request) -> JSONResponse:
        for name, value in request.query_params.items():
            self.calls.append((name, json.loads(value)))
        return JSONResponse({"accepted": True})

    def of(self, param: str) -> list[dict[str, Any]]:
        return [payload for name, payload in self.calls if name == param]


@asynccontextmanager
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = Starlette(routes=[Route("/callbacks/{token}", rec.handle, methods=["GET"])])
    async with serve_app(app) as server:
        rec.url = f"{server.url}/callbacks/tok3n"
        yield rec


async def test_every_error_code_path() -> None:
    cfg = SimulatorConfig(accounts=ACCOUNTS, stop_list=frozenset({OTHER_PHONE}))
    async with run_simulator(cfg) as sim, client_for(sim) as client:
        out = await client.send_sms(
            LOGIN,
            [
                req("ok"),
                req("stop", OTHER_PHONE),
                req("words", message="a forbiddenword here"),
                req("empty", message=" "),
                req("badnum", "+1"),
            ],
        )
        got = {o.id_sms_api: (o.outcome, o.error_codes) for o in out}
        assert got == {
            "ok": ("SUBMITTED", ()),
            "stop": ("SUPPRESSED", ("#003",)),
            "words": ("REJECTED", ("#004",)),
            "empty": ("REJECTED", ("#006",)),
            "badnum": ("REJECTED", ("#007",)),
        }
        assert out[0].sms_per_message == 1 and out[0].sent_time is not None
        with pytest.raises(ArdaryAuthError, match="#001"):
            await client.send_sms("wrong@example.com", [req("w", login="wrong@example.com")])
        with pytest.raises(ArdaryAuthError, match="#002"):
            await client.send_sms("off@example.com", [req("o", login="off@example.com")])
        async with httpx.AsyncClient(base_url=sim.url) as control:
            r = await control.post("/_sim/config", json={"unknown_error_rate": 1.0})
            assert r.status_code == 200
        (unknown,) = await client.send_sms(LOGIN, [req("u")])
        assert unknown.error_codes == ("#009",) and unknown.category is CodeCategory.TRANSIENT
        assert set(sim.state.ledger.entries) == {"ok"}


async def test_ledger_counts_duplicates_and_generates_ids() -> None:
    async with run_simulator(SimulatorConfig(dialect="v1")) as sim, client_for(sim) as client:
        await client.send_sms(LOGIN, [req("dup"), req("solo")])
        await client.send_sms(LOGIN, [req("dup")])
        await client.send_sms(LOGIN, [req("m", routing="MOBILE")], "MOBILE")
        async with httpx.AsyncClient(base_url=sim.url) as control:
            entry = (await control.get("/_sim/ledger/dup")).json()
            assert entry["submissions"] == 2 and entry["login"] == LOGIN
            assert (await control.get("/_sim/ledger/m")).json()["routing"] == "MOBILE"
            assert (await control.get("/_sim/ledger/none")).status_code == 404
            stats = (await control.get("/_sim/stats")).json()
            assert stats["accepted"] == 4 and stats["unique_ids"] == 3
            assert stats["duplicate_ids"] == 1 and stats["duplicate_submissions"] == 1
            assert sum(stats["accepted_per_second"].values()) == 4
            # an older-dialect request without ids: list header, accesskey, phonenumber, priorite
            old = {
                "header": [{"accesskey": "k", "login": "x@y.z", "mode": "test"}],
                "messages": [{"phonenumber": OK_PHONE, "message": "Hi", "priorite": 2}],
            }
            answer = (await control.post("/sendSms", json=old)).json()
            (item,) = answer["data"]
            assert item["id_sms_api"] and item["phonenumber"] == OK_PHONE
            listing = (await control.get("/_sim/ledger")).json()
            generated = [m for m in listing["messages"] if m["id_sms_api"] == item["id_sms_api"]]
            assert generated[0]["priority"] == 2 and generated[0]["mode"] == "test"
            await control.post("/_sim/reset")
            assert (await control.get("/_sim/ledger")).json()["count"] == 0


async def test_rate_limit_answers_429_with_retry_after() -> None:
    async with run_simulator(SimulatorConfig(rate_limit=50)) as sim, client_for(sim) as client:
        await client.send_sms(LOGIN, [req(f"a{i}") for i in range(40)])
        with pytest.raises(ArdaryTransientError) as info:
            await client.send_sms(LOGIN, [req(f"b{i}") for i in range(40)])
        assert info.value.retry_after is not None and info.value.retry_after >= 1
        result = await client.send_with_retries(
            LOGIN, [req(f"b{i}") for i in range(40)], base_delay=0.05
        )
        assert result.attempts >= 2
        assert all(o.outcome == "SUBMITTED" for o in result.outcomes)
        assert len(sim.state.ledger.entries) == 80


async def test_injected_503_and_429() -> None:
    async with run_simulator(SimulatorConfig(fail_rate=1.0)) as sim, client_for(sim) as client:
        with pytest.raises(ArdaryTransientError, match="503"):
            await client.send_sms(LOGIN, [req("a")])
        sim.state.reconfigure({"fail_rate": 0.0, "throttle_rate": 1.0, "retry_after_seconds": 4})
        with pytest.raises(ArdaryTransientError) as info:
            await client.send_sms(LOGIN, [req("a")])
        assert info.value.retry_after == 4.0
        assert sim.state.ledger.entries == {}


async def test_timeout_then_blind_retry_shows_as_duplicate() -> None:
    cfg = SimulatorConfig(timeout_rate=1.0, hold_seconds=1.0)
    async with run_simulator(cfg) as sim, client_for(sim, timeout=0.2) as client:
        with pytest.raises(ArdaryOutcomeUnknown):
            await client.send_sms(LOGIN, [req("slow")])
        # processed after the hold
        await wait_until_async(lambda: "slow" in sim.state.ledger.entries)
        sim.state.reconfigure({"timeout_rate": 0.0})
        await client.send_sms(LOGIN, [req("slow")])
        assert sim.state.ledger.entries["slow"].submissions == 2


async def test_test_mode_answers_but_fires_nothing() -> None:
    async with receiver() as rec:
        cfg = SimulatorConfig(callback_url=rec.url, **ALWAYS)
        async with run_simulator(cfg) as sim, client_for(sim, mode="test") as client:
            (o,) = await client.send_sms(LOGIN, [req("t", message="Hi [Link]", url="https://x.io")])
            assert o.outcome == "SUBMITTED"
            assert sim.state.ledger.entries["t"].mode == "test"
            assert sim.state.dispatcher.stats["planned"] == 0


@pytest.mark.parametrize(
    ("dialect", "click", "call", "phone_key", "reply_title"),
    [
        ("v1", "click", "call", "phonenumber", "incoming sms"),
        ("v2", "clics", "calls", "phone_number", "incoming_sms"),
    ],
)
async def test_callbacks_reach_the_receiver(
    dialect: str, click: str, call: str, phone_key: str, reply_title: str
) -> None:
    async with receiver() as rec:
        cfg = SimulatorConfig(
            callback_url=rec.url,
            dialect=dialect,
            delivery_delay_ms=50,
            **ALWAYS,  # type: ignore[arg-type]
        )
        async with run_simulator(cfg) as sim, client_for(sim) as client:
            await client.send_sms(LOGIN, [req("c1", message="Book [Link]", url="https://x.io/b")])
            await wait_until_async(lambda: len(rec.calls) >= 6)
            statuses = rec.of("status")
            assert sorted(s["status"] for s in statuses) == ["received", "sent"]
            assert all(s[phone_key] == OK_PHONE and s["id_sms_api"] == "c1" for s in statuses)
            assert all(s["user"] == LOGIN for s in statuses)
            (clicked,) = rec.of(click)
            assert clicked["link"] == "https://x.io/b" and clicked["id_sms_api"] == "c1"
            messages = rec.of("message")
            assert {m["title"] for m in messages} == {reply_title}
            assert len(rec.of(call)) == 1
            # the STOP reply put the number on the stop list: the next send is suppressed
            await wait_until_async(lambda: OK_PHONE in sim.state.stop_list)
            (again,) = await client.send_sms(LOGIN, [req("c2")])
            assert again.outcome == "SUPPRESSED" and again.error_codes == ("#003",)


async def test_duplicate_callbacks() -> None:
    async with receiver() as rec:
        cfg = SimulatorConfig(
            callback_url=rec.url,
            delivery_delay_ms=20,
            duplicate_probability=1.0,
            click_probability=0,
            reply_probability=0,
            stop_probability=0,
            missed_call_probability=0,
        )
        async with run_simulator(cfg) as sim, client_for(sim) as client:
            await client.send_sms(LOGIN, [req("d")])
            await wait_until_async(lambda: len(rec.of("status")) == 4)
            assert sorted(s["status"] for s in rec.of("status")) == ["received"] * 2 + ["sent"] * 2
            await wait_until_async(lambda: sim.state.dispatcher.pending == 0)
            assert sim.state.dispatcher.stats["delivered"] == 4


def _without_dates(payload: dict[str, Any]) -> tuple[tuple[str, Any], ...]:
    dates = {"date", "date_status", "call_date", "call_time"}
    return tuple(sorted((k, v) for k, v in payload.items() if k not in dates))


async def test_same_seed_same_callbacks() -> None:
    half = {k: 0.5 for k in ALWAYS}
    seen: list[list[tuple[str, Any]]] = []
    for _ in range(2):
        async with receiver() as rec:
            cfg = SimulatorConfig(callback_url=rec.url, seed=42, delivery_delay_ms=20, **half)
            async with run_simulator(cfg) as sim, client_for(sim) as client:
                batch = [
                    req(f"r{i}", f"+336123456{i:02d}", "Go [Link]", url="https://x.io")
                    for i in range(20)
                ]
                await client.send_sms(LOGIN, batch)
                planned = sim.state.dispatcher.stats["planned"]
                await wait_until_async(lambda: len(rec.calls) == planned)  # noqa: B023
                seen.append(sorted((n, _without_dates(p)) for n, p in rec.calls))
    assert seen[0] == seen[1]
    assert 40 < len(seen[0]) < 40 * 3  # the probabilities were actually drawn


async def test_contacts() -> None:
    async with run_simulator(SimulatorConfig(accounts=ACCOUNTS)) as sim, client_for(sim) as client:
        out = await client.sync_contacts(
            LOGIN,
            [
                ContactSyncRequest(OK_PHONE, LOGIN, NOW, firstname="Jo", email="jo@x.io"),
                ContactSyncRequest("+1", LOGIN, NOW),
                ContactSyncRequest(OTHER_PHONE, LOGIN, NOW, email="not-an-email"),
            ],
        )
        assert [(o.outcome, o.error_codes) for o in out] == [
            ("SUCCESS", ()),
            ("FAILED", ("#001",)),
            ("FAILED", ("#004",)),
        ]
        with pytest.raises(ArdaryAuthError):
            await client.sync_contacts(
                "wrong@example.com", [ContactSyncRequest(OK_PHONE, "w", NOW)]
            )


async def test_stop_list_endpoint() -> None:
    async with run_simulator() as sim, client_for(sim) as client:
        async with httpx.AsyncClient(base_url=sim.url) as control:
            r = await control.post("/_sim/stop-list", json={"numbers": ["+33 6 98 76 54 32"]})
            assert r.json()["numbers"] == [OTHER_PHONE]
            assert (
                await control.post("/_sim/stop-list", json={"numbers": ["x"]})
            ).status_code == 400
        (o,) = await client.send_sms(LOGIN, [req("s", OTHER_PHONE)])
        assert o.outcome == "SUPPRESSED"


def test_the_simulator_command_stops_on_sigterm_with_exit_code_0() -> None:
    """A supervisor (the demo stack, a test, Kubernetes) stops it with SIGTERM and reads 0, as
    for the other commands; uvicorn.run alone re-raises the signal (-15)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "simulator", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:

        def answers() -> bool:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                return httpx.get(f"http://127.0.0.1:{port}/_sim/stats", timeout=1).is_success
            except httpx.TransportError:
                return False

        wait_until(answers, 60, "the simulator to answer", interval=0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
