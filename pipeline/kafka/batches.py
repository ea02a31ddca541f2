"""Events in batches straight from an agent's queue, without faust's per-event stream steps.

faust-streaming 0.15.3's `Stream.take_events` runs every event through the stream's iterator:
a `sleep(0)` (one event-loop turn each), a processor that appends to the buffer, tracing and
sensor calls, with a passive task feeding the buffer. For the correlate agent, whose own work
per event is a few microseconds of dict merging, that is a large share of the cost.

`event_batches` reads the channel's queue itself: it waits for one event, lets the queue fill
for at most `within` seconds (polling, so this task is not woken per event) or until
`max_events` are there, and yields them as one list. The list is acked when the loop body asks
for the next one, in queue order (offset order within a partition), as `take_events` does; a
body that raised acks nothing, so those events are read again after the restart. An agent that
acks on its own schedule (the outbound agent: only once a result is durable, in offset order)
passes `ack=False` and calls `ack_events` itself. It keeps the
stream's bookkeeping: events fetched before a rebalance (an older consumer generation, or flow
control suspended) are dropped unprocessed and not acked, since the seek at the end of the
rebalance reads them again; each message is tracked as unacked while in flight, and faust's
sensors see it in and out. Left out: faust's per-stream event sensors (its Monitor's
`events_by_stream` and event runtimes), ~5 % of the correlate worker's time for counters
nothing here reads; the pipeline's own `ardary_agent_events_processed_total` counts. Kept from
them: the partition's last inbound time (`Monitor.stream_inbound_time`), which faust's
consumer reads to tell a stalled stream: without it, a worker up for more than
`stream_processing_timeout` (300 s) with a backlog logged "Stream has not started processing"
as an ERROR for every lagging partition every few seconds (660 KB of log in 17 minutes of
`bench correlate`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from faust.types import EventT

__all__ = ["POLL_S", "ack_events", "event_batches"]

POLL_S = 0.005


def ack_events(app: Any, events: list[Any]) -> None:
    """Ack events read with `event_batches(..., ack=False)` (their offsets become committable
    once every earlier offset of their partition is acked too)."""
    sensors = app.sensors
    for event in events:
        message = event.message
        if event.ack():
            sensors.on_message_out(message.tp, message.offset, message)


async def event_batches(
    stream: Any, max_events: int, within: float, *, ack: bool = True
) -> AsyncIterator[list[Any]]:
    """Yield lists of up to `max_events` queued events, each filled for at most `within` seconds
    after its first event; with `ack`, a list is acked when the next one is asked for."""
    await stream.maybe_start()
    app = stream.app
    queue = stream.channel.queue
    get = queue.get
    get_nowait = queue.get_nowait
    empty = queue.empty
    qsize = queue.qsize
    loop = asyncio.get_running_loop()
    flow_control = app.flow_control
    unacked = app.consumer.unacked
    acking_topics = app.topics.acking_topics
    sensors = app.sensors
    inbound = app.monitor.stream_inbound_time
    while not stream.should_stop:
        try:  # get and get_nowait raise what was thrown to the channel
            items = [await get()]
            deadline = loop.time() + within
            # Poll, not await each event: a waiting getter would wake this task per event.
            while qsize() < max_events - 1 and loop.time() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(POLL_S)
            while len(items) < max_events and not empty():
                items.append(get_nowait())
        except StopAsyncIteration:  # faust ends a channel's iteration this way on stop
            return
        generation = app.consumer_generation_id
        flowing = flow_control.is_active()
        now = time.monotonic()
        events: list[Any] = []
        for event in items:
            if not isinstance(event, EventT):
                continue
            message = event.message
            if not flowing or message.generation_id != generation:
                continue  # from before a rebalance: read again after its seek
            if message.topic in acking_topics and not message.tracked:
                message.tracked = True
                unacked.add(message)
                sensors.on_message_in(message.tp, message.offset, message)
            inbound[message.tp] = now
            events.append(event)
        if not events:
            continue
        yield events
        # Only when the body asks for the next batch: a body that raised acks nothing.
        if ack:
            ack_events(app, events)
