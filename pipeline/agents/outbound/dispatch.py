"""Dispatch: buffered requests leave in batches, most urgent first, at this worker's rate shares.

- **Batching and priorities inside the agent** (concurrency=1: faust's agent concurrency can
  commit offsets wrongly): requests go into a `PriorityBatcher` keyed by (login, routing,
  sender_name, priority); the dispatch loop hands out the batch `next_batch` picks whenever the
  rates allow, and up to `max_concurrent` batches are in flight, so Ardary's latency does not
  cap the rate.
- **Rates** (`SendGate`): the global OUTBOUND_RATE_PER_SECOND and each OUTBOUND_RATE_PER_LOGIN
  login's rate, every one at this worker's share (its send-requests partitions / all
  partitions), re-divided on every assignment (`set_share`). A login's call needs its own
  tokens and the global ones; a login that must wait is passed over, so one login's backlog
  never holds up another's messages.
- **Paced** (OUTBOUND_PACING_SECONDS, 0.25 s): with a backlog each call carries the tokens of
  a pacing interval (10 messages at 40/s, up to OUTBOUND_MAX_BATCH), calls spaced so no 1-s
  window holds more than the rate + ~2 % (`pipeline.core.pacing`). 0 goes back to one pacing
  tick per batch (15 ms of the rate: one message per call at 40/s). A 429 (or any transient
  failure) pauses the gate for the Retry-After or backoff delay (`ArdaryCalls`).
- **A batch's life**: IN_FLIGHT states written and acknowledged by the broker, then the Ardary
  call, then `Completion`. A batch whose requests were revoked while it waited for a slot is
  not sent and its entries are forgotten (the next owner reads them again). A batch that
  raises crashes the worker: a lost batch would leave its requests unanswered and its
  partition's acks stuck.
- **Tracing** (while on): the call is an `ardary.send` span under the first request's
  `sms.send` span, linked to (and from) the others' (one HTTP call serves several traces), with
  the HTTP client spans of the instrumented client under it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pipeline.agents.liveness import Telemetry
from pipeline.agents.outbound.calls import ArdaryCalls
from pipeline.agents.outbound.completion import Completion, Finished
from pipeline.agents.outbound.options import OutboundOptions
from pipeline.agents.outbound.progress import Entry, Progress
from pipeline.agents.outbound.states import SendStates, settle
from pipeline.core.ratelimit import SendGate, next_batch
from pipeline.core.sending import BatchKey, InFlight, PriorityBatcher
from pipeline.kafka.produce import PartitionBatches
from pipeline.tracing import Tracing, active

__all__ = ["Dispatcher"]

log = logging.getLogger(__name__)


class Dispatcher:
    """The priority batcher, the send gate, and up to `max_concurrent` batches in flight."""

    def __init__(
        self,
        *,
        max_batch: int,
        options: OutboundOptions,
        gate: SendGate,
        calls: ArdaryCalls,
        states: SendStates,
        completion: Completion,
        progress: Progress,
        telemetry: Telemetry,
        crash: Callable[[BaseException], None],
    ) -> None:
        self.max_batch = max_batch
        self.options = options
        self.gate = gate
        self.calls = calls
        self.states = states
        self.completion = completion
        self.progress = progress
        self.telemetry = telemetry
        self.crash = crash
        self.batcher: PriorityBatcher[Entry] = PriorityBatcher(max_batch, options.linger)
        self._tasks: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(options.max_concurrent)
        self._waiting: list[Entry] = []  # the batch picked, waiting for a slot

    def add(self, entry: Entry) -> None:
        """Buffer a checked request for its batch."""
        r = entry.request
        key = BatchKey(r.login, r.routing, r.sender_name, max(0, min(2, r.priority)))
        self.batcher.add(key, entry, time.monotonic())
        self.telemetry.outbound_buffered.set(len(self.batcher))
        self._wakeup.set()

    def backlog(self) -> dict[str, float]:
        """Buffered requests per login, the batch waiting for a call slot included
        (`ardary_outbound_backlog`, read at scrape time)."""
        counts: dict[str, float] = {}
        for group in self.batcher.groups():
            counts[group.key.login] = counts.get(group.key.login, 0.0) + group.size
        for entry in self._waiting:
            counts[entry.request.login] = counts.get(entry.request.login, 0.0) + 1
        return counts

    def set_share(self, assigned: int, total: int) -> None:
        """Run at the share of every rate `assigned` of `total` partitions give, from now on."""
        self.gate.set_share(assigned, total)
        self.telemetry.outbound_rate_share.set(self.gate.overall.rate or 0.0)
        self._wakeup.set()

    def drop(self, partitions: set[tuple[str, int]]) -> list[Entry]:
        """Remove the buffered (not yet IN_FLIGHT) entries of revoked topic-partitions, those
        of the batch waiting for a slot included."""

        def revoked(e: Entry) -> bool:
            return (e.event.message.topic, e.event.message.partition) in partitions

        dropped = self.batcher.remove_if(revoked)
        waiting = self._waiting
        dropped.extend(e for e in waiting if revoked(e))
        waiting[:] = [e for e in waiting if not revoked(e)]
        self.telemetry.outbound_buffered.set(len(self.batcher))
        return dropped

    async def drain(self, within: float) -> None:
        """Wait (at most `within` s) for the batches in flight."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=within)

    async def _sleep_or_wake(self, seconds: float) -> None:
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=max(0.0, seconds))

    async def run(self) -> None:
        """Hand out ready batches as the rate allows, until cancelled."""
        while True:
            if not self.batcher:
                await self._sleep_or_wake(1.0)
                continue
            picked = next_batch(self.batcher, self.gate, time.monotonic())
            if not isinstance(picked, tuple):  # nothing may go yet: the soonest wait
                await self._sleep_or_wake(min(picked, 1.0))
                continue
            key, entries = picked  # its tokens are taken
            self.telemetry.outbound_buffered.set(len(self.batcher))
            self._waiting = entries  # `drop` takes revoked entries out while it waits
            try:
                await self._slots.acquire()
            finally:
                self._waiting = []
            task = asyncio.create_task(self._run_batch(key, entries))
            self._tasks.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # never lose a batch silently: crash the worker, it restarts
            log.error("outbound batch crashed", exc_info=exc)
            self.crash(exc)

    async def _run_batch(self, key: BatchKey, entries: list[Entry]) -> None:
        if not entries:
            return  # every entry was revoked while the batch waited for its slot
        if entries[0].generation != self.progress.generation:
            self.progress.abandon(entries)  # revoked meanwhile: the next owner reads them again
            return
        since = datetime.now(UTC)
        batches = PartitionBatches.for_app(self.completion.app)
        for e in entries:
            self.states.write(batches, e.event, e.request.id_sms_api, InFlight(since))
        await settle(batches, self.options.produce_timeout)
        in_flight = self.telemetry.outbound_in_flight
        in_flight.inc(len(entries))
        tracing = active()
        call_span = None if tracing is None else _call_span(tracing, key, entries)
        try:
            if tracing is None or call_span is None:
                results = await self.calls.call(key, [e.prepared for e in entries])
            else:
                with tracing.use(call_span):  # the HTTP client spans go under it
                    results = await self.calls.call(key, [e.prepared for e in entries])
        finally:
            in_flight.dec(len(entries))
        await self.completion.finish_many(
            [
                Finished([entry.event, *entry.duplicates], result, True, entry.span)
                for entry, result in zip(entries, results, strict=True)
            ]
        )


def _call_span(tracing: Tracing, key: BatchKey, entries: list[Entry]) -> Any:
    """The span of one Ardary call: a child of the first request's span, linked to the others'
    (each of them linked back to it); None when no request of the batch has a span."""
    spans = [e.span for e in entries if e.span is not None]
    if not spans:
        return None
    call = tracing.span(
        "ardary.send",
        parent=spans[0].get_span_context(),
        links=[s.get_span_context() for s in spans[1:]],
        attributes={
            "ardary.login": key.login,
            "ardary.routing": key.routing,
            "ardary.batch_size": len(entries),
        },
    )
    context = call.get_span_context()
    for span in spans[1:]:
        span.add_link(context)
    return call
