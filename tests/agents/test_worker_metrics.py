"""The worker's operator metrics of issue 29, each shown to move with what it measures:
consumer lag in records and seconds, the periodic broker probe, the producer's ack latency,
Ardary call durations, the outbound breaker and backlog per login, overdue lifecycles."""

from __future__ import annotations

import asyncio
import functools
import types
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka.structs import RecordMetadata, TopicPartition
from faust.types import TP

from pipeline.agents import correlate, liveness
from pipeline.agents.app import create_app
from pipeline.agents.liveness import Telemetry, telemetry_for
from pipeline.agents.outbound import OutboundAgent, OutboundOptions
from pipeline.agents.outbound.progress import Entry
from pipeline.core.sending import BatchKey, Prepared
from pipeline.core.sending import check_request as check
from pipeline.kafka import produce, publisher
from pipeline.records import SendRequest, SendResult, StatusCallback
from pipeline.settings import Settings
from tests.unit.kafka.test_batch_resend import Producer

GROUP = "t.workers"
TOPIC = "t.sms.send-requests"
AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _sample(telemetry: Telemetry, name: str, **labels: str) -> float | None:
    return telemetry.registry.get_sample_value(name, labels)


def _settings(**overrides: Any) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        kafka_bootstrap_servers="127.0.0.1:9",  # nothing connects here
        ardary_base_url="http://ardary.test",
        ardary_login="alice",
        ardary_access_key="k",  # type: ignore[arg-type]
        **overrides,
    )


def _task(app: Any, name: str) -> Callable[[], Any]:
    """The body of the app's (last registered) task or timer `name` (faust wraps it)."""
    for wrapped in reversed(app._app_tasks):
        if wrapped.__name__ == name:
            return wrapped  # type: ignore[no-any-return]
    raise AssertionError(f"no task {name}")


# ---- consumer lag ---------------------------------------------------------------------------


class Consumer:
    def __init__(self) -> None:
        self.tps = {TP(TOPIC, 0): 100, TP(TOPIC, 1): 50}  # highwaters
        self._committed_offset = {TP(TOPIC, 0): 90, TP(TOPIC, 1): 50}
        self.unacked: list[Any] = []  # faust's is a WeakSet of messages

    def assignment(self) -> set[TP]:
        return set(self.tps)

    def highwater(self, tp: TP) -> int:
        return self.tps[tp]

    async def position(self, tp: TP) -> int | None:
        return None


def _lag_app(consumer: Consumer) -> Any:
    return types.SimpleNamespace(
        consumer=consumer,
        conf=types.SimpleNamespace(id=GROUP),
        monitor=types.SimpleNamespace(tp_read_offsets={TP(TOPIC, 0): 95, TP(TOPIC, 1): 49}),
    )


def _message(partition: int, offset: int, timestamp: float) -> Any:
    return types.SimpleNamespace(
        acked=False, topic=TOPIC, tp=TP(TOPIC, partition), offset=offset, timestamp=timestamp
    )


async def test_lag_in_records_and_seconds_per_group_and_topic() -> None:
    telemetry = Telemetry()
    telemetry.watch("outbound", [TOPIC])
    consumer = Consumer()
    consumer.unacked = [_message(0, 92, 970.0), _message(0, 91, 960.0)]
    app = _lag_app(consumer)
    await liveness._lag_once(app, telemetry, now=1000.0)
    labels = {"group": GROUP, "topic": TOPIC}
    assert _sample(telemetry, "ardary_consumer_lag_records", **labels) == 10
    assert _sample(telemetry, "ardary_consumer_lag_seconds", **labels) == 40.0  # offset 91's age
    # the agent finished them, nothing held, records 96.. untaken: a stall ages from 960
    consumer._committed_offset[TP(TOPIC, 0)] = 96
    consumer.unacked = []
    await liveness._lag_once(app, telemetry, now=1030.0)
    assert _sample(telemetry, "ardary_consumer_lag_records", **labels) == 4
    assert _sample(telemetry, "ardary_consumer_lag_seconds", **labels) == 70.0
    # caught up
    consumer._committed_offset[TP(TOPIC, 0)] = 100
    await liveness._lag_once(app, telemetry, now=1040.0)
    assert _sample(telemetry, "ardary_consumer_lag_records", **labels) == 0
    assert _sample(telemetry, "ardary_consumer_lag_seconds", **labels) == 0.0


