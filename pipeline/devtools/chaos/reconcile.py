"""The chaos run's verdict: figures computed from ledgers the pipeline does not keep (pure).

What each sender says it sent and what it was answered — the load generator's log, the
simulator's ledger of accepted sends and of callbacks fired — is set against what Kafka and the
warehouse hold:

- a callback is *sent* when its sender got a 2xx for it (the ingress promised it durable); it is
  matched with the warehouse by its table and its JSON text (`raw`, byte for byte), not by an id
  the pipeline computed;
- `callbacks_lost`: sent and absent from the warehouse. The accounting identity
  `sent == in_warehouse + missing` checks the books: `in_warehouse` is counted by the warehouse
  itself (a join), `missing` by a set difference here; a run where they disagree is void;
- a callback that got no answer (the connection broke after the request went out) promised
  nothing: counted apart, with how many reached the warehouse anyway; a refused connection
  sent nothing at all;
- `warehouse_duplicates`: rows beyond one per key (`event_id`, `id_sms_api`) and beyond one per
  callback text;
- `requests_without_one_result`: send requests on the topic without exactly one
  `SendResult` on `sms.send-results`;
- `duplicate_sends`: ids Ardary (the simulator) accepted more than once; sends reported
  `UNKNOWN_AFTER_CRASH` are listed apart, with whether Ardary had them;
- `lifecycle_mismatch`: the latest `sms.lifecycle` record per id against
  `pipeline.core.lifecycle.batch_lifecycles` over the same events read back from Kafka.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.records import SendResult, SmsLifecycle

__all__ = ["Evidence", "Figures", "SentCallback", "reconcile"]

SAMPLE = 10  # ids listed per failure class in the report
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NOTHING_SENT = frozenset({"ConnectError", "ConnectTimeout"})


@dataclass(frozen=True, slots=True)
class SentCallback:
    """One callback attempt as its sender logged it."""

    source: str  # "generator" | "simulator"
    table: str  # the warehouse table its kind loads into
    raw: str  # the JSON text it carried
    outcome: str  # "ok", "http <code>", or the transport error
    status: int | None
    spooled: bool = False

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def unanswered(self) -> bool:
        """The request may have reached the ingress, but no answer came back."""
        return self.status is None and self.outcome not in _NOTHING_SENT


@dataclass(frozen=True)
class Evidence:
    """Everything the verdict is computed from, as read after quiescence."""

    callbacks: tuple[SentCallback, ...]
    requests_acked: frozenset[str]  # the generator's publishes acknowledged by Kafka
    requests_failed: frozenset[str]  # ... and those it was told failed (never retried)
    requests_in_topic: Mapping[str, int]  # id -> records on sms.send-requests
    results: Mapping[str, tuple[SendResult, ...]]  # id -> its records on sms.send-results
    submissions: Mapping[str, int]  # the simulator's ledger: id -> times Ardary accepted it
    warehouse_raw: Mapping[str, Counter[str]]  # callback table -> raw text -> rows
    warehouse_key_dupes: Mapping[str, int]  # table -> rows beyond one per primary key
    in_warehouse_by_join: int  # sent callbacks found, counted by the warehouse
    lifecycle_latest: Mapping[str, SmsLifecycle]  # the last record per key of sms.lifecycle
    lifecycle_batch: Mapping[str, SmsLifecycle]  # batch_lifecycles over the topics' events
    warehouse_lifecycles: Mapping[str, tuple[str, int, int]]  # id -> (state, clicks, updated ms)


@dataclass(frozen=True)
class Figures:
    """The run's figures; `void` when the books do not balance."""

    callbacks_sent: int
    callbacks_in_warehouse: int
    callbacks_missing: int
    identity_holds: bool
    callbacks_lost: int
    warehouse_duplicates: int
    requests: int
    requests_lost: int
    requests_without_one_result: int
    duplicate_sends: int
    unknown_after_crash: int
    unknown_after_crash_at_ardary: int
    lifecycle_mismatch: int
    warehouse_lifecycle_mismatch: int
    answers_5xx: int
    answers_4xx: int
    callbacks_unanswered: int
    unanswered_in_warehouse: int
    callbacks_refused: int
    callbacks_spooled: int
    warehouse_unexplained: int
    delivered: int
    samples: dict[str, list[str]] = field(default_factory=dict)

    @property
    def void(self) -> bool:
        return not self.identity_holds

    @property
    def clean(self) -> bool:
        """Every loss, duplicate and mismatch count is 0, and the books balance."""
        return not self.void and not any(
            (
                self.callbacks_lost,
                self.warehouse_duplicates,
                self.requests_lost,
                self.requests_without_one_result,
                self.duplicate_sends,
                self.lifecycle_mismatch,
                self.warehouse_lifecycle_mismatch,
                self.answers_5xx,
            )
        )

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["void"] = self.void
        out["clean"] = self.clean
        return out


def _epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, floored, as DuckDB's `epoch_ms` (no float rounding)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _sample(items: Iterable[str]) -> list[str]:
    return sorted(items)[:SAMPLE]


