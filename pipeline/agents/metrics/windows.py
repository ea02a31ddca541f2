"""Stage 2 of the metrics, `metrics-windows`: contributions → window accumulators → `metrics.sms`.

It consumes the contributions topic — every contribution to one window reaches one partition,
hence one worker — and keeps in the table `metrics-windows` each owner's latest share per
window (``c|<window>|<owner>``), each window's accumulator (``w|<window>``) and each source
partition's watermark (``m|<partition>``, so a restarted worker closes the same windows).
A contribution equal to the stored share changes nothing (a replay does not double-count);
otherwise the old share is retracted and the new one counted, and the window's
`SmsMetricsWindow` is produced again, once per batch. A batch is folded by
`fold_contributions` (pure apart from the injected `WindowStore` and the watermarks it
advances), written by `write_windows` and acked once the broker holds every record it caused.
The expiry timer deletes closed windows and their shares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, NamedTuple, Protocol, TypeVar

import faust

from pipeline.agents.liveness import Telemetry, guarded
from pipeline.agents.metrics.board import board_for, publish_gauges
from pipeline.agents.metrics.stage import (
    BATCH_MAX,
    BATCH_WITHIN_S,
    EXPIRY_INTERVAL_S,
    BatchOutput,
    StageOutput,
    stored_facts,
)
from pipeline.core.metrics import (
    Contribution,
    MetricFact,
    Watermarks,
    WindowAccumulator,
    WindowKey,
    WindowPolicy,
    apply_share,
    epoch_us,
    from_epoch_us,
    window_record,
)
from pipeline.kafka.batches import event_batches
from pipeline.kafka.produce import PartitionBatches
from pipeline.kafka.tables import ROCKSDB_OPTIONS, bind_event, sweep
from pipeline.records import SmsMetricsWindow
from pipeline.topics import metrics_key

if TYPE_CHECKING:
    from pipeline.agents.app import Streams

__all__ = [
    "WINDOWS_AGENT",
    "WINDOWS_TABLE",
    "ShareTouch",
    "WindowSlot",
    "WindowStore",
    "WindowsBatch",
    "accumulator_key",
    "entry_expired",
    "fold_contributions",
    "mark_key",
    "register_windows",
    "share_key",
    "share_value",
    "stored_accumulator",
    "stored_watermark",
    "write_windows",
]

WINDOWS_AGENT = "metrics-windows"
WINDOWS_TABLE = "metrics-windows"

E = TypeVar("E")
E_contra = TypeVar("E_contra", contravariant=True)


def share_key(window: str, owner: str) -> bytes:
    """Table key of an owner's share of a window (`window`: an encoded `WindowKey`)."""
    return f"c|{window}|{owner}".encode()


def accumulator_key(window: str) -> bytes:
    """Table key of a window's accumulator."""
    return f"w|{window}".encode()


def mark_key(partition: int) -> bytes:
    """Table key of a source partition's watermark."""
    return f"m|{partition}".encode()


@dataclass(slots=True)
class ShareTouch(Generic[E]):
    """One owner's share of one window, touched by a batch: the facts before the batch and after
    it, the event (and partition) that last changed it, and the encoded window (stored with the
    share: the expiry timer reads it). Updated in place within the batch."""

    event: E
    partition: int
    before: tuple[MetricFact, ...]
    after: tuple[MetricFact, ...]
    window: str


@dataclass(slots=True)
class WindowSlot(Generic[E]):
    """One window changed by a batch: its accumulator (updated in place, share by share) and the
    event (and partition) that last changed it."""

    event: E
    partition: int
    accumulator: WindowAccumulator


class WindowsBatch(NamedTuple, Generic[E]):
    """What `fold_contributions` made of a batch."""

    shares: dict[bytes, ShareTouch[E]]  # by `share_key`
    slots: dict[WindowKey, WindowSlot[E]]  # the windows whose accumulator changed
    last: dict[int, E]  # each partition's last event (its watermark is written with it)
    too_late: int  # facts dropped: their window had closed


class WindowStore(Protocol[E_contra]):
    """What `fold_contributions` reads from the table, each in the given event's partition."""

    def share(self, event: E_contra, key: bytes) -> tuple[MetricFact, ...]:
        """The stored share under `key` (`share_key`); () when there is none."""

    def accumulator(self, event: E_contra, window: str) -> WindowAccumulator:
        """The stored accumulator of `window`; an empty one when there is none."""

    def watermark(self, event: E_contra, partition: int) -> datetime | None:
        """The stored watermark of `partition`, if any."""


def fold_contributions(
    items: Iterable[tuple[E, int, Contribution]],
    store: WindowStore[E],
    watermarks: Watermarks,
    policy: WindowPolicy,
) -> WindowsBatch[E]:
    """Apply a batch of `(event, partition, contribution)` to per-window accumulators.

    Each share and accumulator is read once per batch, with its first event. The watermark of
    a partition is read from `store` until known, closes windows event by event and advances
    with every accepted fact (so a later event of the batch may find its window closed).
    """
    shares: dict[bytes, ShareTouch[E]] = {}
    slots: dict[WindowKey, WindowSlot[E]] = {}
    last: dict[int, E] = {}
    too_late = 0
    for event, partition, c in items:
        last[partition] = event
        if watermarks.largest(partition) is None:
            stored = store.watermark(event, partition)
            if stored is not None:
                watermarks.advance(partition, stored)
        if policy.closed(c.window, watermarks.now(partition)):
            too_late += len(c.facts)
            continue
        for f in c.facts:
            watermarks.advance(partition, f.at)
        window = c.window.encode()
        key = share_key(window, c.owner)
        share = shares.get(key)
        if share is None:
            before = store.share(event, key)
            share = shares[key] = ShareTouch(event, partition, before, before, window)
        if share.after == c.facts:
            continue  # a redelivered (or unchanged) share changes nothing
        slot = slots.get(c.window)
        if slot is None:
            slot = slots[c.window] = WindowSlot(event, partition, store.accumulator(event, window))
        apply_share(slot.accumulator, share.after, c.facts)
        share.event, share.partition, share.after = event, partition, c.facts
        slot.event, slot.partition = event, partition
    return WindowsBatch(shares, slots, last, too_late)