# ---- broker probe ----------------------------------------------------------------------------


async def test_the_broker_gauge_follows_an_injected_metadata_call(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    app, _ = create_app(_settings(), data_dir=tmp_path, store="memory://")
    telemetry = telemetry_for(app)
    fast = functools.partial(publisher.watch_broker, period=0, confirm=0)
    monkeypatch.setattr(liveness, "watch_broker", fast)
    state = {"up": True, "checks_while_gauge_up": 0}

    def gauge() -> float | None:
        return _sample(telemetry, "ardary_worker_broker_up")

    async def metadata() -> bool:
        if not state["up"] and gauge() == 1.0:
            state["checks_while_gauge_up"] += 1
        await asyncio.sleep(0)
        return bool(state["up"])

    liveness.register_broker_probe(app, telemetry, metadata)
    probe = asyncio.create_task(_task(app, "broker_probe")())
    try:
        assert gauge() == 0.0  # nothing probed yet
        await _until(lambda: gauge() == 1.0)
        state["up"] = False
        await _until(lambda: gauge() == 0.0)
        assert state["checks_while_gauge_up"] == publisher.PROBE_MISSES
        state["up"] = True
        await _until(lambda: gauge() == 1.0)
    finally:
        probe.cancel()
        with pytest.raises(asyncio.CancelledError):
            await probe


async def _until(condition: Callable[[], bool], turns: int = 1000) -> None:
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


def test_every_worker_app_probes_the_broker_and_times_its_acks(tmp_path: Path) -> None:
    app, _ = create_app(_settings(), data_dir=tmp_path, store="memory://")
    telemetry = telemetry_for(app)
    assert _task(app, "broker_probe")
    produce._APP_ACK_OBSERVERS[app](0.004)
    sample = _sample(
        telemetry, "ardary_kafka_produce_ack_seconds_bucket", process="worker", le="0.005"
    )
    assert sample == 1.0


# ---- outbound: API calls, breaker, backlog -----------------------------------------------------


@pytest.fixture
def agent(tmp_path: Path) -> OutboundAgent:
    app, streams = create_app(_settings(), data_dir=tmp_path, store="memory://")
    return OutboundAgent(app, streams, _settings(), options=OutboundOptions(max_attempts=1))


def _prepared(mid: str = "m1", login: str = "alice") -> Prepared:
    request = SendRequest(mid, login, "+33612345678", "hi", AT)
    prepared = check(request, opted_out=lambda _p: False, now=AT)
    assert isinstance(prepared, Prepared)
    return prepared


async def test_ardary_calls_are_timed_by_endpoint_and_outcome(agent: OutboundAgent) -> None:
    answers = iter(
        [httpx.Response(503), httpx.Response(200, json={"data": [{"id_sms_api": "m1"}]})]
    )
    key = BatchKey("alice", "SERVER", None, 1)
    async with agent.calls.session(httpx.MockTransport(lambda r: next(answers))):
        await agent.calls.call(key, [_prepared()])
        await agent.calls.call(key, [_prepared()])
    telemetry = agent.telemetry
    for outcome in ("server_error", "ok"):
        count = _sample(
            telemetry, "ardary_api_request_seconds_count", endpoint="sendSms", outcome=outcome
        )
        assert count == 1.0


async def test_the_breaker_gauge_is_1_while_the_login_is_paused(agent: OutboundAgent) -> None:
    answers = iter(
        [httpx.Response(401), httpx.Response(200, json={"data": [{"id_sms_api": "m1"}]})]
    )
    key = BatchKey("alice", "SERVER", None, 1)
    telemetry = agent.telemetry
    assert _sample(telemetry, "ardary_outbound_breaker_open", login="alice") is None
    async with agent.calls.session(httpx.MockTransport(lambda r: next(answers))):
        await agent.calls.call(key, [_prepared()])
        assert _sample(telemetry, "ardary_outbound_breaker_open", login="alice") == 1.0
        agent.calls.breaker.record_success("alice")  # as a probe after the cool-down would
    assert _sample(telemetry, "ardary_outbound_breaker_open", login="alice") == 0.0


def test_the_backlog_counts_buffered_requests_per_login(agent: OutboundAgent) -> None:
    telemetry = agent.telemetry
    event = types.SimpleNamespace(message=types.SimpleNamespace(topic=TOPIC, partition=0))
    for n, login in enumerate(["alice", "alice", "bob"]):
        agent.dispatcher.add(Entry(event, _prepared(f"m{n}", login), 0))
    assert _sample(telemetry, "ardary_outbound_backlog", login="alice") == 2.0
    assert _sample(telemetry, "ardary_outbound_backlog", login="bob") == 1.0
    agent.dispatcher.drop({(TOPIC, 0)})  # revoked
    assert _sample(telemetry, "ardary_outbound_backlog", login="alice") == 0.0


# ---- overdue lifecycles ----------------------------------------------------------------------


class AckingProducer(Producer):
    """A producer whose every batch the broker acknowledges at once."""

    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(8))

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        future = await super().send_batch(batch, topic, partition=partition)
        tp = TopicPartition(topic, partition)
        future.set_result(RecordMetadata(topic, partition, tp, 0, -1, 0, 0))
        return future


