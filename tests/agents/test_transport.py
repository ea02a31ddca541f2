"""The pipeline's faust consumer: fetches only the partitions faust reads (a frozen set), and its
drain loop hands messages over without mode's four tasks each; its producer is idempotent.

The integration proof of the first is `tests/integration/test_outbound_crash.py` (a restarted
worker receives every request), of the last `tests/integration/test_worker_producer.py`; here
the calls themselves, on the real faust objects."""

from __future__ import annotations

import asyncio
from typing import Any

import faust
import pytest
from faust.types import TP

from pipeline.agents.app import create_app
from pipeline.errors import BrokerError
from pipeline.kafka import transport
from pipeline.kafka.transport import (
    PipelineConsumer,
    PipelineProducer,
    PipelineTransport,
    is_flow_wait,
)
from pipeline.settings import load_settings


def _consumer() -> Any:
    app = faust.App("test-pipeline-consumer", broker="kafka://127.0.0.1:1")
    app.transport = PipelineTransport(app.conf.broker_consumer, app)
    return app.consumer


def test_the_pipeline_app_uses_the_pipeline_transport() -> None:
    app, _ = create_app(load_settings(kafka_bootstrap_servers="127.0.0.1:1"), agents=[])
    assert isinstance(app.transport, PipelineTransport)
    assert app.transport.Consumer is PipelineConsumer
    assert isinstance(app.producer, PipelineProducer)


async def test_the_workers_producer_is_idempotent_with_acks_all() -> None:
    """A resend after a lost answer (a leader killed mid-request) is dropped by the broker only
    for a producer with an id and sequence numbers; faust gives one only to `exactly_once`."""
    app, _ = create_app(load_settings(kafka_bootstrap_servers="127.0.0.1:1"), agents=[])
    producer = app.producer._new_producer()  # the aiokafka producer faust would start
    try:
        assert producer._txn_manager is not None  # idempotence is on
        assert producer._sender._acks == -1  # acks=all
    finally:
        await producer.stop()


async def test_a_producer_start_that_never_ends_is_a_broker_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, _ = create_app(load_settings(kafka_bootstrap_servers="127.0.0.1:1"), agents=[])

    class NeverStarts:
        async def start(self) -> None:
            await asyncio.Event().wait()  # no producer id, ever

    monkeypatch.setattr(transport, "PRODUCER_START_S", 0.05)
    monkeypatch.setattr(app.producer, "_new_producer", NeverStarts)
    with pytest.raises(BrokerError, match="KAFKA_BOOTSTRAP_SERVERS"):
        await app.producer.on_start()


async def test_the_drain_loops_flow_wait_is_recognised() -> None:
    consumer = _consumer()
    assert isinstance(consumer, PipelineConsumer)
    wait = consumer.suspend_flow.wait()
    other = asyncio.Event().wait()
    try:
        assert is_flow_wait(wait, consumer.suspend_flow)
        assert not is_flow_wait(other, consumer.suspend_flow)  # another flag's wait
    finally:
        wait.close()
        other.close()


async def test_a_delivery_that_never_waits_runs_inline_with_no_task() -> None:
    consumer = _consumer()
    delivered: list[str] = []

    async def deliver(message: str) -> str:
        delivered.append(message)
        return message.upper()

    tasks_before = len(asyncio.all_tasks())
    result = await consumer.wait_first(deliver("m1"), consumer.suspend_flow.wait())
    assert delivered == ["m1"]
    assert (result.done != [], result.results, result.stopped) == (True, ["M1"], False)
    assert len(asyncio.all_tasks()) == tasks_before  # no helper tasks left behind


async def test_a_delivery_that_waits_is_finished_in_a_task_with_its_result() -> None:
    consumer = _consumer()
    room = asyncio.Event()
    steps: list[str] = []

    async def deliver(message: str) -> str:
        steps.append("start")
        await room.wait()  # a full stream buffer
        await asyncio.sleep(0)  # a bare yield to the loop on the way
        steps.append("put")
        return message.upper()

    asyncio.get_running_loop().call_later(0.01, room.set)
    result = await consumer.wait_first(deliver("m2"), consumer.suspend_flow.wait())
    assert steps == ["start", "put"]
    assert (result.results, result.stopped) == (["M2"], False)


async def test_a_waiting_delivery_is_abandoned_when_a_rebalance_suspends_flow() -> None:
    consumer = _consumer()
    outcome: list[str] = []

    async def deliver(message: str) -> None:
        try:
            await asyncio.Event().wait()  # never gets room
            outcome.append("put")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    asyncio.get_running_loop().call_later(0.01, consumer.suspend_flow.set)
    result = await consumer.wait_first(deliver("m3"), consumer.suspend_flow.wait())
    await asyncio.sleep(0)  # let the cancellation reach the delivery
    assert outcome == ["cancelled"]
    assert result.done == [] and result.stopped


async def test_an_error_in_a_delivery_reaches_the_drain_loop() -> None:
    consumer = _consumer()

    async def deliver(message: str) -> None:
        raise ValueError(message)

    with pytest.raises(ValueError, match="m4"):
        await consumer.wait_first(deliver("m4"), consumer.suspend_flow.wait())


async def test_while_flow_is_suspended_the_message_is_not_delivered() -> None:
    consumer = _consumer()
    delivered: list[str] = []

    async def deliver(message: str) -> None:
        delivered.append(message)

    consumer.suspend_flow.set()
    result = await consumer.wait_first(deliver("m1"), consumer.suspend_flow.wait())
    assert delivered == [] and result.done == [] and result.results == []


async def test_other_waits_keep_modes_behaviour() -> None:
    consumer = _consumer()
    flag = asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, flag.set)
    result = await consumer.wait_first(flag.wait(), timeout=5)
    assert result.results == [True] and not result.stopped


async def test_the_consumer_thread_gets_a_frozen_copy_of_the_active_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka reads the set again while it waits and takes an empty one for "all partitions"."""
    consumer = _consumer()
    active = {TP("t.sms.send-requests", 0)}
    seen: list[Any] = []

    async def thread_getmany(partitions: Any, timeout: float) -> dict[Any, Any]:
        active.clear()  # recovery pauses the changelogs while the fetch waits in the thread
        seen.append(partitions)
        return {}

    monkeypatch.setattr(consumer._thread, "getmany", thread_getmany)
    await consumer._getmany(active_partitions=active, timeout=1.0)
    assert seen == [frozenset({TP("t.sms.send-requests", 0)})]
    assert isinstance(seen[0], frozenset)
