"""The outbound agent composed: intake, dispatch and completion, wired to one faust app.

`OutboundAgent` builds the collaborators and owns what spans them: the read loop, the rebalance
callbacks and the status snapshot. It reads with `event_batches(stream, READ_MAX, 0, ack=False)`
(events are acked by `Completion`, in offset order, once their results are durable) and waits
for room before taking each event in (`Progress`: at most `max_pending` requests in work plus
events held for ordered acks; the reading stops, the consumer's buffer fills, faust's flow
control pauses the fetch).

- **Rebalance.** On revocation the buffered (not yet IN_FLIGHT) events are dropped unacked —
  the next owner reads them again — and batches in flight are awaited (bounded), so the next
  owner sees their IN_FLIGHT/DONE records; their events are not acked by this worker (acked
  then, out of order, they were committed during the rebalance, past the dropped events). A
  batch waiting for a slot loses its revoked entries the same way. An event
  read before a rebalance and not yet taken in is skipped as faust's own stream iterator skips
  it (flow control suspended or an older consumer generation): the seek at the end of the
  rebalance reads it again.
- **Assignment.** The worker's share of the global rate and of each login's rate follows its
  share of the send-requests partitions (`Dispatcher.set_share`).
- **Start.** The agent takes nothing in until the `OptOutBook` has read `sms.optouts` up to the
  end offsets seen at start-up.
- **Crash.** An exception in the read loop, the dispatch loop or a batch ends the process
  (`guarded`, `crash_process`): a silently restarted agent would keep stale work in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import faust

from pipeline.agents.app import Streams
from pipeline.agents.liveness import Telemetry, crash_process, guarded, telemetry_for
from pipeline.agents.outbound.calls import ArdaryCalls
from pipeline.agents.outbound.completion import AGENT, Completion
from pipeline.agents.outbound.dispatch import Dispatcher
from pipeline.agents.outbound.intake import Intake
from pipeline.agents.outbound.options import OutboundOptions
from pipeline.agents.outbound.optout_book import OptOutBook
from pipeline.agents.outbound.progress import Progress
from pipeline.agents.outbound.result_index import ResultIndex
from pipeline.agents.outbound.sendtime import SendTimes
from pipeline.agents.outbound.states import SendStates
from pipeline.core.ratelimit import SendGate
from pipeline.kafka.batches import event_batches
from pipeline.kafka.config import KafkaClientConfig
from pipeline.settings import Settings
from pipeline.tracing import active

__all__ = [
    "INTAKE_SLICE",
    "READ_MAX",
    "READ_WITHIN_S",
    "OutboundAgent",
    "reader_client",
    "register",
    "send_gate",
]

log = logging.getLogger(__name__)

READ_MAX = 1000  # events taken from the agent's queue at once
READ_WITHIN_S = 0.0  # no waiting for a batch to fill: the batcher's linger does the grouping
# Events taken in between two turns of the event loop. A check costs ~0.1 ms (phone parsing),
# and a full queue hands out batch after batch without a turn: without this, a backlog would
# keep the dispatcher off the loop long enough for the token bucket (two ticks deep) to overflow.
INTAKE_SLICE = 16
FINAL_DRAIN_S = 5.0  # at shutdown, how long batches in flight may finish


def reader_client(settings: Settings) -> dict[str, Any]:
    """aiokafka consumer arguments for the agent's group-less readers (opt-outs, results):
    the brokers and, on a secured cluster, TLS and SASL."""
    return KafkaClientConfig.from_settings(settings).aiokafka()


def send_gate(settings: Settings) -> SendGate:
    """The worker's gate: the global rate, OUTBOUND_RATE_PER_LOGIN's, paced by
    OUTBOUND_PACING_SECONDS (0: one tick per batch); no partitions, so no rate, until assigned."""
    return SendGate(
        settings.outbound_rate_per_second,
        settings.outbound_rate_per_login,
        pacing=settings.outbound_pacing_seconds or None,
        max_batch=settings.outbound_max_batch,
    )


class OutboundAgent:
    """`sms.send-requests` → Ardary → `sms.send-results`, delegating to one collaborator per job.

    `intake` (receive, redelivery and state checks, validation) → `dispatcher` (batching, rate,
    the Ardary call via `calls`) → `completion` (states, results, opt-outs, ordered acks). They
    share `states` (the send-state table), `progress` (requests in work, the ack order) and
    `optouts` (the consent book).
    """

    def __init__(
        self,
        app: faust.App,
        streams: Streams,
        settings: Settings,
        *,
        options: OutboundOptions | None = None,
        optouts: OptOutBook | None = None,
        on_crash: Callable[[str, BaseException], None] = crash_process,
    ) -> None:
        self.app = app
        self.settings = settings
        self.options = options = options or OutboundOptions()
        self.telemetry: Telemetry = telemetry_for(app)
        self.on_crash = on_crash
        self.requests_topic: str = streams["sms.send-requests"].get_topic_name()
        self.optouts = optouts or OptOutBook()
        self.states = SendStates(app, settings)
        self.progress = Progress(options.max_pending)
        self.client = reader_client(settings)
        self.result_index = ResultIndex(
            self.client,
            streams["sms.send-results"].get_topic_name(),
            streams.codec.codec.decode,
        )
        gate = send_gate(settings)
        send_times = SendTimes.from_settings(settings)
        self.calls = ArdaryCalls(settings, options, gate, self.telemetry, send_times)
        self.completion = Completion(
            app,
            streams,
            self.states,
            self.optouts,
            self.progress,
            self.telemetry,
            produce_timeout=options.produce_timeout,
        )
        self.dispatcher = Dispatcher(
            max_batch=settings.outbound_max_batch,
            options=options,
            gate=gate,
            calls=self.calls,
            states=self.states,
            completion=self.completion,
            progress=self.progress,
            telemetry=self.telemetry,
            crash=lambda exc: on_crash(AGENT, exc),
        )
        self.intake = Intake(
            self.states,
            self.optouts,
            self.result_index,
            self.progress,
            self.dispatcher,
            self.completion,
            send_times,
        )
        self.assigned = 0
        # read at scrape time: nothing is counted on the way
        self.telemetry.outbound_backlog.source = self.dispatcher.backlog
        self.telemetry.outbound_breaker_open.source = self.calls.breakers_open

    def stats(self) -> Mapping[str, Any]:
        """Counts by outcome, the rate share, buffered and in-flight messages."""
        return {
            "results": dict(self.completion.counts),
            "rate_share": self.dispatcher.gate.overall.rate,
            "login_rate_shares": {
                login: bucket.rate for login, bucket in self.dispatcher.gate.logins.items()
            },
            "assigned_partitions": self.assigned,
            "buffered": len(self.dispatcher.batcher),
            "pending": len(self.progress.pending),
            "held_for_ordered_ack": self.progress.order.held,
            "opted_out_numbers": len(self.optouts),
        }

    def on_assigned(self, assigned: Any) -> None:
        """Take this worker's share of the global and per-login rates for its new assignment."""
        mine = sum(1 for tp in assigned if tp.topic == self.requests_topic)
        self.assigned = mine
        self.dispatcher.set_share(mine, self.settings.pipeline_partitions)
        log.info(
            "outbound rate share",
            extra={"partitions": mine, "rate": self.dispatcher.gate.overall.rate},
        )

    async def on_revoked(self, revoked: Any) -> None:
        """Drop buffered events of revoked partitions; let batches in flight finish."""
        dropped = self.dispatcher.drop({(tp.topic, tp.partition) for tp in revoked})
        mine = [tp.partition for tp in revoked if tp.topic == self.requests_topic]
        for partition in mine:
            self.result_index.forget(partition)
        self.progress.revoked(mine, dropped)
        await self.dispatcher.drain(self.options.revoke_wait)

    def _current(self, event: Any) -> bool:
        """Whether `event` may still be taken in (faust's own stream iterator's test)."""
        app = self.app
        return bool(
            app.flow_control.is_active()
            and event.message.generation_id == app.consumer_generation_id
        )

    async def run(self, stream: Any) -> None:
        """Consume the agent's stream until cancelled (the agent body)."""
        await self.optouts.ready.wait()
        async with self.calls.session():
            dispatcher = asyncio.create_task(self.dispatcher.run())
            progress = self.progress
            try:
                async for events in event_batches(stream, READ_MAX, READ_WITHIN_S, ack=False):
                    if dispatcher.done():
                        dispatcher.result()  # re-raise: a dead dispatcher must crash the agent
                    tracing = active()  # once per batch: None while tracing is off
                    for n, event in enumerate(events, 1):
                        if n % INTAKE_SLICE == 0:
                            await asyncio.sleep(0)
                        await progress.wait_for_room()
                        if not self._current(event):
                            continue  # a rebalance came meanwhile: read again after its seek
                        progress.order.received(event.message.partition, event.message.offset)
                        await self.intake.receive(event, tracing)
            finally:
                dispatcher.cancel()
                await self.dispatcher.drain(FINAL_DRAIN_S)


