"""Metrics agents: lifecycles and events → tumbling windows per login → `metrics.sms`.

Why two stages. A window (size, start, login) sums facts of many messages, and those messages
live in every partition of `sms.lifecycle` (keyed by `id_sms_api`); incoming SMS, opt-outs and
calls are keyed by phone. A table partitioned like the sources would hold a PART of each window
per worker, and two workers would publish competing partial records under one key. So:

1. `metrics-facts` consumes `sms.lifecycle`, `callbacks.incoming-sms`, `sms.optouts` and
   `callbacks.calls`, keeps per OWNER (a message, or one event) its current facts
   (`pipeline.core.metrics.facts_from` / `resolve_facts`) in the table `metrics-owners` —
   co-partitioned with its sources, as an owner's records always share a key — and, when an
   owner's facts change, sends for every window whose share changed a CONTRIBUTION
   ``(window, owner, facts in that window)`` to the internal topic
   ``<app id>-metrics-contributions``, keyed by the window. One extra hop, on purpose.
2. `metrics-windows` consumes that topic — every contribution to one window reaches one
   partition, hence one worker — and keeps in the table `metrics-windows` each owner's latest
   contribution per window (``c|…``) and the window's accumulator (``w|…``). A contribution
   equal to the stored one changes nothing, so a replay after a crash does not double-count
   (idempotent); otherwise the old share is retracted and the new one added, and the window's
   `SmsMetricsWindow` is produced again (once per batch). The latest record per key is the truth.

Time: windows close at end + `metrics_grace_seconds` before the watermark = the largest fact
time seen by that partition (capped at the wall clock). A contribution to a closed window is
dropped and counted (`ardary_metrics_facts_too_late`); a timer deletes closed windows and
their contributions (tombstones in the changelog), and stage 1 forgets owners whose facts all
lie in closed windows. A window whose facts were all retracted is published once more with
zero counts (not deleted), so a reader sees that it emptied.
With several workers both stages are correct: stage 1 state is per owner (never split), stage 2
state is per window (never split). The worker's `/metrics/sms` and gauges show the windows THIS
worker computed (all of them with one worker); `metrics.sms` has every window.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from pipeline.agents.liveness import Telemetry, guarded, telemetry_for
from pipeline.core.metrics import (
    WINDOWS,
    MetricFact,
    WindowAccumulator,
    WindowKey,
    facts_from,
    owner_of,
    resolve_facts,
    window_closed,
    window_keys,
)
from pipeline.kafka.tables import ROCKSDB_OPTIONS, bind_event, sweep, table_put
from pipeline.records import CallEvent, IncomingSms, OptOut, SmsLifecycle, SmsMetricsWindow
from pipeline.settings import Settings
from pipeline.topics import metrics_key

__all__ = [
    "CONTRIBUTIONS_TOPIC",
    "FACT_SOURCES",
    "Contribution",
    "WindowBoard",
    "apply_share",
    "board_for",
    "contributions",
    "owner_facts",
    "register",
    "window_record",
]

log = logging.getLogger(__name__)

FACTS_AGENT = "metrics-facts"
WINDOWS_AGENT = "metrics-windows"
FACT_SOURCES = ("sms.lifecycle", "callbacks.incoming-sms", "sms.optouts", "callbacks.calls")
CONTRIBUTIONS_TOPIC = "metrics-contributions"
BATCH_MAX = 1000
BATCH_WITHIN_S = 0.05
EXPIRY_INTERVAL_S = 30.0
BOARD_DEPTH = 120  # latest windows kept per (size, login) for /metrics/sms
_FACT_TYPES = (SmsLifecycle, IncomingSms, OptOut, CallEvent)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(ts: datetime) -> int:
    return (ts - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Contribution:
    """One owner's facts inside one window (empty: the owner left that window)."""

    window: WindowKey
    owner: str
    facts: tuple[MetricFact, ...]

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {"w": self.window.encode(), "o": self.owner, "f": [f.to_dict() for f in self.facts]}
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> Contribution:
        d = orjson.loads(data)
        return cls(WindowKey.decode(d["w"]), d["o"], tuple(MetricFact.from_dict(f) for f in d["f"]))


def owner_facts(
    current: Sequence[MetricFact], record: Any
) -> tuple[str, tuple[MetricFact, ...]] | None:
    """The owner a record speaks for and that owner's facts after it; None if it states none.

    A lifecycle record REPLACES its message's facts (it carries all of them); an event's facts
    merge per `fact_id` (duplicates keep the smallest, whatever their order).
    """
    incoming = facts_from(record)
    if isinstance(record, SmsLifecycle):
        return f"sms:{record.id_sms_api}", tuple(incoming)
    if not incoming:
        return None
    return owner_of(incoming[0]), resolve_facts(current, incoming, replace=False)


