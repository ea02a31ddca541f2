"""Metrics agents: lifecycles and events → tumbling windows per login → `metrics.sms`.

Why two stages. A window (size, start, login) sums facts of many messages, and those messages
live in every partition of `sms.lifecycle` (keyed by `id_sms_api`); incoming SMS, opt-outs and
calls are keyed by phone. A table partitioned like the sources would hold a PART of each window
per worker, and two workers would publish competing partial records under one key. So:

1. `metrics-facts` (`facts`) consumes `sms.lifecycle`, `callbacks.incoming-sms`, `sms.optouts`
   and `callbacks.calls`, keeps per OWNER (a message, or one event) its current facts
   (`pipeline.core.metrics.owner_update` / `resolve_facts`) in the table `metrics-owners` —
   co-partitioned with its sources, as an owner's records always share a key — and, when an
   owner's facts change, sends for every window whose share changed a CONTRIBUTION
   ``(window, owner, facts in that window)`` (`pipeline.core.metrics.Contribution`) to the
   internal topic ``<app id>-metrics-contributions``, keyed by the window. One extra hop, on
   purpose.
2. `metrics-windows` (`windows`) consumes that topic — every contribution to one window reaches
   one partition, hence one worker — and keeps in the table `metrics-windows` each owner's
   latest contribution per window (``c|…``) and the window's accumulator (``w|…``). A
   contribution equal to the stored one changes nothing, so a replay after a crash does not
   double-count (idempotent); otherwise the old share is retracted and the new one added, and
   the window's `SmsMetricsWindow` is produced again (once per batch). The latest record per
   key is the truth.

Each stage reads and writes as every agent does: batches from `event_batches`; a pure fold of
the batch into touches with named fields (`fold_facts` → `OwnerTouch`; `fold_contributions` →
`ShareTouch`, `WindowSlot`), tested without a broker; then one `PartitionBatches` per batch
(`table_write` for the table, `add_keyed` for the output topic), acknowledged by the broker
before the batch's events are acked.

Time: windows close at end + `metrics_grace_seconds` before the watermark = the largest fact
time seen by that partition (capped at the wall clock; `pipeline.core.metrics.Watermarks`). A
contribution to a closed window is dropped and counted (`ardary_metrics_facts_too_late`); a
timer deletes closed windows and their contributions (tombstones in the changelog), and stage 1
forgets owners whose facts all lie in closed windows. A window whose facts were all retracted
is published once more with zero counts (not deleted), so a reader sees that it emptied.
With several workers both stages are correct: stage 1 state is per owner (never split), stage 2
state is per window (never split). The worker's `/metrics/sms` and dashboard answer from every
worker's windows, read back from `metrics.sms` (`board.MetricsView`); the `ardary_sms_window`
gauges still show the windows this worker computed (all of them with one worker).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import faust

from pipeline.agents.liveness import telemetry_for
from pipeline.agents.metrics.board import WindowBoard, board_for
from pipeline.agents.metrics.facts import FACT_SOURCES, register_facts
from pipeline.agents.metrics.windows import register_windows
from pipeline.core.metrics import WindowPolicy
from pipeline.settings import Settings

if TYPE_CHECKING:  # at run time app.py imports this package (through web.py) first
    from pipeline.agents.app import Streams

__all__ = ["CONTRIBUTIONS_TOPIC", "FACT_SOURCES", "WindowBoard", "board_for", "register"]

CONTRIBUTIONS_TOPIC = "metrics-contributions"


def register(app: faust.App, streams: Streams, settings: Settings) -> None:
    """Attach both metrics stages (see the module docstring) and their expiry timers."""
    telemetry = telemetry_for(app)
    partitions = settings.pipeline_partitions
    policy = WindowPolicy(grace_s=float(settings.metrics_grace_seconds))
    internal = app.topic(
        f"{app.conf.id}-{CONTRIBUTIONS_TOPIC}",
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
        internal=True,
    )
    register_facts(app, streams, internal, policy, partitions, telemetry)
    register_windows(app, streams, internal, policy, partitions, telemetry)
