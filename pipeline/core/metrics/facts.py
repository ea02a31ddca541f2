"""Metric facts: the countable things a record states, each owned by a message or an event."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple, TypeAlias

from pipeline.core.lifecycle import time_to_deliver_ms
from pipeline.records import CallEvent, IncomingSms, OptOut, SmsLifecycle

__all__ = [
    "MESSAGE_KINDS",
    "FactKind",
    "FactSource",
    "MetricFact",
    "OwnerUpdate",
    "epoch_us",
    "facts_from",
    "from_epoch_us",
    "owner_of",
    "owner_update",
    "resolve_facts",
]

FactKind: TypeAlias = Literal[
    "requested",
    "submitted",
    "rejected",
    "delivered",
    "click",
    "incoming_sms",
    "optout",
    "call_missed",
    "overdue",
]
FactSource: TypeAlias = SmsLifecycle | IncomingSms | OptOut | CallEvent
MESSAGE_KINDS: frozenset[str] = frozenset(
    {"requested", "submitted", "rejected", "delivered", "click", "overdue"}
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def epoch_us(ts: datetime) -> int:
    """Microseconds since the epoch: the time format of every stored metric value."""
    return (ts - _EPOCH) // _US


def from_epoch_us(us: int) -> datetime:
    """Inverse of `epoch_us` (UTC)."""
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
            epoch_us(self.at),
            self.login or "",
            self.count,
            -1 if self.value_ms is None else self.value_ms,
            self.kind,
            self.fact_id,
            self.id_sms_api or "",
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, for the agents' tables and the contributions topic."""
        return {
            "kind": self.kind,
            "id": self.fact_id,
            "login": self.login,
            "at": epoch_us(self.at),
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
            at=from_epoch_us(int(d["at"])),
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
    if rec.overdue_since is not None:
        facts.append(fact("overdue", rec.overdue_since))
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


class OwnerUpdate(NamedTuple):
    """What one record says about one owner: facts, and whether they replace the owner's."""

    owner: str
    facts: list[MetricFact]
    replace: bool


def owner_update(record: FactSource) -> OwnerUpdate | None:
    """The owner a record speaks for and the facts it states; None when it states none.

    A lifecycle record carries ALL its message's facts, so they replace the owner's (even none);
    an event's facts merge with the owner's per `fact_id` (see `resolve_facts`).
    """
    incoming = facts_from(record)
    if isinstance(record, SmsLifecycle):
        return OwnerUpdate(f"sms:{record.id_sms_api}", incoming, True)
    if not incoming:
        return None  # e.g. an answered call or an opt-in: nothing countable
    return OwnerUpdate(owner_of(incoming[0]), incoming, False)


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
