"""The outbound agent's pure logic: request checks, priority batching, the send-state table values.

Nothing here touches Kafka or HTTP. The agent (`pipeline.agents.outbound`) feeds requests in,
sends what `PriorityBatcher` hands out and stores `SendState` values in its changelog table.

Send states, per id_sms_api (the record behind "never sent twice"):

    (none) ──▶ IN_FLIGHT ──▶ DONE(result) ──▶ PUBLISHED(result)
               written and acknowledged     the SendResult was produced and acknowledged
               BEFORE Ardary is called

On a redelivered request: PUBLISHED → nothing (its result is on the topic already); DONE → the
stored result is produced again (byte-identical, same key: idempotent downstream); IN_FLIGHT →
the send may or may not have reached Ardary, so it is never retried: the result is FAILED with
`UNKNOWN_AFTER_CRASH`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Generic, Literal, NamedTuple, TypeVar

from pipeline.ardary.api import LINK_PLACEHOLDERS
from pipeline.ardary.codes import EMPTY_MESSAGE, INVALID_NUMBER, STOP_REQUESTED
from pipeline.ardary.phones import normalize_phone
from pipeline.ardary.segments import SegmentInfo, count_segments
from pipeline.records import Routing, SendOutcome, SendRequest, SendResult

__all__ = [
    "LINK_WITHOUT_URL",
    "NO_ACCESS_KEY",
    "NO_SENDING_WINDOW",
    "OUTCOME_UNKNOWN",
    "PROTOCOL_ERROR",
    "RETRIES_EXHAUSTED",
    "UNKNOWN_AFTER_CRASH",
    "BatchKey",
    "Done",
    "GroupView",
    "InFlight",
    "Prepared",
    "PriorityBatcher",
    "Refusal",
    "SendState",
    "backoff_delay",
    "check_request",
    "decode_state",
    "encode_state",
    "make_result",
    "redelivery_result",
]

# Our own codes (not Ardary's), next to Ardary's `#00N` in SendResult.error_codes.
LINK_WITHOUT_URL = "LINK_WITHOUT_URL"  # [Link]/[Lien_Tracking] in the text but no url
UNKNOWN_AFTER_CRASH = "UNKNOWN_AFTER_CRASH"  # a worker died during the Ardary call
OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"  # Ardary did not answer (read timeout): maybe sent
RETRIES_EXHAUSTED = "RETRIES_EXHAUSTED"  # transient failures until the retry budget ran out
PROTOCOL_ERROR = "PROTOCOL_ERROR"  # an answer we could not read
NO_ACCESS_KEY = "NO_ACCESS_KEY"  # no ARDARY_ACCESS_KEY(S) entry for the login
# a marketing message whose recipient's sending window never opens (SENDING_WINDOWS, see
# pipeline.core.sending_windows): it cannot be sent legally by that rule, so it is REJECTED
NO_SENDING_WINDOW = "NO_SENDING_WINDOW"


@dataclass(frozen=True, slots=True)
class Prepared:
    """A request fit to send: phone in E.164, past `date_to_send` dropped, segments counted."""

    request: SendRequest
    segments: SegmentInfo


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request answered without calling Ardary (REJECTED or SUPPRESSED) and why."""

    outcome: SendOutcome
    error_codes: tuple[str, ...]
    phone_number: str


def check_request(
    request: SendRequest, *, opted_out: Callable[[str], bool], now: datetime
) -> Prepared | Refusal:
    """Validate a request before it costs anything.

    Invalid number → REJECTED #007, empty text → REJECTED #006 (both codes when both apply),
    a link placeholder without url → REJECTED LINK_WITHOUT_URL, an opted-out number →
    SUPPRESSED #003. A `date_to_send` not in the future is dropped (send now); a future one is
    kept and passed to Ardary, which schedules it.
    """
    phone = normalize_phone(request.phone_number)
    e164 = phone.e164 if phone.parsed else request.phone_number
    codes: list[str] = []
    if not (phone.parsed and phone.valid):
        codes.append(INVALID_NUMBER)
    if not request.message.strip():
        codes.append(EMPTY_MESSAGE)
    if not request.url and any(p in request.message for p in LINK_PLACEHOLDERS):
        codes.append(LINK_WITHOUT_URL)
    if codes:
        return Refusal("REJECTED", tuple(codes), e164)
    if opted_out(e164):
        return Refusal("SUPPRESSED", (STOP_REQUESTED,), e164)
    changes: dict[str, Any] = {}
    if e164 != request.phone_number:
        changes["phone_number"] = e164
    if request.date_to_send is not None and request.date_to_send <= now:
        changes["date_to_send"] = None
    prepared = replace(request, **changes) if changes else request
    return Prepared(prepared, count_segments(prepared.message))


