"""Tumbling-window SMS metrics as a pure function of de-duplicated facts, streamed or in batch.

Design (exact, not approximate, under duplicates, reordering and replays):
- Every countable thing is a `MetricFact` with a deterministic `fact_id` and an `owner`.
  Per-message facts come from the *lifecycle* record (`SmsLifecycle`), never from raw sends or
  callbacks (clicks carry no login): ``requested`` at `requested_at`; ``submitted`` at
  `submitted_at` (the result's `sent_time`, else `completed_at`); ``rejected`` when the state is
  REJECTED or SUPPRESSED, at `updated_at` (the record has no completion time; for a refused
  message that is when the refusal became known); ``delivered`` at `delivered_at`, carrying the
  time to deliver for the percentiles; ``click`` at `first_click_at`, carrying `click_count`.
  So `clicks` is the sum of the click counts of messages whose FIRST click falls in the window,
  and `unique_clicks` the number of such messages. Per-event facts come from their own records:
  ``incoming_sms`` (IncomingSms, at `date` else `received_at`), ``optout`` (OptOut with
  `opted_out`, at `at`), ``call_missed`` (CallEvent MISSED, at `call_time` else `received_at`);
  their login is the record's `device_identification` (the account's device) / OptOut `login`.
- A fact counts in two windows per size: its login's and ``*`` (only ``*`` without a login).
- The metrics are a function of each owner's CURRENT facts. An owner is a message (its facts
  are those of its latest lifecycle record, which the correlate agent makes order-independent)
  or an event (duplicates of one `event_id` keep the smallest fact, e.g. the earliest
  `received_at`). When an owner's facts change, the old ones are retracted from their windows
  and the new ones added (`MetricsFold`), so a fact that moves, vanishes or repeats never counts
  twice — windows hold only counters and a bounded histogram, not sets of ids.
- `batch_metrics` recomputes the same windows from the facts of the final records; a stream
  folded with `MetricsFold` equals it, except for facts dropped because their window had already
  closed (window end + grace before the watermark), which the fold counts as too late.
- `delivery_rate` = delivered / submitted and `click_through_rate` = unique_clicks / delivered,
  each within the window (None when the divisor is 0; may exceed 1 as the numerator and divisor
  of one message can fall in different windows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, TypeAlias

from pipeline.core.histogram import LatencyHistogram
from pipeline.core.lifecycle import LifecycleEvent, batch_lifecycles, time_to_deliver_ms
from pipeline.records import (
    CallEvent,
    ClickCallback,
    IncomingSms,
    OptOut,
    SendRequest,
    SendResult,
    SmsLifecycle,
    SmsMetricsWindow,
    StatusCallback,
)

__all__ = [
    "ALL_LOGINS",
    "DEFAULT_GRACE_S",
    "WINDOWS",
    "FactKind",
    "FactSource",
    "FeedResult",
    "MetricFact",
    "MetricsFold",
    "WindowAccumulator",
    "WindowKey",
    "batch_metrics",
    "batch_metrics_from_events",
    "facts_from",
    "is_late",
    "owner_of",
    "resolve_facts",
    "window_closed",
    "window_keys",
    "window_start",
]

WINDOWS: Mapping[str, int] = {"1m": 60, "1h": 3600}
DEFAULT_GRACE_S = 600
ALL_LOGINS = "*"

FactKind: TypeAlias = Literal[
    "requested",
    "submitted",
    "rejected",
    "delivered",
    "click",
    "incoming_sms",
    "optout",
    "call_missed",
]
FactSource: TypeAlias = SmsLifecycle | IncomingSms | OptOut | CallEvent
MESSAGE_KINDS: frozenset[str] = frozenset(
    {"requested", "submitted", "rejected", "delivered", "click"}
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _to_us(ts: datetime) -> int:
    return (ts - _EPOCH) // _US


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


@dataclass(frozen=True, slots=True)
class MetricFact:
    """One countable fact; `fact_id` makes duplicates recognisable.

    `count` is how much it adds to its counter (a message's clicks); `value_ms` the time to
    deliver of a ``delivered`` fact (None: counted, but not in the percentiles).
    """

    kind: FactKind
    fact_id: str
    login: str | None
    at: datetime
    value_ms: int | None = None
    id_sms_api: str | None = None
    count: int = 1

    @property
    def owner(self) -> str:
        """Whose facts these are: ``sms:<id_sms_api>`` or ``event:<fact_id>``."""
        return owner_of(self)

    def sort_key(self) -> tuple[Any, ...]:
        """Total order used to pick one of several facts with one `fact_id`: the smallest wins."""
        return (
            _to_us(self.at),
            self.login or "",
            self.count,
            -1 if self.value_ms is None else self.value_ms,
            self.kind,
            self.fact_id,
            self.id_sms_api or "",
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for the agent's table of owners' facts."""
        return {
            "kind": self.kind,
            "id": self.fact_id,
            "login": self.login,
            "at": _to_us(self.at),
            "value_ms": self.value_ms,
            "id_sms_api": self.id_sms_api,
            "count": self.count,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetricFact:
        """Rebuild a fact saved with `to_dict`."""
        return cls(
            kind=d["kind"],
            fact_id=d["id"],
            login=d.get("login"),
            at=_from_us(int(d["at"])),
            value_ms=d.get("value_ms"),
            id_sms_api=d.get("id_sms_api"),
            count=int(d.get("count", 1)),
        )


def owner_of(fact: MetricFact) -> str:
    """The owner key of a fact: a message for lifecycle facts, the event itself otherwise."""
    if fact.kind in MESSAGE_KINDS and fact.id_sms_api is not None:
        return f"sms:{fact.id_sms_api}"
    return f"event:{fact.fact_id}"


def _lifecycle_facts(rec: SmsLifecycle) -> list[MetricFact]:
    mid, login = rec.id_sms_api, rec.login

    def fact(kind: FactKind, at: datetime, **kw: Any) -> MetricFact:
        return MetricFact(kind, f"{kind}:{mid}", login, at, id_sms_api=mid, **kw)

    facts: list[MetricFact] = []
    if rec.requested_at is not None:
        facts.append(fact("requested", rec.requested_at))
    if rec.submitted_at is not None:
        facts.append(fact("submitted", rec.submitted_at))
    if rec.state in ("REJECTED", "SUPPRESSED"):
        facts.append(fact("rejected", rec.updated_at))
    if rec.delivered_at is not None:
        facts.append(fact("delivered", rec.delivered_at, value_ms=time_to_deliver_ms(rec)))
    if rec.first_click_at is not None:
        facts.append(fact("click", rec.first_click_at, count=max(1, rec.click_count)))
    return facts


def facts_from(record: FactSource) -> list[MetricFact]:
    """The facts a record states. For a lifecycle: ALL its message's facts as of that record."""
    if isinstance(record, SmsLifecycle):
        return _lifecycle_facts(record)
    if isinstance(record, IncomingSms):
        return [
            MetricFact(
                "incoming_sms",
                f"incoming_sms:{record.event_id}",
                record.device_identification,
                record.date or record.received_at,
            )
        ]
    if isinstance(record, OptOut):
        if not record.opted_out:
            return []
        return [MetricFact("optout", f"optout:{record.event_id}", record.login, record.at)]
    if record.direction != "MISSED":
        return []
    return [
        MetricFact(
            "call_missed",
            f"call_missed:{record.event_id}",
            record.device_identification,
            record.call_time or record.received_at,
        )
    ]


def resolve_facts(
    current: Sequence[MetricFact], incoming: Sequence[MetricFact], *, replace: bool
) -> tuple[MetricFact, ...]:
    """An owner's facts after `incoming`: replaced wholesale (a newer lifecycle record), or else
    merged per `fact_id` keeping the smallest (duplicates of one event, in any order)."""
    if replace:
        return tuple(incoming)
    best: dict[str, MetricFact] = {f.fact_id: f for f in current}
    for f in incoming:
        have = best.get(f.fact_id)
        if have is None or f.sort_key() < have.sort_key():
            best[f.fact_id] = f
    return tuple(sorted(best.values(), key=lambda f: f.fact_id))


def window_start(ts: datetime, size_s: int) -> datetime:
    """Start of the tumbling window of `size_s` seconds holding `ts`, aligned to the epoch, UTC."""
    size = timedelta(seconds=size_s)
    return _EPOCH + ((ts - _EPOCH) // size) * size


class WindowKey(NamedTuple):
    """Identity of one window: its label (``1m``), start and login (``*`` = all)."""

    window: str
    start: datetime
    login: str

    def encode(self) -> str:
        """A string key for a table: ``<label>|<start epoch ms>|<login>``."""
        return f"{self.window}|{_to_us(self.start) // 1000}|{self.login}"

    @classmethod
    def decode(cls, key: str) -> WindowKey:
        """Inverse of `encode` (the login may itself contain ``|``)."""
        label, start_ms, login = key.split("|", 2)
        return cls(label, _from_us(int(start_ms) * 1000), login)


def window_keys(fact: MetricFact, sizes: Mapping[str, int] = WINDOWS) -> list[WindowKey]:
    """Every window a fact counts in: per size, its login's and ``*``."""
    logins = [ALL_LOGINS]
    if fact.login and fact.login != ALL_LOGINS:
        logins.insert(0, fact.login)
    keys: list[WindowKey] = []
    for label, size_s in sizes.items():
        start = window_start(fact.at, size_s)
        keys.extend(WindowKey(label, start, login) for login in logins)
    return keys


def window_closed(start: datetime, size_s: int, watermark: datetime, grace_s: float) -> bool:
    """A window is closed once its end plus the grace lies before the watermark."""
    return start + timedelta(seconds=size_s + grace_s) < watermark


def is_late(
    at: datetime, now_watermark: datetime, grace_s: float, size_s: int = WINDOWS["1m"]
) -> bool:
    """True when a fact at `at` is too late: its `size_s` window is already closed."""
    return window_closed(window_start(at, size_s), size_s, now_watermark, grace_s)


_COUNTERS: dict[str, str] = {
    "requested": "requested",
    "submitted": "submitted",
    "rejected": "rejected",
    "delivered": "delivered",
    "click": "clicks",
    "incoming_sms": "incoming_sms",
    "optout": "optouts",
    "call_missed": "calls_missed",
}


@dataclass
class WindowAccumulator:
    """Counters and the latency histogram of one window and login; facts add and retract."""

    requested: int = 0
    submitted: int = 0
    rejected: int = 0
    delivered: int = 0
    clicks: int = 0
    unique_clicks: int = 0
    incoming_sms: int = 0
    optouts: int = 0
    calls_missed: int = 0
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)

    def add(self, fact: MetricFact) -> None:
        """Count a fact (de-duplication happens per owner, before: see `MetricsFold`)."""
        self._bump(fact, +1)

    def remove(self, fact: MetricFact) -> None:
        """Retract a fact counted before by `add`."""
        self._bump(fact, -1)

    def _bump(self, fact: MetricFact, sign: int) -> None:
        name = _COUNTERS[fact.kind]
        setattr(self, name, getattr(self, name) + sign * fact.count)
        if fact.kind == "click":
            self.unique_clicks += sign
        if fact.kind == "delivered" and fact.value_ms is not None:
            if sign > 0:
                self.latency.add(fact.value_ms)
            else:
                self.latency.remove(fact.value_ms)

    def is_empty(self) -> bool:
        """True when no fact is counted (the window can be forgotten)."""
        return all(getattr(self, name) == 0 for name in _COUNTERS.values()) and (
            self.unique_clicks == 0 and self.latency.total == 0
        )

    def to_record(
        self, window_start: datetime, window_end: datetime, login: str, window_label: str
    ) -> SmsMetricsWindow:
        """The `SmsMetricsWindow` record of this window."""
        return SmsMetricsWindow(
            window_start=window_start,
            window_end=window_end,
            login=login,
            window=window_label,
            requested=self.requested,
            submitted=self.submitted,
            rejected=self.rejected,
            delivered=self.delivered,
            clicks=self.clicks,
            unique_clicks=self.unique_clicks,
            incoming_sms=self.incoming_sms,
            optouts=self.optouts,
            calls_missed=self.calls_missed,
            delivery_rate=self.delivered / self.submitted if self.submitted else None,
            click_through_rate=self.unique_clicks / self.delivered if self.delivered else None,
            p50_delivery_ms=self.latency.quantile(0.50),
            p95_delivery_ms=self.latency.quantile(0.95),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for the agent's table of windows."""
        d: dict[str, Any] = {name: getattr(self, name) for name in _COUNTERS.values()}
        d["unique_clicks"] = self.unique_clicks
        d["latency"] = self.latency.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WindowAccumulator:
        """Rebuild an accumulator saved with `to_dict`."""
        acc = cls(latency=LatencyHistogram.from_dict(d.get("latency", {})))
        for name in (*_COUNTERS.values(), "unique_clicks"):
            setattr(acc, name, int(d.get(name, 0)))
        return acc


def _record_for(
    key: WindowKey, acc: WindowAccumulator, sizes: Mapping[str, int]
) -> SmsMetricsWindow:
    end = key.start + timedelta(seconds=sizes[key.window])
    return acc.to_record(key.start, end, key.login, key.window)


def batch_metrics(
    facts: Iterable[MetricFact], sizes: Mapping[str, int] = WINDOWS
) -> dict[WindowKey, SmsMetricsWindow]:
    """The batch recomputation from facts (per message: those of its FINAL lifecycle record).

    Several facts with one `fact_id` count once: the smallest by `MetricFact.sort_key`.
    """
    best: dict[str, MetricFact] = {}
    for f in facts:
        have = best.get(f.fact_id)
        if have is None or f.sort_key() < have.sort_key():
            best[f.fact_id] = f
    windows: dict[WindowKey, WindowAccumulator] = {}
    for f in best.values():
        for key in window_keys(f, sizes):
            windows.setdefault(key, WindowAccumulator()).add(f)
    return {key: _record_for(key, acc, sizes) for key, acc in windows.items()}


def batch_metrics_from_events(
    events: Iterable[LifecycleEvent | IncomingSms | OptOut | CallEvent],
    sizes: Mapping[str, int] = WINDOWS,
) -> dict[WindowKey, SmsMetricsWindow]:
    """Batch from raw events: lifecycles by `batch_lifecycles`, then their facts and the rest's."""
    message_events: list[LifecycleEvent] = []
    facts: list[MetricFact] = []
    for ev in events:
        if isinstance(ev, SendRequest | SendResult | StatusCallback | ClickCallback):
            message_events.append(ev)
        else:
            facts.extend(facts_from(ev))
    for rec in batch_lifecycles(message_events).values():
        facts.extend(facts_from(rec))
    return batch_metrics(facts, sizes)


@dataclass(frozen=True, slots=True)
class FeedResult:
    """What one `MetricsFold.feed` did: windows whose record changed, facts dropped as late."""

    changed: tuple[WindowKey, ...]
    too_late: int = 0


class MetricsFold:
    """The streaming computation, over two injected mappings (plain dicts, or Faust tables).

    `owners`: owner key → list of fact dicts (its facts currently counted); `windows`: encoded
    `WindowKey` → accumulator dict. Values are always re-assigned, never mutated in place, so a
    changelog-backed table records every change. Feeding records in any order and with any
    duplicates (lifecycle records of one message in the order the correlate agent produced
    them) yields `records() == batch_metrics(...)`, less facts for closed windows.
    """

    def __init__(
        self,
        owners: MutableMapping[str, Any] | None = None,
        windows: MutableMapping[str, Any] | None = None,
        *,
        sizes: Mapping[str, int] = WINDOWS,
        grace_s: float = DEFAULT_GRACE_S,
    ) -> None:
        self.owners: MutableMapping[str, Any] = {} if owners is None else owners
        self.windows: MutableMapping[str, Any] = {} if windows is None else windows
        self.sizes = dict(sizes)
        self.grace_s = grace_s

    def _closed(self, key: WindowKey, watermark: datetime | None) -> bool:
        if watermark is None:
            return False
        return window_closed(key.start, self.sizes[key.window], watermark, self.grace_s)

    def feed(self, record: FactSource, *, watermark: datetime | None = None) -> FeedResult:
        """Fold one record in; `watermark` (e.g. the max event time seen) closes old windows."""
        incoming = facts_from(record)
        if isinstance(record, SmsLifecycle):
            owner = f"sms:{record.id_sms_api}"
        elif incoming:
            owner = owner_of(incoming[0])
        else:
            return FeedResult(())
        current = tuple(MetricFact.from_dict(d) for d in self.owners.get(owner, ()))
        new = resolve_facts(current, incoming, replace=isinstance(record, SmsLifecycle))
        old_set, new_set = set(current), set(new)
        deltas: dict[WindowKey, WindowAccumulator] = {}
        kept: list[MetricFact] = []
        too_late = 0
        for f in current:
            if f in new_set:
                kept.append(f)
                continue
            for key in window_keys(f, self.sizes):
                if not self._closed(key, watermark):
                    self._acc(deltas, key).remove(f)
        for f in new:
            if f in old_set:
                continue
            keys = window_keys(f, self.sizes)
            open_keys = [k for k in keys if not self._closed(k, watermark)]
            too_late += len(open_keys) < len(keys)
            for key in open_keys:
                self._acc(deltas, key).add(f)
            if open_keys:
                kept.append(f)
        if kept:
            self.owners[owner] = [f.to_dict() for f in sorted(kept, key=lambda f: f.fact_id)]
        elif owner in self.owners:
            del self.owners[owner]
        for key, acc in deltas.items():
            enc = key.encode()
            if acc.is_empty():
                if enc in self.windows:
                    del self.windows[enc]
            else:
                self.windows[enc] = acc.to_dict()
        return FeedResult(tuple(deltas), too_late)

    def _acc(self, deltas: dict[WindowKey, WindowAccumulator], key: WindowKey) -> WindowAccumulator:
        acc = deltas.get(key)
        if acc is None:
            stored = self.windows.get(key.encode())
            acc = WindowAccumulator() if stored is None else WindowAccumulator.from_dict(stored)
            deltas[key] = acc
        return acc

    def record(self, key: WindowKey) -> SmsMetricsWindow:
        """The current record of one window (all zero once its last fact was retracted)."""
        stored = self.windows.get(key.encode())
        acc = WindowAccumulator() if stored is None else WindowAccumulator.from_dict(stored)
        return _record_for(key, acc, self.sizes)

    def records(self) -> dict[WindowKey, SmsMetricsWindow]:
        """Every non-empty window's record (compare with `batch_metrics`)."""
        out: dict[WindowKey, SmsMetricsWindow] = {}
        for enc in list(self.windows.keys()):
            key = WindowKey.decode(enc)
            out[key] = self.record(key)
        return out

    def expire(self, watermark: datetime) -> list[WindowKey]:
        """Forget closed windows, and owners whose facts all lie in closed windows."""
        gone = [
            WindowKey.decode(enc)
            for enc in list(self.windows.keys())
            if self._closed(WindowKey.decode(enc), watermark)
        ]
        for key in gone:
            del self.windows[key.encode()]
        for owner in list(self.owners.keys()):
            facts = [MetricFact.from_dict(d) for d in self.owners[owner]]
            if all(self._closed(k, watermark) for f in facts for k in window_keys(f, self.sizes)):
                del self.owners[owner]
        return gone
