"""The two metrics stages' batch folds and writes, without a broker: stages == batch recomputation.

The fakes stand for each stage's table (values round-tripped through JSON, as the store and the
changelog hold them) and output topic; the folds and writes are the agents' own.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import weakref
import zlib
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from pipeline.agents.metrics import WindowBoard, board_for
from pipeline.agents.metrics.facts import (
    fold_facts,
    owner_expired,
    owner_value,
    write_facts,
)
from pipeline.agents.metrics.stage import stored_facts
from pipeline.agents.metrics.windows import (
    accumulator_key,
    entry_expired,
    fold_contributions,
    mark_key,
    share_key,
    stored_accumulator,
    stored_watermark,
    write_windows,
)
from pipeline.agents.optouts import optout_for
from pipeline.core.lifecycle import LifecycleState, apply, to_record
from pipeline.core.metrics import (
    Contribution,
    MetricFact,
    Watermarks,
    WindowAccumulator,
    WindowKey,
    WindowPolicy,
    batch_metrics_from_events,
    epoch_us,
    window_start,
)
from pipeline.records import (
    CallEvent,
    ClickCallback,
    IncomingSms,
    SendRequest,
    SendResult,
    SmsLifecycle,
    SmsMetricsWindow,
    StatusCallback,
)
from tests.agents.streamdata import make_events, shuffled_with_duplicates

BASE = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
FAR = datetime(2100, 1, 1, tzinfo=UTC)  # the clock: never caps a watermark in these tests
LIFECYCLE_TYPES = (SendRequest, SendResult, StatusCallback, ClickCallback)
POLICY = WindowPolicy()
PARTITIONS = 3


def _json(value: Any) -> Any:
    return None if value is None else orjson.loads(orjson.dumps(value))


class OwnersTable:
    """Stands for `metrics-owners` and the contributions topic."""

    def __init__(self) -> None:
        self.data: dict[bytes, Any] = {}
        self.sent: list[tuple[bytes, bytes]] = []
        self.loads = 0
        self.writes = 0

    def load(self, event: object, owner: str) -> tuple[MetricFact, ...]:
        self.loads += 1
        return stored_facts(self.data.get(owner.encode()))

    def write(self, event: object, key: bytes, value: Any) -> None:
        self.writes += 1
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = _json(value)

    def emit(self, key: bytes, value: bytes) -> None:
        self.sent.append((key, value))

    def run(self, records: list[object], batch: int, partition: int = 0) -> None:
        for i in range(0, len(records), batch):
            items = [(n, partition, r) for n, r in enumerate(records[i : i + batch])]
            write_facts(fold_facts(items, self.load), self, POLICY)


class WindowsTable:
    """Stands for `metrics-windows` and `metrics.sms` (latest record per key)."""

    def __init__(self) -> None:
        self.data: dict[bytes, Any] = {}
        self.published: dict[bytes, SmsMetricsWindow] = {}
        self.loads: Counter[str] = Counter()
        self.writes: list[bytes] = []

    def share(self, event: object, key: bytes) -> tuple[MetricFact, ...]:
        self.loads["share"] += 1
        return stored_facts(self.data.get(key))

    def accumulator(self, event: object, window: str) -> WindowAccumulator:
        self.loads["accumulator"] += 1
        return stored_accumulator(self.data.get(accumulator_key(window)))

    def watermark(self, event: object, partition: int) -> datetime | None:
        self.loads["watermark"] += 1
        return stored_watermark(self.data.get(mark_key(partition)))

    def write(self, event: object, key: bytes, value: Any) -> None:
        self.writes.append(key)
        if value is None:
            self.data.pop(key, None)
        else:
            self.data[key] = _json(value)

    def emit(self, key: bytes, value: Any) -> None:
        self.published[key] = value  # `encode` below leaves the record as it is

    def run(
        self, items: list[tuple[object, int, Contribution]], watermarks: Watermarks
    ) -> list[SmsMetricsWindow]:
        batch = fold_contributions(items, self, watermarks, POLICY)
        self.too_late = batch.too_late
        return write_windows(batch, self, watermarks, POLICY, encode=lambda r: r)  # type: ignore[arg-type,return-value]

    def nonzero(self) -> dict[WindowKey, SmsMetricsWindow]:
        skip = {"window_start", "window_end", "login", "window"}
        return {
            WindowKey(r.window, r.window_start, r.login): r
            for r in self.published.values()
            if any(v for k, v in dataclasses.asdict(r).items() if k not in skip)
        }


def _lifecycle_stream(events: list[object]) -> list[object]:
    """What the correlate agent emits for a stream: every changed record, in order."""
    states: dict[str, LifecycleState] = {}
    out: list[object] = []
    for e in events:
        if isinstance(e, LIFECYCLE_TYPES) and e.id_sms_api:
            before = states.get(e.id_sms_api)
            after = states[e.id_sms_api] = apply(before, e)
            if before is None or to_record(before) != to_record(after):
                out.append(to_record(after))
        elif not isinstance(e, LIFECYCLE_TYPES):
            out.append(e)
    return out


def _run_stages(
    sources: list[object], rng: random.Random, batch: int
) -> tuple[OwnersTable, WindowsTable]:
    owners = OwnersTable()
    owners.run(sources, batch)
    # Stage 2 reads each partition of the contributions topic in order (keyed by window), in
    # batches mixing partitions; some batches are delivered again (a crash before the ack).
    queues: dict[int, list[Contribution]] = {p: [] for p in range(PARTITIONS)}
    for key, value in owners.sent:
        queues[zlib.crc32(key) % PARTITIONS].append(Contribution.from_bytes(value))
    windows, watermarks = WindowsTable(), Watermarks(clock=lambda: FAR)
    while any(queues.values()):
        items: list[tuple[object, int, Contribution]] = []
        for _ in range(rng.randint(1, batch)):
            open_partitions = [p for p, q in queues.items() if q]
            if not open_partitions:
                break
            p = rng.choice(open_partitions)
            items.append((len(items), p, queues[p].pop(0)))
        for _ in range(2 if rng.random() < 0.3 else 1):
            windows.run(items, watermarks)
    return owners, windows


@pytest.mark.parametrize(("seed", "batch"), [(1, 1), (2, 7), (3, 50), (4, 1000)])
def test_stages_equal_batch(seed: int, batch: int) -> None:
    events = make_events(80, seed=seed, base=BASE)
    optouts = [o for o in (optout_for(e) for e in events) if o is not None]
    stream = shuffled_with_duplicates([*events, *optouts], seed=seed + 10, dup_rate=0.4)
    sources = _lifecycle_stream(stream)
    expected = batch_metrics_from_events([*events, *optouts])
    _owners, windows = _run_stages(sources, random.Random(seed), batch)
    got = windows.nonzero()
    assert got == expected
    assert any(w.delivered for w in got.values()) and any(w.optouts for w in got.values())
    # at-least-once: after a crash, a suffix of the sources is consumed again
    cut = random.Random(seed).randrange(len(sources))
    _owners, replayed = _run_stages(sources + sources[cut:], random.Random(seed), batch)
    assert replayed.nonzero() == expected


def _lifecycle(mid: str, requested_s: int, state: str = "REQUESTED") -> SmsLifecycle:
    at = BASE + timedelta(seconds=requested_s)
    return SmsLifecycle(mid, state, at, "alice", "+33612345678", requested_at=at)


def _incoming(event_id: str, seconds: int) -> IncomingSms:
    at = BASE + timedelta(seconds=seconds)
    return IncomingSms(event_id, "+33612345678", "hi", at, "{}", device_identification="alice")


def test_fold_facts_loads_once_per_owner_and_counts_what_is_no_fact_source() -> None:
    owners = OwnersTable()
    records: list[object] = [
        _lifecycle("m1", 0),
        _incoming("i1", 5),
        _lifecycle("m1", 30),  # the message's facts move: replaced, not merged
        "not a record",
        CallEvent("c1", "INCOMING", "+33612345678", BASE, "{}"),  # a source, but no fact
    ]
    batch = fold_facts([(n, n % 2, r) for n, r in enumerate(records)], owners.load)
    assert owners.loads == 2 and batch.skipped == 1
    assert set(batch.touched) == {"sms:m1", "event:incoming_sms:i1"}
    touch = batch.touched["sms:m1"]
    assert (touch.event, touch.partition, touch.before) == (2, 0, ())
    assert [f.at for f in touch.after] == [BASE + timedelta(seconds=30)]
    assert batch.latest == {0: BASE + timedelta(seconds=30), 1: BASE + timedelta(seconds=5)}
    value = owner_value(touch)
    assert (
        value is not None and value["p"] == 0 and [f["id"] for f in value["f"]] == ["requested:m1"]
    )


def test_a_duplicate_event_writes_and_sends_nothing() -> None:
    owners = OwnersTable()
    owners.run([_incoming("i1", 5)], batch=10)
    assert (owners.writes, len(owners.sent)) == (1, 4)  # 1m and 1h windows, alice's and "*"
    stored = dict(owners.data)
    owners.run([_incoming("i1", 5)], batch=10)
    assert (owners.writes, len(owners.sent)) == (1, 4) and owners.data == stored


def test_an_owner_left_without_facts_is_deleted_and_its_windows_emptied() -> None:
    owners = OwnersTable()
    owners.run([_lifecycle("m1", 0)], batch=10)
    empty = SmsLifecycle("m1", "REQUESTED", BASE, "alice")
    owners.run([empty], batch=10)
    assert owners.data == {}
    assert [Contribution.from_bytes(v).facts for _, v in owners.sent[-4:]] == [()] * 4


def _contribution(owner: str, seconds: int, window: str = "1m") -> Contribution:
    fact = MetricFact(
        "incoming_sms", f"incoming_sms:{owner}", "alice", BASE + timedelta(seconds=seconds)
    )
    key = WindowKey(window, window_start(fact.at, POLICY.sizes[window]), "alice")
    return Contribution(key, f"event:{fact.fact_id}", (fact,))


def test_a_redelivered_contribution_changes_nothing() -> None:
    windows, watermarks = WindowsTable(), Watermarks(clock=lambda: FAR)
    c = _contribution("i1", 5)
    first = windows.run([(0, 1, c)], watermarks)
    assert [r.incoming_sms for r in first] == [1]
    assert windows.writes == [
        share_key(c.window.encode(), c.owner),
        accumulator_key(c.window.encode()),
        mark_key(1),
    ]
    stored = dict(windows.data)
    windows.writes.clear()
    assert windows.run([(0, 1, c)], watermarks) == []
    assert windows.writes == [mark_key(1)] and windows.data == stored
    assert windows.data[mark_key(1)] == {"p": 1, "t": epoch_us(c.facts[0].at)}


def test_shares_and_windows_are_read_once_per_batch_and_updated_in_place() -> None:
    windows, watermarks = WindowsTable(), Watermarks(clock=lambda: FAR)
    a, b = _contribution("i1", 5), _contribution("i2", 6)
    gone = Contribution(a.window, a.owner, ())
    records = windows.run([(0, 0, a), (1, 0, b), (2, 0, gone)], watermarks)
    assert windows.loads == Counter({"share": 2, "accumulator": 1, "watermark": 1})
    assert [r.incoming_sms for r in records] == [1]
    assert share_key(a.window.encode(), a.owner) not in windows.data  # deleted: its share left
    assert windows.data[share_key(b.window.encode(), b.owner)]["w"] == b.window.encode()


def test_a_contribution_to_a_closed_window_is_dropped_and_counted() -> None:
    windows = WindowsTable()
    # a restarted worker: the partition's watermark comes from the table
    far_on = BASE + timedelta(seconds=60 + POLICY.grace_s + 1)
    windows.data[mark_key(0)] = {"p": 0, "t": epoch_us(far_on)}
    watermarks = Watermarks(clock=lambda: FAR)
    late, hour = _contribution("i1", 5), _contribution("i1", 5, window="1h")
    records = windows.run([(0, 0, late), (1, 0, hour), (2, 0, late)], watermarks)
    assert windows.too_late == 2 and [r.window for r in records] == ["1h"]
    assert windows.loads["watermark"] == 1 and watermarks.largest(0) == far_on


def test_expiry_picks_closed_windows_and_owners_of_closed_windows_only() -> None:
    watermarks = Watermarks(clock=lambda: FAR)
    watermarks.advance(0, BASE + timedelta(seconds=60 + POLICY.grace_s + 1))
    c = _contribution("i1", 5)
    window = c.window.encode()
    assert entry_expired(accumulator_key(window), {"p": 0, "a": {}}, watermarks, POLICY)
    assert entry_expired(share_key(window, c.owner), {"p": 0, "w": window}, watermarks, POLICY)
    assert not entry_expired(mark_key(0), {"p": 0, "t": 0}, watermarks, POLICY)
    assert not entry_expired(accumulator_key(window), {"p": 1, "a": {}}, watermarks, POLICY)
    facts = [c.facts[0].to_dict()]
    # the owner's 1h window is still open
    assert not owner_expired({"p": 0, "f": facts}, watermarks, POLICY)
    watermarks.advance(0, BASE + timedelta(seconds=3600 + POLICY.grace_s + 1))
    assert owner_expired({"p": 0, "f": facts}, watermarks, POLICY)
    assert not owner_expired({"p": 2, "f": facts}, watermarks, POLICY)  # no watermark there yet


def test_board_keeps_latest_windows_most_recent_first() -> None:
    board = WindowBoard(depth=3)
    for minute in range(5):
        start = BASE + timedelta(minutes=minute)
        board.update(SmsMetricsWindow(start, start + timedelta(minutes=1), "*", requested=minute))
    latest = board.latest("1m", "*")
    assert [w.requested for w in latest] == [4, 3, 2]
    assert board.logins("1m") == ["*"] and board.latest("1h", "*") == []


def test_board_is_per_app_and_forgotten_with_it() -> None:
    class App:
        pass

    first, second = App(), App()
    assert board_for(first) is board_for(first)
    assert board_for(first) is not board_for(second)
    board_for(first).update(SmsMetricsWindow(BASE, BASE + timedelta(minutes=1), "*"))
    board = weakref.ref(board_for(first))
    del first
    gc.collect()
    assert board() is None  # no process-wide registry keeps boards of apps gone