def share_value(share: ShareTouch[Any]) -> dict[str, Any] | None:
    """The ``c|`` value after a batch: partition (for the expiry's tombstone), window (the expiry
    reads it) and facts; None (delete) when the owner left the window."""
    if not share.after:
        return None
    return {"p": share.partition, "w": share.window, "f": [f.to_dict() for f in share.after]}


def write_windows(
    batch: WindowsBatch[E],
    out: StageOutput[E],
    watermarks: Watermarks,
    policy: WindowPolicy,
    encode: Callable[[SmsMetricsWindow], bytes],
) -> list[SmsMetricsWindow]:
    """Write a folded batch: changed shares, changed accumulators with their window's record
    (`encode`d, keyed by `metrics_key`), and each partition's watermark. Returns the records."""
    for key, share in batch.shares.items():
        if share.before != share.after:
            out.write(share.event, key, share_value(share))
    records: list[SmsMetricsWindow] = []
    for window, slot in batch.slots.items():
        acc = slot.accumulator
        out.write(
            slot.event, accumulator_key(window.encode()), {"p": slot.partition, "a": acc.to_dict()}
        )
        record = window_record(window, acc, policy.sizes)
        out.emit(metrics_key(window.window, window.start, window.login), encode(record))
        records.append(record)
    for partition, event in batch.last.items():
        at = watermarks.largest(partition)
        if at is not None:
            out.write(event, mark_key(partition), {"p": partition, "t": epoch_us(at)})
    return records


def entry_expired(key: bytes, value: Any, watermarks: Watermarks, policy: WindowPolicy) -> bool:
    """Whether a table entry belongs to a closed window (a watermark never expires)."""
    kind, _, rest = bytes(key).decode().partition("|")
    if kind == "m":
        return False
    window = rest if kind == "w" else value["w"]
    return policy.closed(WindowKey.decode(window), watermarks.now(int(value["p"])))


def stored_accumulator(value: Any) -> WindowAccumulator:
    """The accumulator of a ``w|`` table value (None: an empty one)."""
    return WindowAccumulator() if value is None else WindowAccumulator.from_dict(value["a"])


def stored_watermark(value: Any) -> datetime | None:
    """The watermark of an ``m|`` table value (None: not known yet)."""
    return None if value is None else from_epoch_us(int(value["t"]))


class _TableStore:
    """`WindowStore` over the faust table: each read in its event's partition."""

    __slots__ = ("table",)

    def __init__(self, table: Any) -> None:
        self.table = table

    def share(self, event: Any, key: bytes) -> tuple[MetricFact, ...]:
        bind_event(event)
        return stored_facts(self.table.get(key))

    def accumulator(self, event: Any, window: str) -> WindowAccumulator:
        bind_event(event)
        return stored_accumulator(self.table.get(accumulator_key(window)))

    def watermark(self, event: Any, partition: int) -> datetime | None:
        bind_event(event)
        return stored_watermark(self.table.get(mark_key(partition)))


def register_windows(
    app: faust.App,
    streams: Streams,
    contributions_topic: Any,
    policy: WindowPolicy,
    partitions: int,
    telemetry: Telemetry,
) -> None:
    """Attach stage 2 (agent, `metrics-windows` table, expiry timer) to `app`."""
    telemetry.watch(WINDOWS_AGENT, [contributions_topic.get_topic_name()])
    table = app.Table(
        WINDOWS_TABLE,
        default=None,
        partitions=partitions,
        key_type=bytes,
        help="per window: accumulator (w|) and each owner's contribution (c|)",
        options=ROCKSDB_OPTIONS,
    )
    out_topic = streams["metrics.sms"].get_topic_name()
    encode = streams.codec.codec.encode
    board = board_for(app)
    store = _TableStore(table)
    watermarks = Watermarks()

    async def body(stream: Any) -> None:
        async for events in event_batches(stream, BATCH_MAX, BATCH_WITHIN_S):
            items = ((ev, ev.message.partition, Contribution.from_bytes(ev.value)) for ev in events)
            batch = fold_contributions(items, store, watermarks, policy)
            batches = PartitionBatches.for_app(app)
            output = BatchOutput(table, out_topic, batches)
            records = write_windows(batch, output, watermarks, policy, encode)
            for record in records:
                board.update(record)
                publish_gauges(telemetry, board, record)
            await batches.send_and_wait()  # before the events are acked (next batch asked for)
            telemetry.batch_done(WINDOWS_AGENT, len(events), len(records))
            telemetry.metrics_too_late.inc(batch.too_late)

    app.agent(contributions_topic, name=f"pipeline.{WINDOWS_AGENT}")(
        guarded(WINDOWS_AGENT, body, telemetry)
    )

    @app.timer(EXPIRY_INTERVAL_S, name=f"pipeline.{WINDOWS_AGENT}.expiry")  # type: ignore[untyped-decorator]
    async def expire_windows() -> None:
        if app.rebalancing:
            return
        victims = await sweep(
            table, lambda key, value: entry_expired(key, value, watermarks, policy)
        )
        telemetry.metrics_windows_expired.inc(sum(key.startswith(b"w|") for key in victims))
