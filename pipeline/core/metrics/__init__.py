"""Tumbling-window SMS metrics as a pure function of de-duplicated facts, streamed or in batch.

Design (exact, not approximate, under duplicates, reordering and replays):
- Every countable thing is a `MetricFact` with a deterministic `fact_id` and an `owner`
  (`facts`). Per-message facts come from the *lifecycle* record (`SmsLifecycle`), never from
  raw sends or callbacks (clicks carry no login): ``requested`` at `requested_at`;
  ``submitted`` at `submitted_at` (the result's `sent_time`, else `completed_at`); ``rejected``
  when the state is REJECTED or SUPPRESSED, at `updated_at` (the record has no completion time;
  for a refused message that is when the refusal became known); ``delivered`` at
  `delivered_at`, carrying the time to deliver for the percentiles; ``click`` at
  `first_click_at`, carrying `click_count`; ``overdue`` at `overdue_since` (its receipt
  deadline passed with no final status; kept when a late receipt comes, so a window's count
  does not shrink). So `clicks` is the sum of the click counts of messages whose FIRST click
  falls in the window, and `unique_clicks` the number of such messages. Per-event facts come
  from their own records: ``incoming_sms`` (IncomingSms, at `date` else `received_at`),
  ``optout`` (OptOut with `opted_out`, at `at`), ``call_missed`` (CallEvent MISSED, at
  `call_time` else `received_at`); their login is the record's `device_identification` (the
  account's device) / OptOut `login`.
- A fact counts in two windows per size: its login's and ``*`` (only ``*`` without a login)
  (`windows`). A window closes once its end plus the grace lies before the watermark.
- The metrics are a function of each owner's CURRENT facts. An owner is a message (its facts
  are those of its latest lifecycle record, which the correlate agent makes order-independent)
  or an event (duplicates of one `event_id` keep the smallest fact, e.g. the earliest
  `received_at`). When an owner's facts change, the old ones are retracted from their windows
  and the new ones added (`shares`: an owner's share of each window, replaced whole; `fold`:
  the same in one process), so a fact that moves, vanishes or repeats never counts twice —
  windows hold only counters and a bounded histogram, not sets of ids (`accumulator`).
- `batch_metrics` (`batch`) recomputes the same windows from the facts of the final records; a
  stream folded with `MetricsFold` equals it, except for facts dropped because their window
  had already closed (window end + grace before the watermark), which the fold counts as too
  late.
- `delivery_rate` = delivered / submitted and `click_through_rate` = unique_clicks / delivered,
  each within the window (None when the divisor is 0; may exceed 1 as the numerator and divisor
  of one message can fall in different windows).

The modules, one job each; import the names from this package:
`facts` (what a record states), `windows` (keys, sizes, closing, watermarks), `accumulator`
(one window's counters), `shares` (the unit the two metrics agents exchange), `batch` (the
recomputation), `fold` (the single-process streaming reference).
"""

from __future__ import annotations

from pipeline.core.metrics.accumulator import WindowAccumulator, window_record
from pipeline.core.metrics.batch import batch_metrics, batch_metrics_from_events
from pipeline.core.metrics.facts import (
    MESSAGE_KINDS,
    FactKind,
    FactSource,
    MetricFact,
    OwnerUpdate,
    epoch_us,
    facts_from,
    from_epoch_us,
    owner_of,
    owner_update,
    resolve_facts,
)
from pipeline.core.metrics.fold import FeedResult, MetricsFold
from pipeline.core.metrics.shares import Contribution, apply_share, contributions
from pipeline.core.metrics.windows import (
    ALL_LOGINS,
    DEFAULT_GRACE_S,
    WINDOWS,
    Watermarks,
    WindowKey,
    WindowPolicy,
    is_late,
    window_closed,
    window_keys,
    window_start,
)

__all__ = [
    "ALL_LOGINS",
    "DEFAULT_GRACE_S",
    "MESSAGE_KINDS",
    "WINDOWS",
    "Contribution",
    "FactKind",
    "FactSource",
    "FeedResult",
    "MetricFact",
    "MetricsFold",
    "OwnerUpdate",
    "Watermarks",
    "WindowAccumulator",
    "WindowKey",
    "WindowPolicy",
    "apply_share",
    "batch_metrics",
    "batch_metrics_from_events",
    "contributions",
    "epoch_us",
    "facts_from",
    "from_epoch_us",
    "is_late",
    "owner_of",
    "owner_update",
    "resolve_facts",
    "window_closed",
    "window_keys",
    "window_record",
    "window_start",
]
