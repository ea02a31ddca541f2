"""The contacts agent: `contacts.sync-requests` → Ardary /contact in batches → sync-results.

Batches come from `event_batches(stream, max, within)`, which acks a batch only when this loop
asks for the next one, i.e. after every ContactSyncResult of the batch was acknowledged by the
broker (`PartitionBatches.send_and_wait`). A contact sync is an idempotent upsert on Ardary's
side, so a redelivered batch is simply sent again (no send-state table as for SMS). Error codes
are the contact API's own (#001-#004).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import faust
import httpx

from pipeline.agents.app import Streams
from pipeline.agents.liveness import guarded, telemetry_for
from pipeline.ardary.api import ContactSyncOutcome
from pipeline.clients.ardary_api import ArdaryClient
from pipeline.core.sending import NO_ACCESS_KEY, PROTOCOL_ERROR, RETRIES_EXHAUSTED, backoff_delay
from pipeline.errors import ArdaryAuthError, ArdaryProtocolError, ArdaryTransientError
from pipeline.kafka.batches import event_batches
from pipeline.kafka.produce import PartitionBatches
from pipeline.records import ContactSyncRequest, ContactSyncResult
from pipeline.settings import Settings

__all__ = ["AGENT", "AUTH_REFUSED", "BATCH_WITHIN_S", "register", "sync_batch"]

log = logging.getLogger(__name__)

AGENT = "contacts"
BATCH_WITHIN_S = 0.2
AUTH_REFUSED = "AUTH_REFUSED"  # /contact answers HTTP 401 for a wrong login/key
_ATTEMPTS = 4


def _now() -> datetime:
    return datetime.now(UTC)


async def sync_batch(
    client: ArdaryClient,
    login: str,
    contacts: Sequence[ContactSyncRequest],
    *,
    attempts: int = _ATTEMPTS,
    base_delay: float = 0.2,
) -> list[ContactSyncResult]:
    """One ContactSyncResult per contact of `login`, transient failures retried with backoff."""
    rng = random.Random()
    codes: tuple[str, ...] = (RETRIES_EXHAUSTED,)
    used = 0
    for attempt in range(1, attempts + 1):
        used = attempt
        try:
            outcomes: list[ContactSyncOutcome] = await client.sync_contacts(login, contacts)
        except ArdaryTransientError as exc:
            if attempt < attempts:
                delay = backoff_delay(attempt, base=base_delay, cap=10.0, draw=rng.random())
                await asyncio.sleep(max(delay, exc.retry_after or 0.0))
            continue
        except ArdaryAuthError as exc:
            missing = "no Ardary access key" in str(exc)
            codes = (NO_ACCESS_KEY,) if missing else (AUTH_REFUSED,)
            log.error("ALERT Ardary refused the contact sync", extra={"login": login})
            break
        except ArdaryProtocolError:
            codes = (PROTOCOL_ERROR,)
            break
        now = _now()
        return [
            ContactSyncResult(
                phone_number=c.phone_number,
                login=login,
                outcome=o.outcome,
                completed_at=now,
                error_codes=o.error_codes,
                attempts=attempt,
            )
            for c, o in zip(contacts, outcomes, strict=True)
        ]
    now = _now()
    return [ContactSyncResult(c.phone_number, login, "FAILED", now, codes, used) for c in contacts]


def register(app: faust.App, streams: Streams, settings: Settings) -> None:
    """Attach the contacts agent to `app` (batched, concurrency 1)."""
    telemetry = telemetry_for(app)
    requests = streams["contacts.sync-requests"]
    telemetry.watch(AGENT, [requests.get_topic_name()])
    results_topic = streams["contacts.sync-results"].get_topic_name()
    encode = streams.codec.codec.encode
    max_batch = settings.outbound_max_batch

    async def body(stream: Any) -> None:
        async with httpx.AsyncClient(base_url=settings.ardary_base_url) as http:
            client = ArdaryClient(
                http,
                settings.access_key_for,
                mode=settings.ardary_mode,
                timezone=settings.ardary_timezone,
                observe=telemetry.observe_api,
            )
            async for events in event_batches(stream, max_batch, BATCH_WITHIN_S):
                by_login: dict[str, list[ContactSyncRequest]] = defaultdict(list)
                for event in events:
                    if isinstance(event.value, ContactSyncRequest):
                        by_login[event.value.login].append(event.value)
                batches = PartitionBatches.for_app(app)
                emitted = 0
                for login, batch in by_login.items():
                    for result in await sync_batch(client, login, batch):
                        batches.add_keyed(
                            results_topic, result.phone_number.encode(), encode(result)
                        )
                        emitted += 1
                await batches.send_and_wait()  # acknowledged before the offsets may commit
                telemetry.batch_done(AGENT, len(events), emitted)

    app.agent(requests, name=AGENT, concurrency=1)(guarded(AGENT, body, telemetry))
