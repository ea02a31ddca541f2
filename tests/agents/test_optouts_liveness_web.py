"""Opt-out decisions, the crash guard, the broker probe and the JSON form of a window."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.agents.app import create_app
from pipeline.agents.liveness import Telemetry, guarded, telemetry_for
from pipeline.agents.optouts import optout_for
from pipeline.agents.web import BrokerProbe, window_json
from pipeline.records import IncomingSms, SendResult, SmsMetricsWindow
from pipeline.settings import Settings

AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _sms(body: str) -> IncomingSms:
    return IncomingSms("e1", "+33612345678", body, AT, "{}", device_identification="alice")


@pytest.mark.parametrize(
    ("body", "opted_out"),
    [("STOP", True), ("Arrêt !", True), ("désabonner", True), ("start", False)],
)
def test_keyword_replies_change_consent(body: str, opted_out: bool) -> None:
    out = optout_for(_sms(body))
    assert out is not None
    assert (out.opted_out, out.source, out.phone_number) == (
        opted_out,
        "INCOMING_SMS",
        "+33612345678",
    )


def test_other_replies_and_results_are_ignored() -> None:
    assert optout_for(_sms("please don't stop")) is None
    ok = SendResult("m1", "alice", "+33612345678", "SUBMITTED", AT)
    assert optout_for(ok) is None
    assert optout_for(SendResult("m1", "alice", "+336", "REJECTED", AT, ("#007",))) is None


def test_stop_list_result_opts_out_idempotently() -> None:
    result = SendResult("m1", "alice", "+33612345678", "REJECTED", AT, ("#003",))
    first, second = optout_for(result), optout_for(result)
    assert first is not None and first.opted_out and first.source == "SEND_RESULT"
    assert first.keyword == "#003"
    assert first == second  # a replay publishes the same record


async def test_guard_calls_crash_handler_on_exception() -> None:
    crashes: list[tuple[str, str]] = []
    telemetry = Telemetry()

    async def body(stream: object) -> None:
        raise ValueError("bad record")

    run = guarded("demo", body, telemetry, on_crash=lambda a, e: crashes.append((a, str(e))))
    with pytest.raises(ValueError):
        await run(None)
    assert crashes == [("demo", "bad record")]
    assert telemetry.registry.get_sample_value("ardary_agent_up", {"agent": "demo"}) == 0


async def test_guard_lets_cancellation_through_without_crashing() -> None:
    crashes: list[str] = []

    async def body(stream: object) -> None:
        await asyncio.Event().wait()

    task = asyncio.ensure_future(
        guarded("demo", body, Telemetry(), on_crash=lambda a, e: crashes.append(a))(None)
    )
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert crashes == []


async def test_broker_probe_sees_a_listening_port_and_a_closed_one() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await BrokerProbe(f"127.0.0.1:{port}").reachable()
    finally:
        server.close()
        await server.wait_closed()
    assert not await BrokerProbe(f"127.0.0.1:{port}").reachable()


def test_window_json_has_iso_times() -> None:
    w = SmsMetricsWindow(AT, AT + timedelta(minutes=1), "*", requested=3, delivery_rate=0.5)
    d = window_json(w)
    assert d["window_start"] == AT.isoformat() and d["requested"] == 3
    assert d["delivery_rate"] == 0.5


def test_each_app_has_one_registry_with_the_process_metrics_and_every_agents() -> None:
    first, second = Telemetry(), Telemetry()  # two apps in one process: no clash
    for telemetry in (first, second):
        names = {m.name for m in telemetry.registry.collect()}
        assert {"process_cpu_seconds", "python_gc_objects_collected", "python_info"} <= names
        assert {"ardary_outbound_results", "ardary_agent_events_processed"} <= names
    first.outbound_batches.inc()
    assert second.registry.get_sample_value("ardary_outbound_batches_total") == 0


def test_the_outbound_status_is_reached_through_its_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")  # nothing connects here
    app, _streams = create_app(
        Settings(_env_file=None),  # type: ignore[call-arg]
        data_dir=tmp_path,
        store="memory://",
        agents=["outbound"],
    )
    other, _ = create_app(Settings(_env_file=None), data_dir=tmp_path, agents=[])  # type: ignore[call-arg]
    status = telemetry_for(app).status["outbound"]()
    assert status["buffered"] == 0 and status["pending"] == 0 and status["results"] == {}
    assert "outbound" not in telemetry_for(other).status