def make_result(
    request: SendRequest,
    outcome: SendOutcome,
    *,
    completed_at: datetime,
    error_codes: Iterable[str] = (),
    sms_per_message: int | None = None,
    sent_time: datetime | None = None,
    attempts: int = 0,
    phone_number: str | None = None,
    scheduled_for: datetime | None = None,
) -> SendResult:
    """The one SendResult of `request` (`scheduled_for`: the future date_to_send Ardary got)."""
    return SendResult(
        id_sms_api=request.id_sms_api,
        login=request.login,
        phone_number=phone_number or request.phone_number,
        outcome=outcome,
        completed_at=completed_at,
        error_codes=tuple(error_codes),
        sms_per_message=sms_per_message,
        sent_time=sent_time,
        attempts=attempts,
        scheduled_for=scheduled_for,
    )


def backoff_delay(attempt: int, *, base: float, cap: float, draw: float) -> float:
    """Full-jitter exponential backoff before retry `attempt` (1-based); `draw` ∈ [0, 1)."""
    return float(draw * min(cap, base * 2.0 ** (attempt - 1)))


# --- batching -------------------------------------------------------------------------------


class BatchKey(NamedTuple):
    """What one Ardary request must share: login, routing, sender, and (our choice) priority."""

    login: str
    routing: Routing
    sender_name: str | None
    priority: int


T = TypeVar("T")


@dataclass(slots=True)
class _Group(Generic[T]):
    items: list[tuple[float, T]] = field(default_factory=list)


class GroupView(NamedTuple):
    """One buffered group as a dispatcher sees it: its key, size and oldest arrival."""

    key: BatchKey
    size: int
    oldest: float


class PriorityBatcher(Generic[T]):
    """Buffered items grouped by BatchKey; hands out the most urgent batch first.

    A group is *ready* when it holds `max_batch` items or its oldest item has waited
    `linger` seconds. Among ready groups the highest priority wins, then the oldest item:
    with a backlog every group is ready, so priority 2 goes before 1 before 0.
    """

    def __init__(self, max_batch: int, linger: float) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self.max_batch = max_batch
        self.linger = linger
        self._groups: dict[BatchKey, _Group[T]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, key: BatchKey, item: T, now: float) -> None:
        """Buffer `item` (arrival time `now`)."""
        self._groups.setdefault(key, _Group()).items.append((now, item))
        self._size += 1

    def _ready(self, group: _Group[T], now: float, limit: int) -> bool:
        return len(group.items) >= limit or now - group.items[0][0] >= self.linger

    def next_deadline(self) -> float | None:
        """When the earliest group becomes ready by linger (None when empty)."""
        if not self._groups:
            return None
        return min(g.items[0][0] for g in self._groups.values()) + self.linger

    def pop(
        self, now: float, limit: int | None = None, *, force: bool = False
    ) -> tuple[BatchKey, list[T]] | None:
        """The next ready batch (at most `limit` ≤ max_batch items), or None if none is ready.

        `force` treats every group as ready (draining at shutdown).
        """
        cap = min(self.max_batch, limit or self.max_batch)
        best: tuple[int, float] | None = None
        best_key: BatchKey | None = None
        for key, group in self._groups.items():
            if not (force or self._ready(group, now, cap)):
                continue
            rank = (-key.priority, group.items[0][0])
            if best is None or rank < best:
                best, best_key = rank, key
        if best_key is None:
            return None
        group = self._groups[best_key]
        taken, group.items = group.items[:cap], group.items[cap:]
        if not group.items:
            del self._groups[best_key]
        self._size -= len(taken)
        return best_key, [item for _, item in taken]

    def groups(self) -> list[GroupView]:
        """The buffered groups, for a dispatcher that chooses by more than `pop` knows."""
        return [GroupView(k, len(g.items), g.items[0][0]) for k, g in self._groups.items()]

    def take(self, key: BatchKey, n: int) -> list[T]:
        """Up to `n` of the oldest items of the group of `key` (none if it has no items)."""
        group = self._groups.get(key)
        if group is None:
            return []
        taken, group.items = group.items[:n], group.items[n:]
        if not group.items:
            del self._groups[key]
        self._size -= len(taken)
        return [item for _, item in taken]

    def remove_if(self, predicate: Callable[[T], bool]) -> list[T]:
        """Drop and return the buffered items matching `predicate` (revoked partitions)."""
        dropped: list[T] = []
        for key in list(self._groups):
            group = self._groups[key]
            kept = [(t, i) for t, i in group.items if not predicate(i)]
            dropped.extend(i for _, i in group.items if predicate(i))
            if kept:
                group.items = kept
            else:
                del self._groups[key]
        self._size -= len(dropped)
        return dropped


