"""Opt-out agent: STOP/START replies and `#003` send results → `sms.optouts` (keyed by phone).

Stateless: each decision depends on one record only, so the compacted topic's latest record per
phone is the consent (a replay re-emits the same records, which is harmless). `#003` is Ardary's
"number on the stop list" refusal: the number opted out with Ardary directly.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pipeline.agents.liveness import guarded, telemetry_for
from pipeline.ardary.codes import STOP_REQUESTED
from pipeline.ardary.keywords import classify_reply
from pipeline.records import IncomingSms, OptOut, SendResult
from pipeline.settings import Settings

__all__ = ["AGENT", "OPTOUT_CODE", "SOURCES", "optout_for", "register"]

AGENT = "optouts"
SOURCES = ("callbacks.incoming-sms", "sms.send-results")
OPTOUT_CODE = STOP_REQUESTED  # "#003": the number is on Ardary's stop list


def optout_for(event: Any) -> OptOut | None:
    """The consent change a record states, or None.

    A STOP keyword reply opts the sender out, START opts it back in (`source="INCOMING_SMS"`,
    `keyword` = the normalised verdict); a send result carrying `#003` opts the recipient out
    (`source="SEND_RESULT"`, `event_id` = ``send-result:<id_sms_api>`` so replays are equal).
    """
    if isinstance(event, IncomingSms):
        verdict = classify_reply(event.body)
        if verdict is None:
            return None
        return OptOut(
            phone_number=event.from_number,
            opted_out=verdict == "STOP",
            source="INCOMING_SMS",
            event_id=event.event_id,
            at=event.date or event.received_at,
            login=event.device_identification,
            keyword=verdict,
        )
    if isinstance(event, SendResult) and OPTOUT_CODE in event.error_codes:
        return OptOut(
            phone_number=event.phone_number,
            opted_out=True,
            source="SEND_RESULT",
            event_id=f"send-result:{event.id_sms_api}",
            at=event.completed_at,
            login=event.login,
            keyword=OPTOUT_CODE,
        )
    return None


def register(app: Any, streams: Any, settings: Settings) -> None:
    """Attach the opt-out agent (batched, concurrency 1)."""
    del settings
    telemetry = telemetry_for(app)
    names = [streams[name].get_topic_name() for name in SOURCES]
    telemetry.watch(AGENT, names)
    source = app.topic(*names, key_type=bytes, key_serializer="raw", value_serializer=streams.codec)
    out_topic = streams["sms.optouts"].get_topic_name()
    codec = streams.codec.codec

    async def body(stream: Any) -> None:
        async for events in stream.take_events(1000, within=0.05):
            emitted = 0
            deliveries = []
            for ev in events:
                result = ev.value
                if isinstance(result, SendResult) and result.outcome != "SUBMITTED":
                    for code in result.error_codes:
                        telemetry.send_result_codes.labels(code).inc()
                optout = optout_for(result)
                if optout is None:
                    continue
                key = optout.phone_number.encode()
                deliveries.append(
                    await app.producer.send(out_topic, key, codec.encode(optout), None, None, None)
                )
                emitted += 1
            await asyncio.gather(*deliveries)  # acknowledged before the offsets may commit
            telemetry.batch_done(AGENT, len(events), emitted)

    app.agent(source, name=f"pipeline.{AGENT}")(guarded(AGENT, body, telemetry))