class Event:
    def __init__(self, value: Any) -> None:
        self.value = value
        self.message = types.SimpleNamespace(partition=0, offset=0, topic=TOPIC)


async def test_overdue_lifecycles_are_counted_once_by_the_batch_or_the_timer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    producer = AckingProducer()
    monkeypatch.setattr(correlate, "app_producer", lambda app: producer)
    fed: asyncio.Queue[list[Event]] = asyncio.Queue()
    taken = asyncio.Event()

    async def event_batches(stream: Any, *_: Any, **__: Any) -> AsyncIterator[list[Event]]:
        while True:
            taken.set()
            yield await fed.get()

    monkeypatch.setattr(correlate, "event_batches", event_batches)
    settings = _settings(delivery_receipt_timeout_seconds=10)
    app, _ = create_app(settings, data_dir=tmp_path, store="memory://", agents=["correlate"])
    telemetry = telemetry_for(app)

    def overdue() -> float | None:
        return _sample(telemetry, "ardary_lifecycles_overdue_total")

    now = datetime.now(UTC)
    long_ago = now - timedelta(seconds=100)  # past the 10-s receipt deadline

    def submitted(mid: str) -> list[Event]:
        request = SendRequest(mid, "alice", "+33612345678", "hi", long_ago)
        result = SendResult(mid, "alice", "+33612345678", "SUBMITTED", long_ago, sent_time=long_ago)
        return [Event(request), Event(result)]

    def receipt(mid: str) -> Event:
        return Event(
            StatusCallback(f"{mid}-r", "+33612345678", "received", now, "{}", id_sms_api=mid)
        )

    async def batch(events: list[Event]) -> None:
        taken.clear()
        await fed.put(events)
        await asyncio.wait_for(taken.wait(), 5)  # the agent asked for the next batch

    run = asyncio.create_task(app.agents["pipeline.correlate"].fun(None))
    try:
        await asyncio.wait_for(taken.wait(), 5)  # the agent waits for its first batch
        await batch([*submitted("late"), receipt("late")])  # a late receipt, before any scan
        assert overdue() == 1.0
        await batch(submitted("never"))  # no receipt: the timer's to flag
        assert overdue() == 1.0
        emit_overdue = _task(app, "emit_overdue").__wrapped__.__wrapped__  # type: ignore[attr-defined]
        await emit_overdue()
        assert overdue() == 2.0
        await emit_overdue()
        await batch([receipt("never"), receipt("late")])  # already flagged, both
        assert overdue() == 2.0
    finally:
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