def _by_window(
    facts: Iterable[MetricFact], sizes: Mapping[str, int]
) -> dict[WindowKey, tuple[MetricFact, ...]]:
    grouped: dict[WindowKey, list[MetricFact]] = defaultdict(list)
    for f in facts:
        for key in window_keys(f, sizes):
            grouped[key].append(f)
    return {k: tuple(sorted(v, key=lambda f: f.fact_id)) for k, v in grouped.items()}


def contributions(
    owner: str,
    before: Sequence[MetricFact],
    after: Sequence[MetricFact],
    sizes: Mapping[str, int] = WINDOWS,
) -> list[Contribution]:
    """The windows whose share of `owner` changed from `before` to `after`, with the new share."""
    old, new = _by_window(before, sizes), _by_window(after, sizes)
    return [
        Contribution(key, owner, new.get(key, ()))
        for key in sorted(old.keys() | new.keys())
        if new.get(key, ()) != old.get(key, ())
    ]


def apply_share(
    acc: WindowAccumulator, before: Sequence[MetricFact], after: Sequence[MetricFact]
) -> None:
    """Replace an owner's share of a window: retract `before`, count `after`."""
    for f in before:
        acc.remove(f)
    for f in after:
        acc.add(f)


def window_record(
    key: WindowKey, acc: WindowAccumulator, sizes: Mapping[str, int]
) -> SmsMetricsWindow:
    """The `SmsMetricsWindow` of one window."""
    end = key.start + timedelta(seconds=sizes[key.window])
    return acc.to_record(key.start, end, key.login, key.window)


@dataclass
class WindowBoard:
    """The latest windows this worker published, for `/metrics/sms` and the Prometheus gauges."""

    depth: int = BOARD_DEPTH
    windows: dict[tuple[str, str], dict[datetime, SmsMetricsWindow]] = field(default_factory=dict)

    def update(self, record: SmsMetricsWindow) -> None:
        slot = self.windows.setdefault((record.window, record.login), {})
        slot[record.window_start] = record
        if len(slot) > self.depth:
            for start in sorted(slot)[: len(slot) - self.depth]:
                del slot[start]

    def latest(self, window: str, login: str, limit: int = 60) -> list[SmsMetricsWindow]:
        """Most recent first."""
        slot = self.windows.get((window, login), {})
        return [slot[s] for s in sorted(slot, reverse=True)[:limit]]

    def logins(self, window: str) -> list[str]:
        return sorted(login for (w, login) in self.windows if w == window)


_BOARDS: dict[int, WindowBoard] = {}


def board_for(app: Any) -> WindowBoard:
    """The window board of `app` (created on first use)."""
    board = _BOARDS.get(id(app))
    if board is None:
        board = _BOARDS[id(app)] = WindowBoard()
    return board


_GAUGE_FIELDS = (
    "requested",
    "submitted",
    "rejected",
    "delivered",
    "clicks",
    "unique_clicks",
    "incoming_sms",
    "optouts",
    "calls_missed",
    "delivery_rate",
    "click_through_rate",
    "p50_delivery_ms",
    "p95_delivery_ms",
)


def _publish_gauges(telemetry: Telemetry, board: WindowBoard, record: SmsMetricsWindow) -> None:
    latest = board.latest(record.window, record.login, 1)
    if not latest or latest[0].window_start != record.window_start:
        return  # an older window was updated late: the gauges show the newest one
    for name in _GAUGE_FIELDS:
        value = getattr(record, name)
        telemetry.sms_window.labels(record.window, record.login, name).set(
            float("nan") if value is None else float(value)
        )


class _Watermarks:
    """Largest fact time per partition (capped at the wall clock when read)."""

    def __init__(self) -> None:
        self.by_partition: dict[int, datetime] = {}

    def advance(self, partition: int, at: datetime) -> None:
        have = self.by_partition.get(partition)
        if have is None or at > have:
            self.by_partition[partition] = at

    def get(self, partition: int) -> datetime | None:
        have = self.by_partition.get(partition)
        return None if have is None else min(have, datetime.now(UTC))


