"""Correlate agent: sends, results, statuses and clicks → one `SmsLifecycle` per message.

One agent consumes the four co-partitioned topics keyed by `id_sms_api` (no `group_by`, no faust
join) and keeps ONE table keyed by `id_sms_api` whose value is the `LifecycleState` merge of
every fact seen (`pipeline.core.lifecycle`, order-independent and idempotent).

Choices, written down:
- Emission: every message a batch touches is written to the table (and its changelog) and its
  lifecycle produced, even when the event changed nothing (a duplicate callback re-emits the
  same record). A replay must: the table's RocksDB is written before the batch's changelog and
  lifecycle records are acknowledged, so after a SIGKILL the restarted worker's store already
  holds what the lost batch wrote, while a restart reads only the changelog's tail. Skipping
  unchanged states left the lifecycle at its earlier state for good (the chaos run's one
  `lifecycle_mismatch`: a message SUBMITTED on `sms.lifecycle`, DELIVERED by its callbacks).
  Events are processed in batches (`event_batches`);
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
- Receipts that never came (DELIVERY_RECEIPT_TIMEOUT_SECONDS): every record is derived as of
  "now" (the wall clock, read once per batch), so a message past its receipt deadline carries
  `overdue_since` (`pipeline.core.lifecycle`), and a later receipt moves the state on and keeps
  the field. A message that sees no event past its deadline is emitted by a timer
  (`overdue_scan_interval`), which scans this worker's part of the table for deadlines that
  fell since its previous run (all of them after a rebalance or a restart: records are
  idempotent). The timer and the batches take turns (one lock), each reading "now" and the
  stored state inside its turn, so the later record on the topic is always the later truth.
  Stream == batch: the latest records equal `batch_lifecycles(events, now=N, …)` for any N
  after the timer's last run (the field depends on "now" only through "deadline <= now").
  `ardary_lifecycles_overdue_total` counts each message once, on the record that first flags
  it: the timer's, or a batch's when the timer will not (a late receipt beat it, or a late
  result's deadline was already behind the timer's scan) — `flags_overdue`. A rebalance or a
  restart scans every deadline again, so it may count a message twice.
- TTL: a timer deletes states whose last event is older than `lifecycle_ttl_seconds` before
  "now" = the largest event time this worker has processed (a watermark), capped at the wall
  clock. Event time, so replaying old topics does not wipe what is being rebuilt and a quiet
  stream expires nothing; the cap stops one bogus future timestamp from emptying the table.
  Deletion writes a tombstone to the changelog.
- Tracing (while on, `correlate_traces`): each message a batch touches gets a span under its
  SMS's trace, linked to its callbacks' ingress spans; its lifecycle record carries that
  span's `traceparent`, and the table value keeps the SMS's (`"t"`). While tracing is off the
  batch pays one check and the values have no `"t"`.
- Test hook: when the environment variable `PIPELINE_TEST_CRASH_ON` equals an event's
  `id_sms_api`, the agent raises (the crash → process exit test uses it); unset in production.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pipeline.agents.correlate_traces import SmsTraces, overdue_headers, stored_trace
from pipeline.agents.liveness import Telemetry, guarded, telemetry_for
from pipeline.core.lifecycle import (
    LifecycleState,
    apply,
    event_time,
    expired,
    message_id,
    overdue_record,
    overdue_since,
    receipt_deadline,
    to_record,
)
from pipeline.kafka.batches import event_batches
from pipeline.kafka.produce import Headers, PartitionBatches, app_producer, partition_of
from pipeline.kafka.tables import (
    ROCKSDB_OPTIONS,
    bind_event,
    sweep,
    table_write,
    ttl_scan_interval,
)
from pipeline.records import ClickCallback, SendRequest, SendResult, SmsLifecycle, StatusCallback
from pipeline.settings import Settings
from pipeline.tracing import active

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
    "flags_overdue",
    "fold_events",
    "overdue_candidate",
    "overdue_keys",
    "overdue_scan_interval",
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


def encode_value(state: LifecycleState, partition: int, trace: str | None = None) -> dict[str, Any]:
    """Table value: the state plus its partition (the TTL timer needs it for the tombstone) and,
    while tracing is on, the `traceparent` of the message's SMS trace."""
    if trace is None:
        return {"p": partition, "s": state.to_dict()}
    return {"p": partition, "s": state.to_dict(), "t": trace}


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

    def record(
        self, now: datetime | None = None, receipt_timeout_seconds: float | None = None
    ) -> SmsLifecycle:
        """The record to produce (as of `now`): always, changed or not (see the module)."""
        return to_record(self.after, now=now, receipt_timeout_seconds=receipt_timeout_seconds)


def overdue_scan_interval(timeout_seconds: float) -> float:
    """How often the overdue timer scans: a tenth of the timeout, between 1 s and 1 min."""
    return max(1.0, min(timeout_seconds / 10.0, 60.0))