def _lifecycle_diffs(a: Mapping[str, SmsLifecycle], b: Mapping[str, SmsLifecycle]) -> list[str]:
    return [i for i in set(a) | set(b) if a.get(i) != b.get(i)]


def _lifecycle_field_diffs(
    stream: Mapping[str, SmsLifecycle], batch: Mapping[str, SmsLifecycle], ids: list[str]
) -> list[str]:
    """For the first mismatched ids, which fields differ: "id field: stream=… batch=…"."""
    out: list[str] = []
    for i in sorted(ids)[:SAMPLE]:
        a, b = stream.get(i), batch.get(i)
        if a is None or b is None:
            out.append(
                f"{i}: {'absent' if a is None else a.state} on sms.lifecycle, "
                f"{'absent' if b is None else b.state} in the batch"
            )
            continue
        for name in a.__dataclass_fields__:
            x, y = getattr(a, name), getattr(b, name)
            if x != y:
                out.append(f"{i} {name}: stream={x!s:.60} batch={y!s:.60}")
    return out


def _warehouse_lifecycle_diffs(e: Evidence) -> list[str]:
    def summary(r: SmsLifecycle) -> tuple[str, int, int]:
        return (r.state, r.click_count, _epoch_ms(r.updated_at))

    latest = {i: summary(r) for i, r in e.lifecycle_latest.items()}
    return [
        i
        for i in set(latest) | set(e.warehouse_lifecycles)
        if latest.get(i) != e.warehouse_lifecycles.get(i)
    ]


def reconcile(e: Evidence) -> Figures:
    """The figures of a run (see the module docstring)."""
    sent = {(c.table, c.raw) for c in e.callbacks if c.accepted}
    stored = {(t, raw) for t, rows in e.warehouse_raw.items() for raw in rows}
    missing = sent - stored
    answered = {(c.table, c.raw) for c in e.callbacks if c.status is not None}
    unanswered = {(c.table, c.raw) for c in e.callbacks if c.unanswered} - answered
    explained = {(c.table, c.raw) for c in e.callbacks}
    unexplained = stored - explained
    text_dupes = sum(n - 1 for rows in e.warehouse_raw.values() for n in rows.values() if n > 1)
    counts = Counter({i: len(rs) for i, rs in e.results.items()})
    without_one = [i for i in e.requests_in_topic if counts.get(i, 0) != 1]
    orphans = [i for i in counts if i not in e.requests_in_topic]
    unknown = [
        i for i, rs in e.results.items() if any("UNKNOWN_AFTER_CRASH" in r.error_codes for r in rs)
    ]
    doubles = [i for i, n in e.submissions.items() if n > 1]
    lost_requests = [i for i in e.requests_acked if i not in e.requests_in_topic]
    mismatch = _lifecycle_diffs(e.lifecycle_latest, e.lifecycle_batch)
    wh_mismatch = _warehouse_lifecycle_diffs(e)
    statuses = [c.status for c in e.callbacks if c.status is not None]
    return Figures(
        callbacks_sent=len(sent),
        callbacks_in_warehouse=e.in_warehouse_by_join,
        callbacks_missing=len(missing),
        identity_holds=len(sent) == e.in_warehouse_by_join + len(missing),
        callbacks_lost=len(missing),
        warehouse_duplicates=text_dupes + sum(e.warehouse_key_dupes.values()),
        requests=len(e.requests_in_topic),
        requests_lost=len(lost_requests),
        requests_without_one_result=len(without_one) + len(orphans),
        duplicate_sends=len(doubles),
        unknown_after_crash=len(unknown),
        unknown_after_crash_at_ardary=sum(1 for i in unknown if e.submissions.get(i, 0) > 0),
        lifecycle_mismatch=len(mismatch),
        warehouse_lifecycle_mismatch=len(wh_mismatch),
        answers_5xx=sum(1 for s in statuses if s >= 500),
        answers_4xx=sum(1 for s in statuses if 400 <= s < 500),
        callbacks_unanswered=len(unanswered),
        unanswered_in_warehouse=len(unanswered & stored),
        callbacks_refused=sum(1 for c in e.callbacks if c.outcome in _NOTHING_SENT),
        callbacks_spooled=sum(1 for c in e.callbacks if c.spooled),
        warehouse_unexplained=len(unexplained),
        delivered=sum(1 for r in e.lifecycle_latest.values() if r.state == "DELIVERED"),
        samples={
            "callbacks_lost": _sample(f"{t}: {raw}" for t, raw in missing),
            "requests_lost": _sample(lost_requests),
            "requests_without_one_result": _sample(
                f"{i} x{counts.get(i, 0)}" for i in [*without_one, *orphans]
            ),
            "duplicate_sends": _sample(doubles),
            "unknown_after_crash": _sample(unknown),
            "lifecycle_mismatch": _sample(mismatch),
            "lifecycle_mismatch_fields": _lifecycle_field_diffs(
                e.lifecycle_latest, e.lifecycle_batch, mismatch
            ),
            "warehouse_lifecycle_mismatch": _sample(wh_mismatch),
            "warehouse_unexplained": _sample(f"{t}: {raw}" for t, raw in unexplained),
        },
    )