# --- the send-state table -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InFlight:
    """Ardary is being (or was, when found after a crash) called for this message."""

    since: datetime
    attempts: int = 1


@dataclass(frozen=True, slots=True)
class Done:
    """The outcome is known; `published` once its SendResult was acknowledged by the broker."""

    result: SendResult
    published: bool = False


SendState = InFlight | Done


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


def encode_state(state: SendState, partition: int | None = None) -> bytes:
    """A table value (compact JSON, stable field names).

    `partition` (of the request, hence of the table key) is kept so the expiry timer can write
    the tombstone to the right changelog partition without the request at hand.
    """
    body: dict[str, Any]
    if isinstance(state, InFlight):
        body = {"s": "IN_FLIGHT", "since": _time(state.since), "attempts": state.attempts}
    else:
        r = state.result
        body = {
            "s": "PUBLISHED" if state.published else "DONE",
            "r": {
                "id_sms_api": r.id_sms_api,
                "login": r.login,
                "phone_number": r.phone_number,
                "outcome": r.outcome,
                "completed_at": _time(r.completed_at),
                "error_codes": list(r.error_codes),
                "sms_per_message": r.sms_per_message,
                "sent_time": _time(r.sent_time),
                "attempts": r.attempts,
            },
        }
        if r.scheduled_for is not None:  # only when set: older states' bytes stay the same
            body["r"]["scheduled_for"] = _time(r.scheduled_for)
    if partition is not None:
        body["p"] = partition
    return json.dumps(body, separators=(",", ":")).encode()


def expired_partition(raw: Any, cutoff: datetime) -> int | None:
    """The changelog partition of a state the expiry may delete, else None.

    Only PUBLISHED states completed before `cutoff` go: an IN_FLIGHT or unpublished state is
    still needed to resolve a redelivered request, and a state written before partitions were
    stored (no "p") is kept, since its tombstone could land in the wrong partition.
    """
    if not isinstance(raw, bytes | bytearray):
        return None
    try:
        body = json.loads(raw)
        if body.get("s") != "PUBLISHED" or "p" not in body:
            return None
        completed = _parse_time(body["r"]["completed_at"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if completed is None or completed >= cutoff:
        return None
    return int(body["p"])


def decode_state(raw: bytes) -> SendState:
    """The inverse of `encode_state`; raises ValueError on anything else."""
    try:
        body = json.loads(raw)
        kind = body["s"]
        if kind == "IN_FLIGHT":
            since = _parse_time(body["since"])
            if since is None:
                raise ValueError("IN_FLIGHT without a time")
            return InFlight(since, int(body.get("attempts", 1)))
        if kind not in ("DONE", "PUBLISHED"):
            raise ValueError(f"unknown send state {kind!r}")
        r = body["r"]
        completed_at = _parse_time(r["completed_at"])
        if completed_at is None:
            raise ValueError("result without completed_at")
        outcome: Literal["SUBMITTED", "REJECTED", "SUPPRESSED", "FAILED"] = r["outcome"]
        result = SendResult(
            id_sms_api=r["id_sms_api"],
            login=r["login"],
            phone_number=r["phone_number"],
            outcome=outcome,
            completed_at=completed_at,
            error_codes=tuple(r["error_codes"]),
            sms_per_message=r["sms_per_message"],
            sent_time=_parse_time(r["sent_time"]),
            attempts=int(r["attempts"]),
            scheduled_for=_parse_time(r.get("scheduled_for")),
        )
        return Done(result, published=kind == "PUBLISHED")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"not a send state: {exc}") from exc


def redelivery_result(state: SendState, request: SendRequest, now: datetime) -> SendResult | None:
    """What to produce for a request whose id already has a state (None: nothing, it is out)."""
    if isinstance(state, Done):
        return None if state.published else state.result
    return make_result(
        request,
        "FAILED",
        completed_at=now,
        error_codes=(UNKNOWN_AFTER_CRASH,),
        attempts=state.attempts,
    )
