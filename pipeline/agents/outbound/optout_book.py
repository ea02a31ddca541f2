"""Every phone's current consent, as the outbound agent checks it before a send.

**An in-memory set fed by our own reading of the whole `sms.optouts` topic** (no consumer group:
every worker reads every partition, because that topic is keyed by phone and not co-partitioned
with the requests). The agent starts only once the book has read up to the end offsets seen at
start-up (`ready`). A faust GlobalTable would do the same with more machinery (and has open
recovery bugs); the topic is compacted, so reading it whole stays cheap.

It lives in the outbound package because only that agent consults it; the reading itself is the
generic `pipeline.kafka.readers.follow_topic`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from pipeline.ardary.phones import normalize_phone
from pipeline.kafka.readers import TopicRecord, follow_topic
from pipeline.records import OptOut

__all__ = ["OptOutBook"]

log = logging.getLogger(__name__)


class OptOutBook:
    """The phones that said STOP (and not START since), read from the whole `sms.optouts` topic."""

    def __init__(self) -> None:
        self._opted_out: set[str] = set()
        self.ready = asyncio.Event()

    def is_opted_out(self, phone_e164: str) -> bool:
        """Whether `phone_e164` said STOP (and not START since)."""
        return phone_e164 in self._opted_out

    def apply(self, record: OptOut) -> None:
        """Fold one OptOut record in (latest wins: the topic is ordered per phone)."""
        phone = normalize_phone(record.phone_number)
        key = phone.e164 if phone.parsed else record.phone_number
        if record.opted_out:
            self._opted_out.add(key)
        else:
            self._opted_out.discard(key)

    def __len__(self) -> int:
        return len(self._opted_out)

    async def follow(
        self, client: Mapping[str, Any], topic: str, decode: Callable[[bytes], Any]
    ) -> None:
        """Read `topic` from the beginning forever (`client`: aiokafka consumer arguments);
        `ready` is set once caught up."""

        def apply(record: TopicRecord) -> None:
            if record.value is None:
                return
            try:
                value = decode(record.value)
            except Exception:  # one bad record must not stop the feed
                log.warning("undecodable opt-out record skipped")
                return
            if isinstance(value, OptOut):
                self.apply(value)

        def caught_up() -> None:
            self.ready.set()
            log.info("opt-out list loaded", extra={"opted_out": len(self)})

        await follow_topic(client, topic, apply, caught_up)
