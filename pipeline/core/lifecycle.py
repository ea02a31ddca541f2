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
- Receipts that never came (DELIVERY_RECEIPT_TIMEOUT_SECONDS): the receipt is due `timeout`
  after `submitted_at`, or after the result's `scheduled_for` when Ardary was asked to send
  later. A message is overdue at `now` when that deadline has passed and no final status
  (delivered or failed) had reached us by then — by our own clock, the ingress's
  `received_at`, which is the clock the correlate timer runs on. Its record then carries
  `overdue_since` = the deadline (and `updated_at` is at least that); a later receipt moves the
  state on and keeps the field. `now` is an argument, so stream and batch agree given the same.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeAlias

from pipeline.core.lifecycle_facts import RequestFact, ResultFact, from_us, opt_dt, opt_us, to_us
from pipeline.records import (
    ClickCallback,
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
    "is_overdue",
    "message_id",
    "overdue_record",
    "overdue_since",
    "receipt_deadline",
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
    final_seen_at: datetime | None = None  # when a delivered/failed status first reached us

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (times as integer microseconds since the epoch, UTC) for the table."""
        return {
            "v": 1,
            "id_sms_api": self.id_sms_api,
            "last_event_at": to_us(self.last_event_at),
            "request": None if self.request is None else self.request.to_dict(),
            "result": None if self.result is None else self.result.to_dict(),
            "sent_at": opt_us(self.sent_at),
            "delivered_at": opt_us(self.delivered_at),
            "failed_at": opt_us(self.failed_at),
            "first_click_at": opt_us(self.first_click_at),
            "click_ids": sorted(self.click_ids),
            "callback_login": self.callback_login,
            "callback_phone": self.callback_phone,
            "final_seen_at": opt_us(self.final_seen_at),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LifecycleState:
        """Rebuild a state saved with `to_dict`.

        A state saved before `final_seen_at` existed takes its final status's own time instead:
        a message delivered before the upgrade must not turn overdue after it.
        """
        delivered_at, failed_at = opt_dt(d.get("delivered_at")), opt_dt(d.get("failed_at"))
        final_seen_at = (
            opt_dt(d["final_seen_at"])
            if "final_seen_at" in d
            else _min_opt(delivered_at, failed_at)
        )
        return cls(
            id_sms_api=d["id_sms_api"],
            last_event_at=from_us(int(d["last_event_at"])),
            request=None if d.get("request") is None else RequestFact.from_dict(d["request"]),
            result=None if d.get("result") is None else ResultFact.from_dict(d["result"]),
            sent_at=opt_dt(d.get("sent_at")),
            delivered_at=delivered_at,
            failed_at=failed_at,
            first_click_at=opt_dt(d.get("first_click_at")),
            click_ids=frozenset(d.get("click_ids", ())),
            callback_login=d.get("callback_login"),
            callback_phone=d.get("callback_phone"),
            final_seen_at=final_seen_at,
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
            scheduled_for=event.scheduled_for,
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
            state = replace(
                state,
                delivered_at=_min_opt(state.delivered_at, when),
                final_seen_at=_min_opt(state.final_seen_at, at),
            )
        elif status in FAILED_STATUSES:
            state = replace(
                state,
                failed_at=_min_opt(state.failed_at, when),
                final_seen_at=_min_opt(state.final_seen_at, at),
            )
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


def _submitted_at(state: LifecycleState) -> datetime | None:
    res = state.result
    if res is None or res.outcome != "SUBMITTED":
        return None
    return res.sent_time or res.completed_at


def receipt_deadline(state: LifecycleState, timeout_seconds: float) -> datetime | None:
    """When the delivery receipt is due: `timeout` after submission, or after `scheduled_for`.

    None for a message Ardary did not accept (nothing to wait for).
    """
    submitted_at = _submitted_at(state)
    if submitted_at is None:
        return None
    scheduled = state.result.scheduled_for if state.result else None
    start = max(submitted_at, scheduled) if scheduled else submitted_at
    return start + timedelta(seconds=timeout_seconds)


def overdue_since(state: LifecycleState, now: datetime, timeout_seconds: float) -> datetime | None:
    """The receipt deadline if it passed by `now` before any final status reached us, else None.

    Stays set once a late delivered/failed status comes (the state moves on, the field stays).
    """
    deadline = receipt_deadline(state, timeout_seconds)
    if deadline is None or deadline > now:
        return None
    if state.final_seen_at is not None and state.final_seen_at < deadline:
        return None  # the receipt was in time
    return deadline


def is_overdue(state: LifecycleState, now: datetime, timeout_seconds: float) -> bool:
    """True for a message SUBMITTED or SENT, with no final status, past its receipt deadline."""
    return state.final_seen_at is None and overdue_since(state, now, timeout_seconds) is not None


def overdue_record(
    state: LifecycleState,
    now: datetime,
    timeout_seconds: float,
    *,
    since: datetime | None = None,
) -> SmsLifecycle | None:
    """The record a timer emits for an overdue message, else None.

    With `since` (the timer's previous run), only a message whose deadline fell in
    (since, now] — each overdue message is then emitted once; re-emitting is harmless
    (the same record, compacted by id).
    """
    if not is_overdue(state, now, timeout_seconds):
        return None
    deadline = receipt_deadline(state, timeout_seconds)
    if since is not None and deadline is not None and deadline <= since:
        return None
    return to_record(state, now=now, receipt_timeout_seconds=timeout_seconds)


def to_record(
    state: LifecycleState,
    *,
    updated_at: datetime | None = None,
    now: datetime | None = None,
    receipt_timeout_seconds: float | None = None,
) -> SmsLifecycle:
    """Derive the `SmsLifecycle` record from the accumulated facts.

    `updated_at` is passed in, not read from the clock, so the record is a pure function of the
    events: stream and batch give equal records. Pass `state.last_event_at` (the default) — the
    latest time an event of THIS message was seen, not a global watermark or wall-clock time.
    With `now` and `receipt_timeout_seconds`, `overdue_since` is filled in (see the module
    docstring) and the default `updated_at` is at least it; without them it stays None.
    """
    req, res = state.request, state.result
    submitted_at = _submitted_at(state)
    overdue = None
    if now is not None and receipt_timeout_seconds is not None:
        overdue = overdue_since(state, now, receipt_timeout_seconds)
    if updated_at is None:
        updated_at = state.last_event_at if overdue is None else max(state.last_event_at, overdue)
    return SmsLifecycle(
        id_sms_api=state.id_sms_api,
        state=_state_of(state),
        updated_at=updated_at,
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
        overdue_since=overdue,
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


def batch_lifecycles(
    events: Iterable[LifecycleEvent],
    *,
    now: datetime | None = None,
    receipt_timeout_seconds: float | None = None,
) -> dict[str, SmsLifecycle]:
    """The batch recomputation: group by `id_sms_api`, fold with `apply`, derive the records.

    Events without `id_sms_api` are skipped (they cannot be correlated). The streaming agent
    computes exactly the same records whatever order and duplicates it sees. `now` and
    `receipt_timeout_seconds` fill in `overdue_since` as of `now` (the stream's same "now").
    """
    states: dict[str, LifecycleState] = {}
    for event in events:
        mid = message_id(event)
        if mid is not None:
            states[mid] = apply(states.get(mid), event)
    return {
        mid: to_record(st, now=now, receipt_timeout_seconds=receipt_timeout_seconds)
        for mid, st in states.items()
    }
