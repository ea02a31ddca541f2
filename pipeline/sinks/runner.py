"""The warehouse sink consumer: Kafka partitions → sink batches, offsets stored with the rows.

Kafka's own committed offsets are written too after each flush, but only for monitoring (lag):
on every (re)assignment the consumer seeks to the offsets stored in the warehouse, which were
committed in the same transaction as the rows, so a crash replays exactly the unwritten tail.

Threads: kafka-python runs its network loop, and the rebalance listener, on its own IO thread,
which the listener may block while it flushes. So the writer thread never calls the consumer:
a write's Kafka commit is made by the polling thread once the write is done. The same rule holds
for monitoring: the polling thread publishes a snapshot of its progress to `SinkTelemetry`
(`pipeline.sinks.telemetry`) about twice a second, which the web server's threads read.

While tracing is on (`pipeline.tracing`), each write is a `sink.write` span linked to the traces
of the records it wrote (their `traceparent` headers; one link per trace, at most `MAX_LINKS`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import ConsumerRebalanceListener, KafkaConsumer
from kafka.structs import OffsetAndMetadata
from kafka.structs import TopicPartition as KafkaTP

from pipeline import records
from pipeline.errors import (
    BrokerError,
    ConfigError,
    DecodeError,
    PipelineError,
    SinkBackpressure,
)
from pipeline.kafka.config import KafkaClientConfig, client_config
from pipeline.kafka.errors import kafka_errors
from pipeline.kafka.groupjoin import resume_dropped_join, verify_group_join_internals
from pipeline.procutil import batch_gc
from pipeline.serde import Codec, SchemaStore, codec_for
from pipeline.settings import Settings
from pipeline.sinks.base import Sink, TopicPartition
from pipeline.sinks.factory import open_sink, pii_policy
from pipeline.sinks.health import ProgressTracker
from pipeline.sinks.telemetry import LoopState, SinkTelemetry
from pipeline.topics import WAREHOUSE_TOPICS
from pipeline.tracing import Tracing, active

__all__ = [
    "DEFAULT_GROUP",
    "READY_EVENT",
    "SinkStats",
    "close_loop",
    "consumer_config",
    "run_sink",
    "sink_topics",
    "undecodable_dead_letter",
]

log = logging.getLogger("pipeline.sink")

DEFAULT_GROUP = "ardary-warehouse"
READY_EVENT = "sink_ready"  # logged once, when the group first gave the sink partitions
POLL_RECORDS = 5_000
COMMIT_TIMEOUT_MS = 5_000
SNAPSHOT_EVERY_S = 0.5  # how often the polling thread publishes its progress to the telemetry
MAX_LINKS = 128  # traces a write's span links to (the SDK's default limit of links per span)


@dataclass(frozen=True, slots=True)
class SinkStats:
    """What one run of the sink did."""

    records: int
    rows: int
    undecodable: int
    seconds: float
    busy_seconds: float  # from the first record polled to the end of the last flush


def sink_topics(prefix: str) -> list[str]:
    """The full names of the topics the sink consumes: those with a warehouse table."""
    return [spec.full_name(prefix) for spec in WAREHOUSE_TOPICS]


def consumer_config(client: KafkaClientConfig | str, group: str | None) -> dict[str, Any]:
    """kafka-python consumer settings shared by the sink and its benchmark baseline."""
    return {
        **client_config(client).kafka_python(),
        "group_id": group,
        "client_id": "ardary-sink",
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "max_poll_records": POLL_RECORDS,
        "fetch_max_bytes": 64 * 1024 * 1024,
        "max_partition_fetch_bytes": 8 * 1024 * 1024,
        "fetch_min_bytes": 1,
        "fetch_max_wait_ms": 500,
        # a killed sink blocks its partitions until its session expires: keep that short
        "session_timeout_ms": 10_000,
        # A first assignment made while the broker did not yet list a just-created topic has no
        # partitions of it; the rebalance that fixes it waits for the next metadata refresh
        # (kafka-python's default: 5 minutes).
        "metadata_max_age_ms": 5_000,
        "heartbeat_interval_ms": 2_000,
    }


def undecodable_dead_letter(
    topic: str, partition: int, offset: int, value: bytes, timestamp_ms: int, error: Exception
) -> records.DeadLetter:
    """A dead letter for bytes the codec refused; its id is stable, so a replay de-duplicates."""
    event_id = hashlib.sha256(f"{topic}:{partition}:{offset}".encode()).hexdigest()[:32]
    at = datetime.fromtimestamp(max(timestamp_ms, 0) / 1000, tz=UTC)
    return records.DeadLetter(
        event_id=event_id,
        reason="undecodable",
        detail=f"{topic}[{partition}]@{offset}: {error}"[:1000],
        method="KAFKA",
        raw=bytes(value),
        received_at=at,
    )


class _Loop(ConsumerRebalanceListener):  # type: ignore[misc]
    """One consumer and one sink; the rebalance listener calls back into it."""

    def __init__(
        self,
        consumer: Any,
        sink: Sink,
        codec: Codec,
        group: str,
        from_beginning: bool,
        *,
        telemetry: SinkTelemetry | None = None,
    ) -> None:
        self.consumer = consumer
        self.sink = sink
        self.codec = codec
        self.group = group
        self.telemetry = telemetry or SinkTelemetry()
        self.progress = ProgressTracker()  # for the lag the telemetry reports
        self.ignore_stored = from_beginning
        self.next_offsets: dict[TopicPartition, int] = {}
        self.records = 0
        self.rows = 0
        self.undecodable = 0
        self.assigned_at: float | None = None  # monotonic time of the last assignment
        self.ready = False  # READY_EVENT logged
        self.first_record_at: float | None = None
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sink-writer")
        self.in_flight: Future[dict[TopicPartition, int]] | None = None
        self.last_flush_at: float | None = None
        self.written: dict[TopicPartition, int] = {}  # stored in the warehouse, not yet in Kafka
        self.commit_after = 0.0  # monotonic time before which a failed commit is not retried
        self.links: dict[int, Any] = {}  # trace id → SpanContext, for the next write's span
        self.unlinked = 0  # traces past MAX_LINKS in the next write

    # -- rebalance listener (kafka-python calls these inside poll) --
    def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        self.flush(wait=True)  # we still own them: write what we have before another member does
        self.progress.revoked(TopicPartition(tp.topic, tp.partition) for tp in revoked)

    def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        self.wait()  # the offsets must include a write still in flight
        assigned = list(assigned)
        if assigned and not self.ready:  # the readiness line: the first partitions are in hand
            self.ready = True
            log.info(READY_EVENT, extra={"group": self.group, "partitions": len(assigned)})
        self.assigned_at = time.monotonic()
        stored = {} if self.ignore_stored else self.sink.committed_offsets(self.group)
        self.ignore_stored = False
        for tp in assigned:
            offset = stored.get(TopicPartition(tp.topic, tp.partition))
            self.progress.assigned(TopicPartition(tp.topic, tp.partition), offset)
            if offset is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, offset)
                # Kafka's offset catches up with the warehouse's even if no new record comes
                self.written[TopicPartition(tp.topic, tp.partition)] = offset
            log.info("assigned %s[%d] from %s", tp.topic, tp.partition, offset or "beginning")

    # -- the loop --
    def handle(self, polled: dict[Any, list[Any]]) -> None:
        sink, codec = self.sink, self.codec
        if self.first_record_at is None:
            self.first_record_at = time.monotonic()
        for tp, messages in polled.items():
            topic, partition = tp.topic, tp.partition
            for message in messages:
                value = message.value
                if value is None:
                    continue  # a tombstone: nothing to store
                try:
                    record: records.Record = codec.decode(value)
                except DecodeError as exc:
                    record = undecodable_dead_letter(
                        topic, partition, message.offset, value, message.timestamp, exc
                    )
                    self.undecodable += 1
                try:
                    sink.add(topic, partition, message.offset, record)
                except SinkBackpressure:
                    self.flush(wait=True)
                    sink.add(topic, partition, message.offset, record)
                self.records += 1
            if messages:
                ours = TopicPartition(topic, partition)
                self.next_offsets[ours] = messages[-1].offset + 1
                first = messages[0]
                self.progress.polled(ours, first.offset, messages[-1].offset, first.timestamp)
        tracing = active()  # once per poll: None while tracing is off
        if tracing is not None:
            self._collect_links(tracing, polled)

    def _collect_links(self, tracing: Tracing, polled: dict[Any, list[Any]]) -> None:
        """Remember the trace of each polled record that carries one, for the write's span."""
        links = self.links
        for messages in polled.values():
            for message in messages:
                if not message.headers:
                    continue
                context = tracing.context(message.headers)
                if context is None or context.trace_id in links:
                    continue
                if len(links) < MAX_LINKS:
                    links[context.trace_id] = context
                else:
                    self.unlinked += 1

    def flush(self, wait: bool = False) -> None:
        """Hand the buffered batches to the writer thread (one write in flight at most).

        The write (rows + offsets, one transaction) overlaps with the next polls and decodes;
        the warehouse engines release the GIL while they work. A failed write raises here, at
        the next flush or wait, and stops the loop: the stored offsets make the restart replay.
        """
        self.wait()
        if self.sink.pending:
            batches = self.sink.take()
            offsets, self.next_offsets = self.next_offsets, {}
            links, self.links = list(self.links.values()), {}
            unlinked, self.unlinked = self.unlinked, 0
            self.in_flight = self.writer.submit(self._write, batches, offsets, links, unlinked)
        if wait:
            self.wait()

    def _write(
        self,
        batches: Any,
        offsets: dict[TopicPartition, int],
        links: list[Any] | None = None,
        unlinked: int = 0,
    ) -> dict[TopicPartition, int]:
        began = time.monotonic()
        tracing = active()
        if tracing is None:
            self.rows += self.sink.write(batches)
        else:
            span = tracing.span(
                "sink.write",
                links=links or (),
                attributes={
                    "ardary.records": sum(len(batch.records) for batch in batches.values()),
                    "ardary.partitions": len(batches),
                    "ardary.traces": len(links or ()) + unlinked,
                },
            )
            with tracing.use(span):
                rows = self.sink.write(batches)
                span.set_attribute("ardary.rows", rows)
            self.rows += rows
        self.last_flush_at = time.monotonic()
        self.telemetry.flushed(self.last_flush_at - began)
        return offsets

    def wait(self) -> None:
        """Wait for the write in flight; re-raises its error."""
        if self.in_flight is not None:
            future, self.in_flight = self.in_flight, None
            offsets = future.result()
            self.written.update(offsets)
            self.progress.committed(offsets)

    def commit_written(self) -> None:
        """Commit to Kafka what the warehouse holds; polling thread only (see the module doc).

        Called every loop turn, so the last write of a burst is committed too, and a failed
        commit is retried (every few seconds). Partitions no longer assigned are left to their
        new owner.
        """
        if self.in_flight is not None and self.in_flight.done():
            self.wait()
        if not self.written or time.monotonic() < self.commit_after:
            return
        owned = self.consumer.assignment()
        offsets = {
            KafkaTP(tp.topic, tp.partition): OffsetAndMetadata(off, "", -1)
            for tp, off in self.written.items()
            if KafkaTP(tp.topic, tp.partition) in owned
        }
        try:
            if offsets:
                with kafka_errors("Kafka offset commit failed (retried)"):
                    self.consumer.commit(offsets, timeout_ms=COMMIT_TIMEOUT_MS)
        except BrokerError as exc:  # informational only: the warehouse holds the truth
            log.warning("%s", exc)
            self.commit_after = time.monotonic() + COMMIT_TIMEOUT_MS / 1000
            return
        self.written.clear()

    def snapshot(self) -> LoopState:
        """The assignment and each partition's progress, for the telemetry; polling thread only.

        Reads what the consumer holds locally (its assignment, the highwater of the last fetch
        response): no request to the broker.
        """
        highwater: dict[TopicPartition, int | None] = {}
        for tp in self.consumer.assignment() or ():
            try:
                with kafka_errors("reading a partition's highwater"):
                    high = self.consumer.highwater(tp)
            except BrokerError:  # revoked since `assignment()` (IllegalStateError)
                continue
            highwater[TopicPartition(tp.topic, tp.partition)] = high
        partitions = self.progress.view(highwater, time.time())
        return LoopState(self.group, len(highwater), tuple(partitions))

    def publish_snapshot(self) -> None:
        """Hand the telemetry a fresh snapshot; a failure is logged, never raised."""
        try:
            self.telemetry.update(self.snapshot())
        except Exception as exc:  # monitoring must never stop the sink
            log.warning("sink progress snapshot failed: %s: %s", type(exc).__name__, exc)


