"""The faust consumer whose drain loop awaits each delivery directly."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import faust
import pytest

from pipeline.agents.app import create_app
from pipeline.agents.transport import FastDrainConsumer, FastDrainTransport, is_flow_wait
from pipeline.settings import load_settings


@pytest.fixture(autouse=True)
def _collect_apps() -> Iterator[None]:
    """Finalise the faust apps made here at once: collected later, while the interpreter compiles
    a module, their finalizers upset CPython 3.11's AST recursion check (SystemError)."""
    yield
    gc.collect()


def _consumer() -> Any:
    app = faust.App("test-fast-drain", broker="kafka://127.0.0.1:1")
    app.transport = FastDrainTransport(app.conf.broker_consumer, app)
    return app.consumer


def test_the_pipeline_app_uses_the_fast_drain_transport() -> None:
    app, _ = create_app(load_settings(kafka_bootstrap_servers="127.0.0.1:1"), agents=[])
    assert isinstance(app.transport, FastDrainTransport)
    assert app.transport.Consumer is FastDrainConsumer


async def test_the_drain_loops_flow_wait_is_recognised() -> None:
    consumer = _consumer()
    assert isinstance(consumer, FastDrainConsumer)
    wait = consumer.suspend_flow.wait()
    other = asyncio.Event().wait()
    try:
        assert is_flow_wait(wait, consumer.suspend_flow)
        assert not is_flow_wait(other, consumer.suspend_flow)  # another flag's wait
    finally:
        wait.close()
        other.close()


async def test_a_delivery_is_awaited_directly_and_its_result_returned() -> None:
    consumer = _consumer()
    delivered: list[str] = []

    async def deliver(message: str) -> str:
        await asyncio.sleep(0)  # a delivery may suspend (a full stream buffer)
        delivered.append(message)
        return message.upper()

    tasks_before = len(asyncio.all_tasks())
    result = await consumer.wait_first(deliver("m1"), consumer.suspend_flow.wait())
    assert delivered == ["m1"]
    assert (result.done != [], result.results, result.stopped) == (True, ["M1"], False)
    assert len(asyncio.all_tasks()) == tasks_before  # no helper tasks left behind


async def test_while_flow_is_suspended_the_message_is_dropped_undelivered() -> None:
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
