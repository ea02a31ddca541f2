"""Reading topics without a consumer group (whole topics, one partition since a time)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pipeline.errors import BrokerError

__all__ = ["topic_partitions"]


async def topic_partitions(consumer: Any, topic: str, within: float = 30.0) -> list[int]:
    """The partition ids of `topic`, asking the broker again until it lists them.

    aiokafka's public `partitions_for_topic` answers from the client's cached metadata only,
    which knows no topic a group-less consumer has not asked about; its client's
    `force_metadata_update` is the refresh (no public equivalent in aiokafka 0.14).
    """
    deadline = time.monotonic() + within
    while True:
        parts = consumer.partitions_for_topic(topic)
        if parts:
            return sorted(parts)
        if time.monotonic() > deadline:
            raise BrokerError(f"topic {topic} has no partitions (not created?)")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.2)