def close_loop(loop: _Loop, consumer: Any, *, failing: bool) -> None:
    """Close the consumer, then the writer thread.

    In that order: kafka-python calls `on_partitions_revoked` from `close()`, and its flush
    needs the writer (the other order failed every close that still held rows, and the sink
    exited with a traceback). A close that fails while the loop already failed (the cluster
    went away) is logged: the loop's own error is the one to report.
    """
    try:
        with kafka_errors("closing the sink consumer failed"):
            consumer.close(autocommit=False)
    except PipelineError as exc:
        if not failing:
            raise
        log.warning("%s", exc)
    finally:
        loop.writer.shutdown(wait=True)


def run_sink(
    settings: Settings,
    *,
    stop_event: threading.Event,
    max_idle_s: float | None = None,
    url: str | None = None,
    group: str = DEFAULT_GROUP,
    from_beginning: bool = False,
    flush_every: int = 20_000,
    poll_records: int = POLL_RECORDS,
    flush_interval_ms: int = 1_000,
    progress_every_s: float = 5.0,
    sink: Sink | None = None,
    store: SchemaStore | None = None,
    telemetry: SinkTelemetry | None = None,
) -> SinkStats:
    """Consume the pipeline's topics into the warehouse until `stop_event` (or idle timeout).

    Flushes every `flush_every` records or `flush_interval_ms`, and once more before returning,
    so a graceful stop (SIGTERM/SIGINT set the event) loses nothing and a kill loses nothing
    either (the unflushed tail is replayed from the stored offsets). `telemetry`, when given,
    is kept up to date for a web server to read (`ardary-pipeline sink` serves one).
    """
    if not settings.kafka_bootstrap_servers:
        raise ConfigError("KAFKA_BOOTSTRAP_SERVERS: the sink needs a broker")
    store = store or SchemaStore.load()
    codec = codec_for(settings, store)
    if sink is None:
        sink = open_sink(
            url or settings.warehouse_url, group, pii=pii_policy(settings), store=store
        )
    sink.setup()
    try:
        client = KafkaClientConfig.from_settings(settings)
        with kafka_errors("cannot reach Kafka"):
            consumer = KafkaConsumer(**consumer_config(client, group))
    except BaseException:
        sink.close()
        raise
    loop = _Loop(consumer, sink, codec, group, from_beginning, telemetry=telemetry)
    loop.telemetry.started(group, sink.rows_written)
    started = last_flush = last_progress = last_data = last_snapshot = time.monotonic()
    rows_at_progress = 0
    failed = True  # until the loop ends on its own
    try:
        verify_group_join_internals(consumer)  # kafka-python moved what the fix needs: say so now
        with batch_gc(), kafka_errors("sink consumer failed", detail=True):
            consumer.subscribe(sink_topics(settings.pipeline_topic_prefix), listener=loop)
            while not stop_event.is_set():
                polled = consumer.poll(timeout_ms=200, max_records=poll_records)
                resume_dropped_join(consumer)
                now = time.monotonic()
                if polled:
                    loop.handle(polled)
                    last_data = now
                if sink.pending >= flush_every or (
                    sink.pending and (now - last_flush) * 1000 >= flush_interval_ms
                ):
                    loop.flush()
                    last_flush = now
                loop.commit_written()
                if now - last_snapshot >= SNAPSHOT_EVERY_S:
                    loop.publish_snapshot()
                    last_snapshot = now
                if now - last_progress >= progress_every_s:
                    rate = (loop.rows - rows_at_progress) / (now - last_progress)
                    log.info("sink: %d records, %d rows, %.0f/s", loop.records, loop.rows, rate)
                    last_progress, rows_at_progress = now, loop.rows
                if (
                    max_idle_s is not None
                    and loop.assigned_at is not None
                    and not sink.pending
                    and now - max(last_data, loop.assigned_at) >= max_idle_s
                ):
                    break  # idle since the (last) assignment: a batch run is done
            loop.telemetry.stopping()
            loop.flush(wait=True)
            loop.commit_written()
        failed = False
    finally:
        loop.telemetry.stopping()
        try:
            close_loop(loop, consumer, failing=failed)
        finally:
            sink.close()
    elapsed = time.monotonic() - started
    log.info("sink stopped: %d records, %d rows in %.1fs", loop.records, loop.rows, elapsed)
    busy = (
        loop.last_flush_at - loop.first_record_at
        if loop.first_record_at is not None and loop.last_flush_at is not None
        else 0.0
    )
    return SinkStats(loop.records, loop.rows, loop.undecodable, elapsed, busy)
