"""Correlate agent: sends, results, statuses and clicks → one `SmsLifecycle` per message.

One agent consumes the four co-partitioned topics keyed by `id_sms_api` (no `group_by`, no faust
join) and keeps ONE table keyed by `id_sms_api` whose value is the `LifecycleState` merge of
every fact seen (`pipeline.core.lifecycle`, order-independent and idempotent).

Choices, written down:
- Emission: a lifecycle is produced to `sms.lifecycle` only when its derived record changed
  (so a duplicate callback emits nothing). Events are processed in batches (`event_batches`);
  within one batch only the last record of a message is produced — the topic is compacted and
  the latest record per key is the truth, so intermediate records carry no information.
  A batch's changelog and lifecycle records go to Kafka as one record batch per partition
  (`PartitionBatches`), in the partition of the message's events: the topics are
  co-partitioned (`ensure_topics` creates them alike); a lifecycle topic with another partition
  count gets the default keyed partitioner's choice (`partition_of`).
- Orphans (callbacks before their send) are emitted at once with what is known; they merge when
  the send arrives. Callbacks without `id_sms_api` (keyed by phone, flagged) are skipped and
  counted (`ardary_agent_events_skipped{reason="no_id_sms_api"}`).
- `updated_at` is the latest event time of that message (`to_record` default), never the wall
  clock, so stream == batch.
- TTL: a timer deletes states whose last event is older than `lifecycle_ttl_seconds` before
  "now" = the largest event time this worker has processed (a watermark), capped at the wall
  clock. Event time, so replaying old topics does not wipe what is being rebuilt and a quiet
  stream expires nothing; the cap stops one bogus future timestamp from emptying the table.
  Deletion writes a tombstone to the changelog.
- Test hook: when the environment variable `PIPELINE_TEST_CRASH_ON` equals an event's
  `id_sms_api`, the agent raises (the crash → process exit test uses it); unset in production.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.agents.liveness import Telemetry, guarded, telemetry_for
from pipeline.core.lifecycle import (
    LifecycleState,
    apply,
    event_time,
    expired,
    message_id,
    to_record,
)
from pipeline.kafka.batches import event_batches
from pipeline.kafka.produce import PartitionBatches, app_producer, partition_of
from pipeline.kafka.tables import (
    ROCKSDB_OPTIONS,
    bind_event,
    sweep,
    table_write,
    ttl_scan_interval,
)
from pipeline.records import ClickCallback, SendRequest, SendResult, SmsLifecycle, StatusCallback
from pipeline.settings import Settings

__all__ = [
    "AGENT",
    "BATCH_MAX",
    "BATCH_WITHIN_S",
    "CRASH_ENV",
    "SOURCES",
    "TABLE",
    "Touch",
    "decode_value",
    "encode_value",
    "fold_events",
    "register",
]

log = logging.getLogger(__name__)

AGENT = "correlate"
TABLE = "lifecycle"
SOURCES = ("sms.send-requests", "sms.send-results", "callbacks.status", "callbacks.clicks")
CRASH_ENV = "PIPELINE_TEST_CRASH_ON"
BATCH_MAX = 1000
BATCH_WITHIN_S = 0.05
_LIFECYCLE_TYPES = (SendRequest, SendResult, StatusCallback, ClickCallback)


def encode_value(state: LifecycleState, partition: int) -> dict[str, Any]:
    """Table value: the state plus its partition (the TTL timer needs it for the tombstone)."""
    return {"p": partition, "s": state.to_dict()}


def decode_value(value: Any) -> LifecycleState | None:
    """Inverse of `encode_value` (None for a missing key)."""
    if value is None:
        return None
    return LifecycleState.from_dict(value["s"])


@dataclass(slots=True)
class Touch:
    """One message touched by a batch: its state before and after, and its latest event tag."""

    tag: Any
    before: LifecycleState | None
    after: LifecycleState

    def changed_state(self) -> bool:
        return self.after != self.before

    def emit(self) -> SmsLifecycle | None:
        """The record to produce, or None when the derived record did not change."""
        if self.after == self.before:
            return None
        record = to_record(self.after)
        if self.before is not None and to_record(self.before) == record:
            return None
        return record


def fold_events(
    items: Iterable[tuple[Any, Any]],
    load: Any,
    crash_on: str | None = None,
) -> tuple[dict[str, Touch], int, datetime | None]:
    """Merge a batch of `(tag, event)` into per-message `Touch`es; pure apart from `load`.

    `load(tag, id_sms_api)` returns the stored state (called once per message per batch, with
    the tag of its first event so the caller can read the right partition). Returns the touches,
    how many events were skipped (no `id_sms_api`, or not a lifecycle record), and the largest
    event time seen.
    """
    touched: dict[str, Touch] = {}
    skipped = 0
    latest: datetime | None = None
    for tag, event in items:
        if not isinstance(event, _LIFECYCLE_TYPES):
            skipped += 1
            continue
        mid = message_id(event)
        if mid is None:
            skipped += 1
            continue
        if crash_on is not None and mid == crash_on:
            raise RuntimeError(f"{CRASH_ENV} hook: crashing on purpose")
        at = event_time(event)
        latest = at if latest is None or at > latest else latest
        touch = touched.get(mid)
        if touch is None:
            before = load(tag, mid)
            touch = touched[mid] = Touch(tag, before, apply(before, event))
        else:
            touch.after = apply(touch.after, event)
            touch.tag = tag
    return touched, skipped, latest


class _Watermark:
    """The largest event time processed by this worker, capped at the wall clock when read."""

    def __init__(self) -> None:
        self.value: datetime | None = None

    def advance(self, at: datetime | None) -> None:
        if at is not None and (self.value is None or at > self.value):
            self.value = at

    def now(self) -> datetime | None:
        if self.value is None:
            return None
        return min(self.value, datetime.now(UTC))


def register(app: Any, streams: Any, settings: Settings) -> None:
    """Attach the correlate agent, its table and its TTL timer to the app."""
    telemetry = telemetry_for(app)
    names = [streams[name].get_topic_name() for name in SOURCES]
    telemetry.watch(AGENT, names)
    source = app.topic(*names, key_type=bytes, key_serializer="raw", value_serializer=streams.codec)
    table = app.Table(
        TABLE,
        default=None,
        partitions=settings.pipeline_partitions,
        key_type=bytes,
        help="LifecycleState per id_sms_api",
        options=ROCKSDB_OPTIONS,
    )
    out_topic = streams["sms.lifecycle"].get_topic_name()
    sources = settings.pipeline_partitions
    codec = streams.codec.codec
    crash_on = os.environ.get(CRASH_ENV) or None
    watermark = _Watermark()

    def load(event: Any, mid: str) -> LifecycleState | None:
        bind_event(event)
        return decode_value(table.get(mid.encode()))

    async def body(stream: Any) -> None:
        async for events in event_batches(stream, BATCH_MAX, BATCH_WITHIN_S):
            await _process(events)

    async def _process(events: list[Any]) -> None:
        touched, skipped, latest = fold_events(((ev, ev.value) for ev in events), load, crash_on)
        watermark.advance(latest)
        emitted = 0
        producer = app_producer(app)
        batches = PartitionBatches(producer)
        out_partitions = len(await producer.partitions_for(out_topic))  # cached metadata
        for mid, touch in touched.items():
            if not touch.changed_state():
                continue
            key = mid.encode()
            partition = touch.tag.message.partition
            table_write(table, touch.tag, key, encode_value(touch.after, partition), batches)
            record = touch.emit()
            if record is not None:
                at = partition_of(key, partition, out_partitions, sources)
                batches.add(out_topic, at, key, codec.encode(record))
                emitted += 1
        # The batch's events are acked (and their offsets become committable) when this returns:
        # only once the broker holds every changelog and lifecycle record they caused.
        await asyncio.gather(*await batches.send())
        telemetry.batch_done(AGENT, len(events), emitted)
        if skipped:
            telemetry.events_skipped.labels(AGENT, "no_id_sms_api").inc(skipped)

    app.agent(source, name=f"pipeline.{AGENT}")(guarded(AGENT, body, telemetry))
    _register_ttl(app, table, settings.lifecycle_ttl_seconds, watermark, telemetry)


def _register_ttl(
    app: Any, table: Any, ttl_seconds: float, watermark: _Watermark, telemetry: Telemetry
) -> None:
    @app.timer(ttl_scan_interval(ttl_seconds), name=f"pipeline.{AGENT}.ttl")  # type: ignore[untyped-decorator]
    async def expire_lifecycles() -> None:
        if app.rebalancing:
            return
        now = watermark.now()
        live = 0

        def victim(key: bytes, value: Any) -> bool:
            nonlocal live
            state = decode_value(value)
            if state is None:
                return False
            if now is not None and expired(state, now, ttl_seconds):
                return True
            live += 1
            return False

        victims = await sweep(table, victim)
        telemetry.lifecycles_expired.inc(len(victims))
        telemetry.lifecycle_table_size.set(live)
