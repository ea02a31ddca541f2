"""The lifecycle of one message as an order-independent merge of facts (requested … clicked).

Every field of `LifecycleState` is a join: a minimum (first times), a maximum (last event), a
minimum or maximum under a total order (which request, which result), or the smallest-ids
subset of a set (clicks). So `apply` is commutative, associative and idempotent: the same events
in any order, with any duplicates, give the same state — a status before its send result, a
duplicate callback and a replay after a crash all converge on one `SmsLifecycle`.

Rules, written down because the records allow conflicting facts:
- Several `SendRequest`s (replays): the one with the earliest `requested_at` wins (ties: by
  login, phone, metadata), so `requested_at` is the first time the message was asked for.
- Several `SendResult`s (should not happen; replays, a retry after an unknown outcome): a
  SUBMITTED result wins over any other (Ardary accepted it, so an SMS exists); otherwise the latest
  `completed_at` wins (ties: by every other field).
- Statuses are compared case-insensitively. ``sent`` → `sent_at` (earliest); ``received`` (alias
  ``delivered``) → `delivered_at` (earliest); ``failed``, ``undelivered``, ``undeliverable``,
  ``rejected``, ``error``, ``expired`` → a delivery failure (earliest). Any other status only
  counts as an event (login, phone, last event time); it does not change the state.
- A status or click time is Ardary's own (`date_status`, the click's `date`) when given, else the
  ingress's `received_at` (CONTRACT: SmsLifecycle).
- Clicks are de-duplicated by `event_id`. At most `MAX_CLICK_IDS` ids are kept — the smallest
  ones, so the kept set is the same in any order; `click_count` is exact up to that cap and
  saturates at it beyond (still duplicate-proof), `first_click_at` stays exact.
- Login and phone: the request's, else the result's, else the smallest seen in callbacks (an
  orphan — callbacks with no request — still yields a record with what is known).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias

from pipeline.records import (
    ClickCallback,
    SendOutcome,
    SendRequest,
    SendResult,
    SmsLifecycle,
    SmsState,
    StatusCallback,
)

__all__ = [
    "FAILED_STATUSES",
    "FINAL_STATES",
    "MAX_CLICK_IDS",
    "LifecycleEvent",
    "LifecycleState",
    "RequestFact",
    "ResultFact",
    "apply",
    "batch_lifecycles",
    "event_time",
    "expired",
    "is_final",
    "message_id",
    "time_to_deliver_ms",
    "to_record",
]

LifecycleEvent: TypeAlias = SendRequest | SendResult | StatusCallback | ClickCallback

MAX_CLICK_IDS = 1000
SENT_STATUSES = frozenset({"sent"})
DELIVERED_STATUSES = frozenset({"received", "delivered"})
FAILED_STATUSES = frozenset(
    {"failed", "undelivered", "undeliverable", "rejected", "error", "expired"}
)
FINAL_STATES: frozenset[SmsState] = frozenset({"REJECTED", "SUPPRESSED", "FAILED", "DELIVERED"})

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _to_us(ts: datetime) -> int:
    return (ts - _EPOCH) // _US


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _opt_us(ts: datetime | None) -> int | None:
    return None if ts is None else _to_us(ts)


def _opt_dt(us: int | None) -> datetime | None:
    return None if us is None else _from_us(int(us))


def _min_opt(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


def _min_str(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


@dataclass(frozen=True, slots=True)
class RequestFact:
    """What the lifecycle keeps of a `SendRequest`."""

    login: str
    phone_number: str
    requested_at: datetime
    metadata: tuple[tuple[str, str], ...] = ()

    def order_key(self) -> tuple[int, str, str, tuple[tuple[str, str], ...]]:
        """Total order; the smallest request wins (the first time it was asked for)."""
        return (_to_us(self.requested_at), self.login, self.phone_number, self.metadata)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (part of `LifecycleState.to_dict`)."""
        return {
            "login": self.login,
            "phone_number": self.phone_number,
            "requested_at": _to_us(self.requested_at),
            "metadata": [list(kv) for kv in self.metadata],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RequestFact:
        """Inverse of `to_dict`."""
        return cls(
            login=d["login"],
            phone_number=d["phone_number"],
            requested_at=_from_us(int(d["requested_at"])),
            metadata=tuple((str(k), str(v)) for k, v in d.get("metadata", ())),
        )


_OUTCOME_RANK: dict[str, int] = {"FAILED": 0, "SUPPRESSED": 1, "REJECTED": 2, "SUBMITTED": 3}


@dataclass(frozen=True, slots=True)
class ResultFact:
    """What the lifecycle keeps of a `SendResult`."""

    outcome: SendOutcome
    completed_at: datetime
    login: str
    phone_number: str
    sent_time: datetime | None = None
    error_codes: tuple[str, ...] = ()
    sms_per_message: int | None = None

    def order_key(self) -> tuple[Any, ...]:
        """Total order; the largest result wins (SUBMITTED first, then the latest)."""
        return (
            self.outcome == "SUBMITTED",
            _to_us(self.completed_at),
            _OUTCOME_RANK.get(self.outcome, -1),
            -1 if self.sent_time is None else _to_us(self.sent_time),
            self.error_codes,
            -1 if self.sms_per_message is None else self.sms_per_message,
            self.login,
            self.phone_number,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (part of `LifecycleState.to_dict`)."""
        return {
            "outcome": self.outcome,
            "completed_at": _to_us(self.completed_at),
            "login": self.login,
            "phone_number": self.phone_number,
            "sent_time": _opt_us(self.sent_time),
            "error_codes": list(self.error_codes),
            "sms_per_message": self.sms_per_message,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ResultFact:
        """Inverse of `to_dict`."""
        return cls(
            outcome=d["outcome"],
            completed_at=_from_us(int(d["completed_at"])),
            login=d["login"],
            phone_number=d["phone_number"],
            sent_time=_opt_dt(d.get("sent_time")),
            error_codes=tuple(d.get("error_codes", ())),
            sms_per_message=d.get("sms_per_message"),
        )


@dataclass(frozen=True, slots=True)
class LifecycleState:
    """Accumulated facts for one `id_sms_api`; every field merges order-independently."""

    id_sms_api: str
    last_event_at: datetime
    request: RequestFact | None = None
    result: ResultFact | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    failed_at: datetime | None = None
    first_click_at: datetime | None = None
    click_ids: frozenset[str] = frozenset()
    callback_login: str | None = None
    callback_phone: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (times as integer microseconds since the epoch, UTC) for the table."""
        return {
            "v": 1,
            "id_sms_api": self.id_sms_api,
            "last_event_at": _to_us(self.last_event_at),
            "request": None if self.request is None else self.request.to_dict(),
            "result": None if self.result is None else self.result.to_dict(),
            "sent_at": _opt_us(self.sent_at),
            "delivered_at": _opt_us(self.delivered_at),
            "failed_at": _opt_us(self.failed_at),
            "first_click_at": _opt_us(self.first_click_at),
            "click_ids": sorted(self.click_ids),
            "callback_login": self.callback_login,
            "callback_phone": self.callback_phone,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LifecycleState:
        """Rebuild a state saved with `to_dict`."""
        return cls(
            id_sms_api=d["id_sms_api"],
            last_event_at=_from_us(int(d["last_event_at"])),
            request=None if d.get("request") is None else RequestFact.from_dict(d["request"]),
            result=None if d.get("result") is None else ResultFact.from_dict(d["result"]),
            sent_at=_opt_dt(d.get("sent_at")),
            delivered_at=_opt_dt(d.get("delivered_at")),
            failed_at=_opt_dt(d.get("failed_at")),
            first_click_at=_opt_dt(d.get("first_click_at")),
            click_ids=frozenset(d.get("click_ids", ())),
            callback_login=d.get("callback_login"),
            callback_phone=d.get("callback_phone"),
        )


def message_id(event: LifecycleEvent) -> str | None:
    """The `id_sms_api` an event belongs to; None for callbacks that carry none (uncorrelatable)."""
    return event.id_sms_api or None


def event_time(event: LifecycleEvent) -> datetime:
    """When our side learnt the fact: `requested_at`, `completed_at` or the ingress's `received_at`.

    These, not Ardary's own (possibly naive, possibly skewed) times, drive `last_event_at`, the
    TTL and `updated_at`.
    """
    if isinstance(event, SendRequest):
        return event.requested_at
    if isinstance(event, SendResult):
        return event.completed_at
    return event.received_at


def _add_click(ids: frozenset[str], event_id: str) -> frozenset[str]:
    # Keep the MAX_CLICK_IDS smallest ids: the kept set is then a function of the union of ids
    # seen, whatever the order they came in.
    if event_id in ids:
        return ids
    if len(ids) < MAX_CLICK_IDS:
        return ids | {event_id}
    largest = max(ids)
    if event_id < largest:
        return (ids - {largest}) | {event_id}
    return ids


def apply(state: LifecycleState | None, event: LifecycleEvent) -> LifecycleState:
    """Merge one event into a message's state; pure, commutative and idempotent.

    Raises ValueError for an event without `id_sms_api` or one that belongs to another message.
    """
    mid = message_id(event)
    if mid is None:
        raise ValueError("event has no id_sms_api; it cannot join a lifecycle")
    at = event_time(event)
    if state is None:
        state = LifecycleState(id_sms_api=mid, last_event_at=at)
    elif state.id_sms_api != mid:
        raise ValueError("event belongs to another message than the state")
    else:
        state = replace(state, last_event_at=max(state.last_event_at, at))

    if isinstance(event, SendRequest):
        req = RequestFact(
            login=event.login,
            phone_number=event.phone_number,
            requested_at=event.requested_at,
            metadata=tuple(sorted(event.metadata.items())),
        )
        if state.request is None or req.order_key() < state.request.order_key():
            state = replace(state, request=req)
    elif isinstance(event, SendResult):
        res = ResultFact(
            outcome=event.outcome,
            completed_at=event.completed_at,
            login=event.login,
            phone_number=event.phone_number,
            sent_time=event.sent_time,
            error_codes=tuple(event.error_codes),
            sms_per_message=event.sms_per_message,
        )
        if state.result is None or res.order_key() > state.result.order_key():
            state = replace(state, result=res)
    elif isinstance(event, StatusCallback):
        when = event.date_status or event.received_at
        status = event.status.strip().lower()
        state = replace(
            state,
            callback_login=_min_str(state.callback_login, event.login or None),
            callback_phone=_min_str(state.callback_phone, event.phone_number or None),
        )
        if status in SENT_STATUSES:
            state = replace(state, sent_at=_min_opt(state.sent_at, when))
        elif status in DELIVERED_STATUSES:
            state = replace(state, delivered_at=_min_opt(state.delivered_at, when))
        elif status in FAILED_STATUSES:
            state = replace(state, failed_at=_min_opt(state.failed_at, when))
    else:
        when = event.date or event.received_at
        state = replace(
            state,
            callback_phone=_min_str(state.callback_phone, event.phone_number or None),
            first_click_at=_min_opt(state.first_click_at, when),
            click_ids=_add_click(state.click_ids, event.event_id),
        )
    return state


def _state_of(state: LifecycleState) -> SmsState:
    # A receipt is proof of delivery, so it beats everything; a failure reported after sending
    # beats "sent"; Ardary's callbacks beat our own send result; a click proves the SMS left.
    if state.delivered_at is not None:
        return "DELIVERED"
    if state.failed_at is not None:
        return "FAILED"
    if state.sent_at is not None:
        return "SENT"
    if state.result is not None:
        return state.result.outcome
    if state.click_ids:
        return "SENT"
    return "REQUESTED"


def to_record(state: LifecycleState, *, updated_at: datetime | None = None) -> SmsLifecycle:
    """Derive the `SmsLifecycle` record from the accumulated facts.

    `updated_at` is passed in, not read from the clock, so the record is a pure function of the
    events: stream and batch give equal records. Pass `state.last_event_at` (the default) — the
    latest time an event of THIS message was seen, not a global watermark or wall-clock time.
    """
    req, res = state.request, state.result
    submitted_at = None
    if res is not None and res.outcome == "SUBMITTED":
        submitted_at = res.sent_time or res.completed_at
    return SmsLifecycle(
        id_sms_api=state.id_sms_api,
        state=_state_of(state),
        updated_at=state.last_event_at if updated_at is None else updated_at,
        login=req.login if req else res.login if res else state.callback_login,
        phone_number=req.phone_number if req else res.phone_number if res else state.callback_phone,
        requested_at=req.requested_at if req else None,
        submitted_at=submitted_at,
        sent_at=state.sent_at,
        delivered_at=state.delivered_at,
        first_click_at=state.first_click_at,
        click_count=len(state.click_ids),
        sms_per_message=res.sms_per_message if res else None,
        error_codes=res.error_codes if res else (),
        metadata=dict(req.metadata) if req else {},
    )


def time_to_deliver_ms(record: SmsLifecycle) -> int | None:
    """Milliseconds from `sent_at` (else `submitted_at`) to `delivered_at`.

    None when either end is missing, or when the difference is negative (clock skew between
    Ardary's and our times — a latency below zero is no latency, so it is left out of percentiles).
    """
    start = record.sent_at or record.submitted_at
    if start is None or record.delivered_at is None:
        return None
    ms = (record.delivered_at - start) // timedelta(milliseconds=1)
    return ms if ms >= 0 else None


def is_final(record: SmsLifecycle) -> bool:
    """True once nothing more is expected for the demo to wait on.

    REJECTED, SUPPRESSED, FAILED and DELIVERED are final enough (clicks may still come later and
    update the record; a FAILED can in theory still turn DELIVERED).
    """
    return record.state in FINAL_STATES


def expired(state: LifecycleState, now: datetime, ttl_seconds: float) -> bool:
    """True when the message saw no event for `ttl_seconds` before `now`: its state may go."""
    return now - state.last_event_at > timedelta(seconds=ttl_seconds)


def batch_lifecycles(events: Iterable[LifecycleEvent]) -> dict[str, SmsLifecycle]:
    """The batch recomputation: group by `id_sms_api`, fold with `apply`, derive the records.

    Events without `id_sms_api` are skipped (they cannot be correlated). The streaming agent
    computes exactly the same records whatever order and duplicates it sees.
    """
    states: dict[str, LifecycleState] = {}
    for event in events:
        mid = message_id(event)
        if mid is not None:
            states[mid] = apply(states.get(mid), event)
    return {mid: to_record(st) for mid, st in states.items()}