def register(
    app: faust.App,
    streams: Streams,
    settings: Settings,
    *,
    options: OutboundOptions | None = None,
    on_crash: Callable[[str, BaseException], None] = crash_process,
) -> None:
    """Attach the outbound agent, its send-state table, its expiry and the opt-out feed to `app`.

    The agent's status snapshot is `telemetry_for(app).status["outbound"]()`.
    """
    options = options or OutboundOptions.from_settings(settings)
    agent = OutboundAgent(app, streams, settings, options=options, on_crash=on_crash)
    telemetry = agent.telemetry
    telemetry.watch(AGENT, [agent.requests_topic])
    telemetry.status[AGENT] = agent.stats
    optouts_topic = streams["sms.optouts"].get_topic_name()
    decode = streams.codec.codec.decode

    @app.task  # type: ignore[misc,untyped-decorator]
    async def outbound_optouts() -> None:
        await agent.optouts.follow(agent.client, optouts_topic, decode)

    app.agent(streams["sms.send-requests"], name=AGENT, concurrency=1)(
        guarded(AGENT, agent.run, telemetry, on_crash)
    )
    agent.states.register_expiry(app, settings.outbound_state_ttl_seconds, telemetry)

    async def _revoked(_app: Any, revoked: Any, **_: Any) -> None:
        await agent.on_revoked(revoked)

    async def _assigned(_app: Any, assigned: Any, **_: Any) -> None:
        agent.on_assigned(assigned)

    app.on_partitions_revoked.connect(_revoked)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(_assigned)  # type: ignore[arg-type]