async def overdue_keys(
    items: Iterable[tuple[bytes, Any]],
    now: datetime,
    timeout_seconds: float,
    since: datetime | None,
) -> list[tuple[bytes, int]]:
    """The keys (and partitions) of the stored states `overdue_candidate` picks, yielding to the
    loop every 5,000 keys so a big table does not stall the agent."""
    found: list[tuple[bytes, int]] = []
    for n, (key, value) in enumerate(items):
        if n % 5000 == 4999:
            await asyncio.sleep(0)
        if value is not None and overdue_candidate(value, now, timeout_seconds, since):
            found.append((key, int(value["p"])))
    return found


def overdue_candidate(
    value: Mapping[str, Any], now: datetime, timeout_seconds: float, since: datetime | None
) -> bool:
    """Whether a stored value's receipt deadline fell in (`since`, `now`] with no final status.

    Reads the raw value first: only a SUBMITTED message with no final status is decoded, so
    a scan of a large table stays cheap.
    """
    stored = value["s"]
    result = stored.get("result")
    if result is None or result.get("outcome") != "SUBMITTED":
        return False
    if stored.get("final_seen_at") is not None:
        return False  # a final status came
    state = LifecycleState.from_dict(stored)
    if state.final_seen_at is not None:
        return False  # saved before the field: its final status's own time stands in
    deadline = receipt_deadline(state, timeout_seconds)
    return deadline is not None and deadline <= now and (since is None or deadline > since)


def flags_overdue(
    touch: Touch,
    record: SmsLifecycle,
    now: datetime,
    timeout_seconds: float,
    scanned_until: datetime | None,
) -> bool:
    """Whether a batch's `record` (derived as of `now`) is the one that flags its message
    overdue, for `ardary_lifecycles_overdue_total`.

    The overdue timer flags (and counts) a message with no final status whose deadline falls
    after its last scan (`scanned_until`; None: it will scan every deadline). A batch's record
    counts when it carries `overdue_since` and the timer will not flag the message: a final
    status came (late), or the deadline is behind the scan; and when it was not flagged before
    this batch, by the timer (overdue and no final status before it, deadline behind the scan)
    or by an earlier batch (it already had its final status).
    """
    deadline = record.overdue_since
    if deadline is None:
        return False
    not_scanned = scanned_until is None or deadline > scanned_until
    if touch.after.final_seen_at is None and not_scanned:
        return False  # the timer's next scan flags it
    before = touch.before
    if before is None or overdue_since(before, now, timeout_seconds) is None:
        return True  # this batch made it overdue
    return before.final_seen_at is None and not_scanned


class _OverdueScan:
    """How far the overdue timer has flagged deadlines, in which consumer generation."""

    def __init__(self) -> None:
        self.until: datetime | None = None
        self.generation: Any = None

    def scanned_until(self, generation: Any) -> datetime | None:
        """The last scan's time, if it was in `generation` (a new assignment is scanned anew)."""
        return self.until if generation == self.generation else None


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
    """Attach the correlate agent, its table, its TTL timer and its overdue timer to the app."""
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
    output = _Output(
        app, streams["sms.lifecycle"].get_topic_name(), settings.pipeline_partitions, streams
    )
    timeout = settings.delivery_receipt_timeout_seconds
    crash_on = os.environ.get(CRASH_ENV) or None
    watermark = _Watermark()
    turns = asyncio.Lock()  # a batch and the overdue timer's emission never interleave
    scan = _OverdueScan()

    kept: dict[str, str] = {}  # a traced batch's stored SMS contexts (`load_traced`)

    def load(event: Any, mid: str) -> LifecycleState | None:
        bind_event(event)
        return decode_value(table.get(mid.encode()))

    def load_traced(event: Any, mid: str) -> LifecycleState | None:
        bind_event(event)
        value = table.get(mid.encode())
        trace = stored_trace(value)
        if trace is not None:
            kept[mid] = trace
        return decode_value(value)

    async def body(stream: Any) -> None:
        async for events in event_batches(stream, BATCH_MAX, BATCH_WITHIN_S):
            await _process(events)

    async def _process(events: list[Any]) -> None:
        tracing = active()  # once per batch: None while tracing is off
        traces: SmsTraces | None = None
        async with turns:
            now = datetime.now(UTC)  # inside the turn: see the module docstring
            if tracing is not None:
                kept.clear()
            touched, skipped, latest = fold_events(
                ((ev, ev.value) for ev in events),
                load if tracing is None else load_traced,
                crash_on,
            )
            watermark.advance(latest)
            scanned_until = scan.scanned_until(app.consumer_generation_id)
            batches = await output.batches()
            emit = _Emit(table, output, batches, now, timeout, scanned_until)
            if tracing is None:
                emit.untraced(touched)
            else:
                traces = SmsTraces(tracing, events, kept)
                emit.traced(touched, traces)
            sent = await batches.send()
        # The batch's events are acked (and their offsets become committable) when this returns:
        # only once the broker holds every changelog and lifecycle record they caused.
        await asyncio.gather(*sent)
        if traces is not None:
            traces.end()
        emitted, overdue = emit.emitted, emit.overdue
        telemetry.batch_done(AGENT, len(events), emitted)
        if overdue:
            telemetry.lifecycles_overdue.inc(overdue)
        if skipped:
            telemetry.events_skipped.labels(AGENT, "no_id_sms_api").inc(skipped)

    app.agent(source, name=f"pipeline.{AGENT}")(guarded(AGENT, body, telemetry))
    _register_ttl(app, table, settings.lifecycle_ttl_seconds, watermark, telemetry)
    _register_overdue(app, table, output, timeout, turns, scan, telemetry)


