"""event_batches: an agent's queued events in batches, acked only once the next batch is asked for.

On the real faust objects (app, topic channel, consumer messages), no broker: events are put on
the channel's queue as faust's conductor does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import pytest
from faust.events import Event
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from pipeline.agents.app import create_app
from pipeline.kafka.batches import event_batches
from pipeline.settings import Settings

TOPIC = "t.callbacks.status"


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")  # nothing connects here
    built, _streams = create_app(Settings(), agents=[])
    built.consumer_generation_id = 2
    built.flow_control.resume()  # as a worker does once its partitions are assigned
    return built


@pytest.fixture
async def stream(app: Any) -> AsyncIterator[Any]:
    channel = app.topic(TOPIC, key_type=bytes, value_type=bytes)
    built = app.stream(aiter(channel))
    app.topics.acking_topics.add(TOPIC)
    yield built
    await built.stop()  # event_batches started it


def _event(app: Any, offset: int, generation: int = 2) -> Event:
    message = ConsumerMessage(
        TOPIC, 0, offset, 0.0, 0, [], b"k", b"v", None, generation_id=generation
    )
    message.incref()  # one channel holds it, as the conductor counts
    return Event(app, b"k", f"v{offset}", {}, message)


def _acked(app: Any) -> list[int]:
    return sorted(app.consumer._acked.get(TP(TOPIC, 0), []))


async def test_queued_events_come_in_batches_acked_when_the_next_is_asked_for(
    app: Any, stream: Any
) -> None:
    for offset in range(5):
        stream.channel.queue.put_nowait(_event(app, offset))
    batches = event_batches(stream, max_events=3, within=0.01)

    first = await anext(batches)
    assert [e.message.offset for e in first] == [0, 1, 2]
    assert all(e.message.tracked for e in first)
    assert _acked(app) == []  # in the body's hands: nothing committable yet

    second = await anext(batches)
    assert [e.message.offset for e in second] == [3, 4]
    assert _acked(app) == [0, 1, 2]
    await batches.aclose()
    assert _acked(app) == [0, 1, 2]  # closed before asking for more: 3 and 4 stay unacked


async def test_a_partial_batch_waits_at_most_within(app: Any, stream: Any) -> None:
    stream.channel.queue.put_nowait(_event(app, 0))
    async with aclosing(event_batches(stream, max_events=100, within=0.02)) as batches:
        batch = await asyncio.wait_for(anext(batches), 5)
    assert [e.message.offset for e in batch] == [0]


async def test_events_from_before_a_rebalance_are_dropped_unacked(app: Any, stream: Any) -> None:
    stale = _event(app, 0, generation=1)
    for event in (stale, _event(app, 1)):
        stream.channel.queue.put_nowait(event)
    async with aclosing(event_batches(stream, max_events=10, within=0.01)) as batches:
        batch = await anext(batches)
        assert [e.message.offset for e in batch] == [1]
        stream.channel.queue.put_nowait(_event(app, 2))
        await anext(batches)
    assert _acked(app) == [1]
    assert not stale.message.acked and not stale.message.tracked


async def test_a_stop_thrown_to_the_channel_ends_the_batches(app: Any, stream: Any) -> None:
    stream.channel.queue.put_nowait(_event(app, 0))
    async with aclosing(event_batches(stream, max_events=10, within=0.01)) as batches:
        await anext(batches)
        stream.channel.queue._throw(StopAsyncIteration())
        with pytest.raises(StopAsyncIteration):
            await anext(batches)
    assert _acked(app) == [0]


async def test_a_batch_tells_faust_s_monitor_its_partition_is_being_processed(
    app: Any, stream: Any
) -> None:
    # faust's consumer logs "Stream has not started processing" (ERROR, every few seconds per
    # lagging partition) once a worker is up 300 s unless the partition's inbound time is set
    stream.channel.queue.put_nowait(_event(app, 0))
    async with aclosing(event_batches(stream, max_events=10, within=0.01)) as batches:
        await anext(batches)
    assert TP(TOPIC, 0) in app.monitor.stream_inbound_time
