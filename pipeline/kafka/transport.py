"""faust's aiokafka transport: two changes to its consumer (no lost fetches, cheap hand-over) and
an idempotent producer.

1. A fetch never drains partitions faust is not reading. faust-streaming 0.15.3 passes its live
   set of active partitions to the consumer thread, where aiokafka's `fetched_records` reads it
   again on every wake-up and takes an EMPTY set to mean "every partition". At the end of a
   table recovery the set is empty for a moment (changelogs done, stream partitions not yet
   resumed): a fetch waiting in the thread then returned the stream partitions' records, faust
   dropped them as not active, and aiokafka's position had moved past them. Nothing read them
   again: the restarted worker of the outbound SIGKILL test received no request at all in 5 of
   26 loaded runs (logged drops of every request offset, active set empty; 15 of 15 passed
   after). The thread now gets a frozen copy of the set faust checked was not empty.

2. faust hands every fetched message to the topic conductor through
   `Service.wait_first(callback(message), suspend_flow.wait())`: four new tasks per message (the
   delivery, the flow flag, the service's stop and crash flags), three of them cancelled again,
   half of what a worker spent to deliver an event to an agent doing nothing (`bench correlate`).
   Here the delivery runs in the drain loop's own task until it completes or first has to wait;
   almost every delivery completes (the agent's queue has room) and costs no task at all. One
   that has to wait (a full queue, paused flow control) continues in a task raced against the
   flow, stop and crash flags, as mode does: if a rebalance starts first, it is abandoned. When
   flow is already suspended the message is not delivered (the seek at the end of the rebalance
   reads it again). Every other call to `wait_first` is mode's.

3. The producer is idempotent. faust enables idempotence only for its `exactly_once` guarantee
   (which the pipeline does not use), so a produce request the broker wrote but whose answer was
   lost (its leader killed mid-request) was sent again and written twice: the secured pipeline
   test's single worker, never restarted, wrote three requests' SendResults twice after the
   `sms.send-requests` leader was SIGKILLed (CI, 2026-12-01; 1 run of 1 here beside a CPU hog).
   With a producer id and sequence numbers the partition's new leader drops the resend. Its
   start is bounded (`PRODUCER_START_S`), as the ingress publisher's is: aiokafka waits for a
   producer id without end when the node it asked goes away before answering.

4. Every topic faust sends to is kept in the producer's metadata requests before the record is
   queued (`produce.track_topic`, which says why): aiokafka otherwise drops a topic it learned
   from its first, full metadata answer at the next refresh, and a batch queued for it is never
   sent.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Coroutine, Generator
from typing import Any

from faust.transport.drivers import aiokafka as driver
from mode.services import WaitResults

from pipeline.errors import BrokerError
from pipeline.kafka import idempotence
from pipeline.kafka.produce import track_topic

__all__ = [
    "PRODUCER_START_S",
    "PipelineConsumer",
    "PipelineProducer",
    "PipelineTransport",
    "is_flow_wait",
]

PRODUCER_START_S = 30.0  # the worker's producer start (faust's producer request timeout is 20 min)


def is_flow_wait(awaitable: Any, flag: Any) -> bool:
    """Whether `awaitable` is the coroutine `flag.wait()` (the drain loop's second argument)."""
    code = getattr(awaitable, "cr_code", None)
    frame = getattr(awaitable, "cr_frame", None)
    wait = getattr(type(flag).wait, "__code__", None)
    return code is wait and frame is not None and frame.f_locals.get("self") is flag


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], pending: Any) -> Generator[Any, Any, Any]:
    """Continue `coro`, which already yielded `pending` to its (absent) task, as `await` would."""
    while True:
        try:
            sent = yield pending
        except BaseException as exc:  # thrown in by the task (cancellation): pass it on
            try:
                pending = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
            continue
        try:
            pending = coro.send(sent)
        except StopIteration as stop:
            return stop.value


async def _continue(coro: Coroutine[Any, Any, Any], pending: Any) -> Any:
    return await _resume(coro, pending)


class PipelineConsumer(driver.Consumer):  # type: ignore[misc]
    """faust's aiokafka consumer: fetches only what faust reads, hands over without tasks."""

    _flag_waiters: dict[str, asyncio.Task[Any]] | None = None

    async def _getmany(self, active_partitions: set[Any] | None, timeout: float) -> Any:  # noqa: ASYNC109 (faust's signature)
        # faust annotates a set; the thread only reads it
        frozen: Any = None if active_partitions is None else frozenset(active_partitions)
        return await super()._getmany(frozen, timeout)

    def _waiters(self) -> list[asyncio.Task[Any]]:
        waiters = self._flag_waiters
        if waiters is None:
            waiters = self._flag_waiters = {}
        for name, flag in (
            ("flow", self.suspend_flow),
            ("stopped", self._stopped),
            ("crashed", self._crashed),
        ):
            task = waiters.get(name)
            if task is None or task.done():
                waiters[name] = asyncio.ensure_future(flag.wait())
        return list(waiters.values())

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:  # noqa: ASYNC109 (mode's signature)
        if len(coros) == 2 and timeout is None and is_flow_wait(coros[1], self.suspend_flow):
            coros[1].close()
            delivery = coros[0]
            if self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set():
                delivery.close()  # a rebalance or stop is under way: read again after the seek
                return WaitResults([], [], True)
            try:
                pending = delivery.send(None)  # run it here until it completes or must wait
            except StopIteration as done:
                return WaitResults([delivery], [done.value], False)
            task = asyncio.ensure_future(_continue(delivery, pending))
            try:
                await asyncio.wait([task, *self._waiters()], return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not task.done():
                    task.cancel()
            if task.done() and not task.cancelled():
                return WaitResults([delivery], [task.result()], False)
            return WaitResults([], [], True)
        return await super().wait_first(*coros, timeout=timeout)  # type: ignore[no-any-return]

    async def on_stop(self) -> None:
        for task in (self._flag_waiters or {}).values():
            task.cancel()
        await super().on_stop()


class PipelineProducer(driver.Producer):  # type: ignore[misc]
    """faust's aiokafka producer, idempotent (acks=all), its start bounded."""

    def _settings_extra(self) -> dict[str, Any]:
        return {**super()._settings_extra(), "acks": "all", "enable_idempotence": True}

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> Any:
        """faust's send, the topic kept in the producer's metadata first (`track_topic`)."""
        track_topic(self._ensure_producer(), topic)
        return await super().send(topic, *args, **kwargs)

    async def on_start(self) -> None:
        idempotence.install()  # a failed batch takes a new producer id, not a stuck partition
        try:
            async with asyncio.timeout(PRODUCER_START_S):
                await super().on_start()
        except TimeoutError:
            raise BrokerError(
                f"the worker's producer got no producer id within {PRODUCER_START_S:g} s"
                " (KAFKA_BOOTSTRAP_SERVERS: is the cluster up?)"
            ) from None


class PipelineTransport(driver.Transport):  # type: ignore[misc]
    """The aiokafka transport, creating `PipelineConsumer`s and `PipelineProducer`s."""

    Consumer = PipelineConsumer
    Producer = PipelineProducer