class _Emit:
    """One batch's writes: each touched message's table value (and changelog record) and its
    lifecycle record, changed or not (a replay must re-emit: see the module)."""

    def __init__(
        self,
        table: Any,
        output: _Output,
        batches: PartitionBatches,
        now: datetime,
        timeout: float,
        scanned_until: datetime | None,
    ) -> None:
        self.table = table
        self.output = output
        self.batches = batches
        self.now = now
        self.timeout = timeout
        self.scanned_until = scanned_until
        self.emitted = 0
        self.overdue = 0

    def untraced(self, touched: dict[str, Touch]) -> None:
        table, output, batches = self.table, self.output, self.batches
        now, timeout, scanned_until = self.now, self.timeout, self.scanned_until
        for mid, touch in touched.items():
            key = mid.encode()
            partition = touch.tag.message.partition
            value = encode_value(touch.after, partition)
            table_write(table, touch.tag, key, value, batches, tail_recovery=True)
            record = touch.record(now, timeout)
            if flags_overdue(touch, record, now, timeout, scanned_until):
                self.overdue += 1
            output.add(batches, key, partition, record)
            self.emitted += 1

    def traced(self, touched: dict[str, Touch], traces: SmsTraces) -> None:
        """`untraced`, each message in its span: the table keeps the SMS's context, the
        lifecycle record carries the span's."""
        table, output, batches = self.table, self.output, self.batches
        now, timeout, scanned_until = self.now, self.timeout, self.scanned_until
        for mid, touch in touched.items():
            key = mid.encode()
            partition = touch.tag.message.partition
            trace, headers = traces.start(mid)
            value = encode_value(touch.after, partition, trace)
            table_write(table, touch.tag, key, value, batches, tail_recovery=True)
            record = touch.record(now, timeout)
            if flags_overdue(touch, record, now, timeout, scanned_until):
                self.overdue += 1
            output.add(batches, key, partition, record, headers)
            self.emitted += 1


class _Output:
    """Where lifecycle records go: `sms.lifecycle`, in the partition of the message's events
    (co-partitioned topics; `partition_of` otherwise)."""

    def __init__(self, app: Any, topic: str, sources: int, streams: Any) -> None:
        self.app = app
        self.topic = topic
        self.sources = sources
        self.encode = streams.codec.codec.encode
        self.partitions = 0

    async def batches(self) -> PartitionBatches:
        """A fresh PartitionBatches, the topic's partition count known (cached metadata)."""
        producer = app_producer(self.app)
        self.partitions = len(await producer.partitions_for(self.topic))
        return PartitionBatches(producer)

    def add(
        self,
        batches: PartitionBatches,
        key: bytes,
        partition: int,
        record: SmsLifecycle,
        headers: Headers = None,
    ) -> None:
        at = partition_of(key, partition, self.partitions, self.sources)
        batches.add(self.topic, at, key, self.encode(record), headers)


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


def _register_overdue(
    app: Any,
    table: Any,
    output: _Output,
    timeout: float,
    turns: asyncio.Lock,
    scan: _OverdueScan,
    telemetry: Telemetry,
) -> None:
    since: datetime | None = None  # the previous run's "now" (None: scan for every deadline)
    generation: Any = None

    @app.timer(overdue_scan_interval(timeout), name=f"pipeline.{AGENT}.overdue")  # type: ignore[untyped-decorator]
    async def emit_overdue() -> None:
        nonlocal since, generation
        if app.rebalancing:
            return
        if app.consumer_generation_id != generation:  # new partitions: their older deadlines too
            since, generation = None, app.consumer_generation_id
        now = datetime.now(UTC)
        found = await overdue_keys(table.data.items(), now, timeout, since)
        async with turns:
            if app.rebalancing or app.consumer_generation_id != generation:
                return  # the next run scans again
            batches = await output.batches()
            at = datetime.now(UTC)
            flagged = 0
            tracing = active()
            for key, partition in found:
                value = table.data.get(key)  # now, not as scanned
                state = decode_value(value)
                record = None if state is None else overdue_record(state, at, timeout, since=since)
                if record is not None:
                    headers = (
                        None if tracing is None else overdue_headers(tracing, value, key.decode())
                    )
                    output.add(batches, key, partition, record, headers)
                    flagged += 1
            sent = await batches.send()
            scan.until, scan.generation = now, generation  # within the turn: see flags_overdue
        await asyncio.gather(*sent)
        telemetry.lifecycles_overdue.inc(flagged)
        since = now
