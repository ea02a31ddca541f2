"""Completion: a request's result made durable and published, then its events acked in order.

- **Acks only after the results, in offset order.** An event is acked after its SendResult (and
  its PUBLISHED marker) was acknowledged by the broker, and only once every earlier event of
  its partition is acked too (`AckOrder`): faust-streaming 0.15.3 commits a run of acked
  offsets that starts one past the committed offset, though the message at the committed offset
  is still in flight, so acking out of order (priorities, concurrent batches) could let a crash
  lose a request. Events of an earlier consumer generation (a rebalance happened meanwhile) are
  never acked here, nor those finishing while their partition is being revoked (faust changes
  the generation only at the new assignment; `AckOrder` has forgotten the partition by then):
  the partition's next owner reads them again.
- **The order of writes**: [DONE (awaited)] → results and opt-outs (awaited) → PUBLISHED
  (awaited) → acks. After an Ardary call the IN_FLIGHT state is durable already, and a crash
  before PUBLISHED is resolved by `ResultIndex`; a request answered without a call (refused,
  redelivered) gets a durable DONE first, so its result is never made twice.
- **#003 from Ardary** (the number is on its stop list) → SUPPRESSED and an OptOut on
  `sms.optouts` (built by `pipeline.core.consent`, the record the opt-out agent also makes of
  that result), applied to this worker's `OptOutBook` at once.

Records go out as per-partition record batches (`PartitionBatches`): results to the request's
partition (co-partitioned), opt-outs to the partition their phone key picks, states to the
changelog partition of their key. While tracing is on, a result and its opt-out carry the
`traceparent` of the request's `sms.send` span, which ends once its events are acked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import faust

from pipeline.agents.app import Streams
from pipeline.agents.liveness import Telemetry
from pipeline.agents.outbound.optout_book import OptOutBook
from pipeline.agents.outbound.progress import Progress
from pipeline.agents.outbound.states import SendStates, settle
from pipeline.core.consent import optout_for_result
from pipeline.core.sending import Done
from pipeline.kafka.batches import ack_events
from pipeline.kafka.produce import PartitionBatches
from pipeline.records import SendResult
from pipeline.tracing import active

__all__ = ["AGENT", "Completion", "Finished"]

AGENT = "outbound"


class Finished(NamedTuple):
    """A request's result and the events that carried it; `called`: Ardary was asked; `span`:
    the request's span while tracing is on."""

    events: list[Any]
    result: SendResult
    called: bool
    span: Any = None


class Completion:
    """Results and their states made durable, opt-outs published, events acked in order."""

    def __init__(
        self,
        app: faust.App,
        streams: Streams,
        states: SendStates,
        optouts: OptOutBook,
        progress: Progress,
        telemetry: Telemetry,
        *,
        produce_timeout: float,
    ) -> None:
        self.app = app
        self.states = states
        self.optouts = optouts
        self.progress = progress
        self.telemetry = telemetry
        self.produce_timeout = produce_timeout
        self.results_topic: str = streams["sms.send-results"].get_topic_name()
        self.optouts_topic: str = streams["sms.optouts"].get_topic_name()
        self.encode = streams.codec.codec.encode
        self.counts: dict[str, int] = {}

    async def finish(self, events: list[Any], result: SendResult, span: Any = None) -> None:
        """Record, produce and ack the result of a request that had no IN_FLIGHT state."""
        await self.finish_many([Finished(events, result, False, span)], durable_first=True)

    async def finish_many(self, items: Sequence[Finished], *, durable_first: bool = False) -> None:
        """[DONE (awaited)] → results and opt-outs (awaited) → PUBLISHED (awaited) → acks."""
        if durable_first:
            await self._store([(f.events[0], f.result, False) for f in items])
        batches = PartitionBatches.for_app(self.app)
        emitted = 0
        tracing = active()
        for f in items:
            result = f.result
            key = result.id_sms_api.encode()
            partition = f.events[0].message.partition
            headers = None if tracing is None or f.span is None else tracing.headers(f.span)
            batches.add(self.results_topic, partition, key, self.encode(result), headers)
            emitted += 1
            if f.called and result.outcome == "SUPPRESSED":
                emitted += self._publish_optout(result, batches, headers)
        await settle(batches, self.produce_timeout)
        await self._store([(f.events[0], f.result, True) for f in items])
        to_ack: list[Any] = []
        results = self.telemetry.outbound_results
        for f in items:
            outcome = f.result.outcome
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
            results.labels(outcome).inc()
            if f.called:
                self.progress.pending.pop(f.result.id_sms_api, None)
            to_ack.extend(f.events)
        self.telemetry.batch_done(AGENT, len(to_ack), emitted)
        self.ack(to_ack)
        if tracing is not None:
            for f in items:
                if f.span is not None:
                    tracing.end(f.span, attributes={"ardary.outcome": f.result.outcome})

    async def published(self, event: Any, result: SendResult, span: Any = None) -> None:
        """A redelivered request whose result is on the topic already: record that, then ack."""
        await self._store([(event, result, True)])
        self.ack([event])
        if span is not None:
            span.set_attribute("ardary.redelivered", True)
            span.end()

    def _publish_optout(
        self, result: SendResult, batches: PartitionBatches, headers: Any = None
    ) -> int:
        """Ardary said #003: remember it here and tell every worker through `sms.optouts`."""
        optout = optout_for_result(result)
        if optout is None:
            return 0
        self.optouts.apply(optout)
        key = optout.phone_number.encode()
        batches.add_keyed(self.optouts_topic, key, self.encode(optout), headers)
        return 1

    async def _store(self, items: Sequence[tuple[Any, SendResult, bool]]) -> None:
        """DONE (or PUBLISHED) states of `items`, written and acknowledged by the broker."""
        batches = PartitionBatches.for_app(self.app)
        for event, result, published in items:
            self.states.write(batches, event, result.id_sms_api, Done(result, published=published))
        await settle(batches, self.produce_timeout)

    def ack(self, events: list[Any]) -> None:
        """Ack finished events, each once every earlier event of its partition is acked.

        An event of an earlier consumer generation, or of a partition whose revocation has
        begun, is not acked: its next owner (perhaps this worker again) reads it again.
        """
        generation = self.app.consumer_generation_id
        order = self.progress.order
        for event in events:
            message = event.message
            if message.generation_id != generation:
                continue
            ready = order.finished(message.partition, message.offset, event)
            if ready:
                ack_events(self.app, ready)
        self.progress.room_made()
