"""Opt-out agent: STOP/START replies and `#003` send results → `sms.optouts` (keyed by phone).

Stateless: each decision depends on one record only (`pipeline.core.consent`, which the outbound
agent uses too), so the compacted topic's latest record per phone is the consent (a replay
re-emits the same records, which is harmless). `#003` is Ardary's "number on the stop list"
refusal: the number opted out with Ardary directly. A batch's events are acked only once the
broker acknowledged every OptOut they caused.
"""

from __future__ import annotations

from typing import Any

import faust

from pipeline.agents.app import Streams
from pipeline.agents.liveness import guarded, telemetry_for
from pipeline.core.consent import OPTOUT_CODE, optout_for
from pipeline.kafka.batches import event_batches
from pipeline.kafka.produce import PartitionBatches
from pipeline.records import SendResult
from pipeline.settings import Settings

__all__ = [
    "AGENT",
    "BATCH_MAX",
    "BATCH_WITHIN_S",
    "OPTOUT_CODE",
    "SOURCES",
    "optout_for",
    "register",
]

AGENT = "optouts"
SOURCES = ("callbacks.incoming-sms", "sms.send-results")
BATCH_MAX = 1000
BATCH_WITHIN_S = 0.05


def register(app: faust.App, streams: Streams, settings: Settings) -> None:
    """Attach the opt-out agent (batched, concurrency 1)."""
    del settings
    telemetry = telemetry_for(app)
    names = [streams[name].get_topic_name() for name in SOURCES]
    telemetry.watch(AGENT, names)
    source = app.topic(*names, key_type=bytes, key_serializer="raw", value_serializer=streams.codec)
    out_topic = streams["sms.optouts"].get_topic_name()
    encode = streams.codec.codec.encode
    codes = telemetry.send_result_codes

    async def body(stream: Any) -> None:
        async for events in event_batches(stream, BATCH_MAX, BATCH_WITHIN_S):
            batches = PartitionBatches.for_app(app)
            emitted = 0
            for event in events:
                record = event.value
                if isinstance(record, SendResult) and record.outcome != "SUBMITTED":
                    for code in record.error_codes:
                        codes.labels(code).inc()
                optout = optout_for(record)
                if optout is None:
                    continue
                batches.add_keyed(out_topic, optout.phone_number.encode(), encode(optout))
                emitted += 1
            await batches.send_and_wait()  # acknowledged before the offsets may commit
            telemetry.batch_done(AGENT, len(events), emitted)

    app.agent(source, name=f"pipeline.{AGENT}")(guarded(AGENT, body, telemetry))
