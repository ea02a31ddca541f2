"""The outbound agent's read loop on a real (unstarted) faust app: what it takes in, in what
order, and what it leaves for the partition's next owner.

The events come from a stand-in for `event_batches` and go to a recording intake; the parts
behind the intake have their own tests (`test_outbound_parts.py`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.agents.app import create_app
from pipeline.agents.outbound import OutboundAgent, OutboundOptions
from pipeline.agents.outbound import agent as agent_module
from pipeline.settings import Settings


class Event:
    def __init__(self, partition: int, offset: int, generation: int) -> None:
        self.message = SimpleNamespace(
            topic="t.sms.send-requests",
            partition=partition,
            offset=offset,
            generation_id=generation,
        )


@pytest.fixture
def agent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> OutboundAgent:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")  # nothing connects here
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    app, streams = create_app(settings, data_dir=tmp_path, store="memory://")
    app.flow_control.resume()
    app.consumer_generation_id = 2
    agent = OutboundAgent(app, streams, settings, options=OutboundOptions(max_pending=3))
    agent.optouts.ready.set()
    return agent


async def _until(condition: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.005)


def _feed(monkeypatch: pytest.MonkeyPatch, batches: list[list[Event]]) -> asyncio.Event:
    """Hand `batches` to the agent, then block as an idle queue does; returns 'all handed'."""
    done = asyncio.Event()

    async def event_batches(stream: Any, *_: Any, **__: Any) -> AsyncIterator[list[Event]]:
        for batch in batches:
            yield batch
        done.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(agent_module, "event_batches", event_batches)
    return done


async def test_events_are_taken_in_in_order_and_stale_ones_left_unread(
    agent: OutboundAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[tuple[int, int]] = []

    async def receive(event: Event, tracing: object = None) -> None:
        received.append((event.message.partition, event.message.offset))

    monkeypatch.setattr(agent.intake, "receive", receive)
    fresh = [Event(0, 10, 2), Event(1, 4, 2), Event(0, 11, 2)]
    stale = Event(0, 9, 1)  # fetched before the last rebalance
    done = _feed(monkeypatch, [[stale, fresh[0]], fresh[1:]])
    run = asyncio.create_task(agent.run(None))
    await asyncio.wait_for(done.wait(), 5)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert received == [(0, 10), (1, 4), (0, 11)]
    # the stale event is not waited for by the ack order: offset 10 may be acked at once
    assert agent.progress.order.finished(0, 10, "e10") == ["e10"]


async def test_reading_stops_while_there_is_no_room(
    agent: OutboundAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[int] = []

    async def receive(event: Event, tracing: object = None) -> None:
        received.append(event.message.offset)
        agent.progress.pending[str(event.message.offset)] = None  # type: ignore[assignment]

    monkeypatch.setattr(agent.intake, "receive", receive)
    done = _feed(monkeypatch, [[Event(0, n, 2) for n in range(5)]])
    run = asyncio.create_task(agent.run(None))
    try:
        await _until(lambda: len(received) == 3)
        for _ in range(20):  # the loop gets every chance to take a fourth
            await asyncio.sleep(0)
        assert received == [0, 1, 2]  # max_pending=3
        agent.progress.pending.pop("0")
        agent.progress.room_made()
        await _until(lambda: len(received) == 4)
        assert received == [0, 1, 2, 3] and not done.is_set()  # 4 waits for room again
    finally:
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
