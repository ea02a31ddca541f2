"""Stage 1 of the metrics, `metrics-facts`: each owner's current facts → window contributions.

It consumes `sms.lifecycle`, `callbacks.incoming-sms`, `sms.optouts` and `callbacks.calls`,
keeps per owner (a message, or one event) its current facts in the table `metrics-owners` —
co-partitioned with its sources, as an owner's records always share a key — and, when an
owner's facts change, sends a `Contribution` for every window whose share of that owner changed
to the contributions topic, keyed by the window. A batch of events is folded by `fold_facts`
(pure apart from the injected `load`), written by `write_facts` and acked once the broker holds
every record it caused. The expiry timer forgets owners whose facts all lie in closed windows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, TypeVar

import faust

from pipeline.agents.liveness import Telemetry, guarded
from pipeline.agents.metrics.stage import (
    BATCH_MAX,
    BATCH_WITHIN_S,
    EXPIRY_INTERVAL_S,
    BatchOutput,
    StageOutput,
    stored_facts,
)
from pipeline.core.metrics import (
    MetricFact,
    Watermarks,
    WindowPolicy,
    contributions,
    owner_update,
    resolve_facts,
)
from pipeline.kafka.batches import event_batches
from pipeline.kafka.produce import PartitionBatches
from pipeline.kafka.tables import ROCKSDB_OPTIONS, bind_event, sweep
from pipeline.records import CallEvent, IncomingSms, OptOut, SmsLifecycle

if TYPE_CHECKING:
    from pipeline.agents.app import Streams

__all__ = [
    "FACTS_AGENT",
    "FACT_SOURCES",
    "OWNERS_TABLE",
    "FactsBatch",
    "OwnerTouch",
    "fold_facts",
    "owner_expired",
    "owner_value",
    "register_facts",
    "write_facts",
]

FACTS_AGENT = "metrics-facts"
OWNERS_TABLE = "metrics-owners"
FACT_SOURCES = ("sms.lifecycle", "callbacks.incoming-sms", "sms.optouts", "callbacks.calls")
_FACT_TYPES = (SmsLifecycle, IncomingSms, OptOut, CallEvent)

E = TypeVar("E")


@dataclass(slots=True)
class OwnerTouch(Generic[E]):
    """One owner touched by a batch: its facts before the batch and after it, and the event
    (with its partition, where the owner's table key lives) that touched it last.

    Updated in place by each further event of the owner in the batch (no copy per event).
    """

    event: E
    partition: int
    before: tuple[MetricFact, ...]
    after: tuple[MetricFact, ...]

    def changed(self) -> bool:
        """Whether the owner's facts changed (as a set): else nothing is written or sent."""
        return set(self.before) != set(self.after)


class FactsBatch(NamedTuple, Generic[E]):
    """What `fold_facts` made of a batch."""

    touched: dict[str, OwnerTouch[E]]  # by owner, in first-touch order
    skipped: int  # records that are no fact source
    latest: dict[int, datetime]  # the largest fact time of the touched owners, per partition


def fold_facts(
    items: Iterable[tuple[E, int, object]],
    load: Callable[[E, str], tuple[MetricFact, ...]],
) -> FactsBatch[E]:
    """Merge a batch of `(event, partition, record)` into per-owner `OwnerTouch`es.

    `load(event, owner)` returns the owner's stored facts; it is called once per owner per
    batch, with the owner's first event, so the caller reads that event's partition. A
    lifecycle record replaces its message's facts (it carries all of them); an event's facts
    merge per `fact_id` (duplicates keep the smallest, whatever their order).
    """
    touched: dict[str, OwnerTouch[E]] = {}
    skipped = 0
    latest: dict[int, datetime] = {}
    for event, partition, record in items:
        if not isinstance(record, _FACT_TYPES):
            skipped += 1
            continue
        update = owner_update(record)
        if update is None:
            continue  # e.g. an answered call or an opt-in: no countable fact
        touch = touched.get(update.owner)
        current = load(event, update.owner) if touch is None else touch.after
        after = resolve_facts(current, update.facts, replace=update.replace)
        if touch is None:
            touched[update.owner] = OwnerTouch(event, partition, current, after)
        else:
            touch.event, touch.partition, touch.after = event, partition, after
        top = latest.get(partition)
        for f in after:
            if top is None or f.at > top:
                top = f.at
        if top is not None:
            latest[partition] = top
    return FactsBatch(touched, skipped, latest)


def owner_value(touch: OwnerTouch[Any]) -> dict[str, Any] | None:
    """The `metrics-owners` value after a batch: the partition (for the expiry's tombstone) and
    the facts sorted by `fact_id`; None (delete) when the owner has no fact left."""
    if not touch.after:
        return None
    return {"p": touch.partition, "f": [f.to_dict() for f in sorted(touch.after, key=_fact_id)]}


def _fact_id(fact: MetricFact) -> str:
    return fact.fact_id


def write_facts(batch: FactsBatch[E], out: StageOutput[E], policy: WindowPolicy) -> int:
    """Write a folded batch: each changed owner's facts (table) and its changed shares (topic).

    Returns how many contributions were sent.
    """
    sent = 0
    for owner, touch in batch.touched.items():
        if not touch.changed():
            continue
        out.write(touch.event, owner.encode(), owner_value(touch))
        for c in contributions(owner, touch.before, touch.after, policy.sizes):
            out.emit(c.key(), c.to_bytes())
            sent += 1
    return sent


def owner_expired(value: Any, watermarks: Watermarks, policy: WindowPolicy) -> bool:
    """Whether an owner can be forgotten: every window of its facts is closed in its partition."""
    return policy.all_closed(stored_facts(value), watermarks.now(int(value["p"])))


def register_facts(
    app: faust.App,
    streams: Streams,
    contributions_topic: Any,
    policy: WindowPolicy,
    partitions: int,
    telemetry: Telemetry,
) -> None:
    """Attach stage 1 (agent, `metrics-owners` table, expiry timer) to `app`."""
    names = [streams[name].get_topic_name() for name in FACT_SOURCES]
    telemetry.watch(FACTS_AGENT, names)
    source = app.topic(*names, key_type=bytes, key_serializer="raw", value_serializer=streams.codec)
    owners = app.Table(
        OWNERS_TABLE,
        default=None,
        partitions=partitions,
        key_type=bytes,
        help="metric facts per owner (message or event)",
        options=ROCKSDB_OPTIONS,
    )
    out_topic = contributions_topic.get_topic_name()
    watermarks = Watermarks()

    def load(event: Any, owner: str) -> tuple[MetricFact, ...]:
        bind_event(event)
        return stored_facts(owners.get(owner.encode()))

    async def body(stream: Any) -> None:
        async for events in event_batches(stream, BATCH_MAX, BATCH_WITHIN_S):
            batch = fold_facts(((ev, ev.message.partition, ev.value) for ev in events), load)
            for partition, at in batch.latest.items():
                watermarks.advance(partition, at)
            batches = PartitionBatches.for_app(app)
            sent = write_facts(batch, BatchOutput(owners, out_topic, batches), policy)
            await batches.send_and_wait()  # before the events are acked (next batch asked for)
            telemetry.batch_done(FACTS_AGENT, len(events), sent)
            if batch.skipped:
                telemetry.events_skipped.labels(FACTS_AGENT, "not_a_fact_source").inc(batch.skipped)

    app.agent(source, name=f"pipeline.{FACTS_AGENT}")(guarded(FACTS_AGENT, body, telemetry))

    @app.timer(EXPIRY_INTERVAL_S, name=f"pipeline.{FACTS_AGENT}.expiry")  # type: ignore[untyped-decorator]
    async def expire_owners() -> None:
        if app.rebalancing:
            return
        await sweep(owners, lambda key, value: owner_expired(value, watermarks, policy))