def register(app: Any, streams: Any, settings: Settings) -> None:
    """Attach both metrics stages (see the module docstring) and their expiry timers."""
    telemetry = telemetry_for(app)
    partitions = settings.pipeline_partitions
    grace = float(settings.metrics_grace_seconds)
    sizes = dict(WINDOWS)
    internal = app.topic(
        f"{app.conf.id}-{CONTRIBUTIONS_TOPIC}",
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        internal=True,
    )
    _register_facts(app, streams, internal, partitions, sizes, grace, telemetry)
    _register_windows(app, streams, internal, partitions, sizes, grace, telemetry)


def _closed(key: WindowKey, sizes: Mapping[str, int], wm: datetime | None, grace: float) -> bool:
    return wm is not None and window_closed(key.start, sizes[key.window], wm, grace)


def _register_facts(
    app: Any,
    streams: Any,
    internal: Any,
    partitions: int,
    sizes: Mapping[str, int],
    grace: float,
    telemetry: Telemetry,
) -> None:
    names = [streams[name].get_topic_name() for name in FACT_SOURCES]
    telemetry.watch(FACTS_AGENT, names)
    source = app.topic(*names, key_type=bytes, key_serializer="raw", value_serializer=streams.codec)
    owners = app.Table(
        "metrics-owners",
        default=None,
        partitions=partitions,
        key_type=bytes,
        help="metric facts per owner (message or event)",
        options=ROCKSDB_OPTIONS,
    )
    out = internal.get_topic_name()
    watermarks = _Watermarks()

    def load(event: Any, owner: str) -> tuple[MetricFact, ...]:
        bind_event(event)
        value = owners.get(owner.encode())
        return () if value is None else tuple(MetricFact.from_dict(d) for d in value["f"])

    async def body(stream: Any) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            touched: dict[str, list[Any]] = {}  # owner -> [event, before, after]
            skipped = 0
            for ev in events:
                record = ev.value
                if not isinstance(record, _FACT_TYPES):
                    skipped += 1
                    continue
                owner = _owner_key(record)
                if owner is None:
                    continue  # e.g. an answered call or an opt-in: no countable fact
                entry = touched.get(owner)
                current = entry[2] if entry is not None else load(ev, owner)
                resolved = owner_facts(current, record)
                if resolved is None:
                    continue
                after = resolved[1]
                if entry is None:
                    touched[owner] = [ev, current, after]
                else:
                    entry[0], entry[2] = ev, after
                for f in after:
                    watermarks.advance(ev.message.partition, f.at)
            sent = 0
            deliveries: list[Any] = []
            for owner, (ev, before, after) in touched.items():
                if set(before) == set(after):
                    continue
                okey = owner.encode()
                value = (
                    {
                        "p": ev.message.partition,
                        "f": [f.to_dict() for f in sorted(after, key=lambda f: f.fact_id)],
                    }
                    if after
                    else None
                )
                deliveries.append(await table_put(app, owners, ev, okey, value))
                for c in contributions(owner, before, after, sizes):
                    deliveries.append(
                        await app.producer.send(
                            out, c.window.encode().encode(), c.to_bytes(), None, None, None
                        )
                    )
                    sent += 1
            await asyncio.gather(*deliveries)  # outputs acknowledged before offsets commit
            telemetry.batch_done(FACTS_AGENT, len(events), sent)
            if skipped:
                telemetry.events_skipped.labels(FACTS_AGENT, "not_a_fact_source").inc(skipped)

    app.agent(source, name=f"pipeline.{FACTS_AGENT}")(guarded(FACTS_AGENT, body, telemetry))

    @app.timer(EXPIRY_INTERVAL_S, name=f"pipeline.{FACTS_AGENT}.expiry")  # type: ignore[untyped-decorator]
    async def expire_owners() -> None:
        if app.rebalancing:
            return

        def victim(key: bytes, value: Any) -> bool:
            wm = watermarks.get(int(value["p"]))
            facts = [MetricFact.from_dict(d) for d in value["f"]]
            return wm is not None and all(
                _closed(k, sizes, wm, grace) for f in facts for k in window_keys(f, sizes)
            )

        await sweep(owners, victim)


def _owner_key(record: Any) -> str | None:
    """The owner of a record when it is known before reading state (always, today)."""
    if isinstance(record, SmsLifecycle):
        return f"sms:{record.id_sms_api}"
    facts = facts_from(record)
    return owner_of(facts[0]) if facts else None


def _register_windows(
    app: Any,
    streams: Any,
    internal: Any,
    partitions: int,
    sizes: Mapping[str, int],
    grace: float,
    telemetry: Telemetry,
) -> None:
    telemetry.watch(WINDOWS_AGENT, [internal.get_topic_name()])
    table = app.Table(
        "metrics-windows",
        default=None,
        partitions=partitions,
        key_type=bytes,
        help="per window: accumulator (w|) and each owner's contribution (c|)",
        options=ROCKSDB_OPTIONS,
    )
    out = streams["metrics.sms"].get_topic_name()
    codec = streams.codec.codec
    board = board_for(app)
    watermarks = _Watermarks()

    def watermark(ev: Any) -> datetime | None:
        p = ev.message.partition
        if p not in watermarks.by_partition:
            bind_event(ev)
            stored = table.get(f"m|{p}".encode())
            if stored is not None:
                watermarks.advance(p, _EPOCH + timedelta(microseconds=int(stored["t"])))
        return watermarks.get(p)

    async def body(stream: Any) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN_S):
            shares: dict[bytes, list[Any]] = {}  # c-key -> [event, before, after, window]
            accs: dict[WindowKey, list[Any]] = {}  # window -> [event, accumulator]
            deliveries: list[Any] = []
            too_late = 0
            for ev in events:
                c = Contribution.from_bytes(ev.value)
                wm = watermark(ev)
                if _closed(c.window, sizes, wm, grace):
                    too_late += len(c.facts)
                    continue
                for f in c.facts:
                    watermarks.advance(ev.message.partition, f.at)
                ckey = f"c|{c.window.encode()}|{c.owner}".encode()
                share = shares.get(ckey)
                if share is None:
                    bind_event(ev)
                    stored = table.get(ckey)
                    before = (
                        ()
                        if stored is None
                        else tuple(MetricFact.from_dict(d) for d in stored["f"])
                    )
                    share = shares[ckey] = [ev, before, before, c.window.encode()]
                if share[2] == c.facts:
                    continue
                slot = accs.get(c.window)
                if slot is None:
                    bind_event(ev)
                    stored_acc = table.get(f"w|{c.window.encode()}".encode())
                    acc = (
                        WindowAccumulator()
                        if stored_acc is None
                        else WindowAccumulator.from_dict(stored_acc["a"])
                    )
                    slot = accs[c.window] = [ev, acc]
                apply_share(slot[1], share[2], c.facts)
                share[0], share[2] = ev, c.facts
                slot[0] = ev
            for ckey, (ev, before, after, window_enc) in shares.items():
                if before == after:
                    continue
                share_value = (
                    {"p": ev.message.partition, "w": window_enc, "f": [f.to_dict() for f in after]}
                    if after
                    else None
                )
                deliveries.append(await table_put(app, table, ev, ckey, share_value))
            emitted = 0
            for key, (ev, acc) in accs.items():
                wvalue = {"p": ev.message.partition, "a": acc.to_dict()}
                deliveries.append(
                    await table_put(app, table, ev, f"w|{key.encode()}".encode(), wvalue)
                )
                record = window_record(key, acc, sizes)
                deliveries.append(
                    await app.producer.send(
                        out,
                        metrics_key(key.window, key.start, key.login),
                        codec.encode(record),
                        None,
                        None,
                        None,
                    )
                )
                board.update(record)
                _publish_gauges(telemetry, board, record)
                emitted += 1
            for ev in {ev.message.partition: ev for ev in events}.values():
                p = ev.message.partition
                if p in watermarks.by_partition:
                    mvalue = {"p": p, "t": _us(watermarks.by_partition[p])}
                    deliveries.append(await table_put(app, table, ev, f"m|{p}".encode(), mvalue))
            await asyncio.gather(*deliveries)  # outputs acknowledged before offsets commit
            telemetry.batch_done(WINDOWS_AGENT, len(events), emitted)
            telemetry.metrics_too_late.inc(too_late)

    app.agent(internal, name=f"pipeline.{WINDOWS_AGENT}")(guarded(WINDOWS_AGENT, body, telemetry))

    @app.timer(EXPIRY_INTERVAL_S, name=f"pipeline.{WINDOWS_AGENT}.expiry")  # type: ignore[untyped-decorator]
    async def expire_windows() -> None:
        if app.rebalancing:
            return

        def victim(key: bytes, value: Any) -> bool:
            kind, _, rest = bytes(key).decode().partition("|")
            if kind == "m":
                return False  # a partition's watermark, not a window
            enc = rest if kind == "w" else value["w"]
            return _closed(WindowKey.decode(enc), sizes, watermarks.get(int(value["p"])), grace)

        gone = sum(key.startswith(b"w|") for key in await sweep(table, victim))
        telemetry.metrics_windows_expired.inc(gone)
