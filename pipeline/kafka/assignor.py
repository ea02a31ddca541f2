"""faust's partition assignor, refreshing the metadata when a subscribed topic is not listed yet.

A worker's first start on a new cluster (or topic prefix) creates its tables' changelogs and the
metrics agent's internal topic itself, moments before its consumer joins the group. When the
group leader's metadata does not list one of them yet, faust-streaming 0.15.3's assignor leaves it
out ("Ignoring missing topic") and aiokafka 0.14 notices the topic only at its next metadata
refresh, up to `consumer_metadata_max_age_ms` (5 minutes) later. Until then the worker runs
without, e.g., the outbound table's changelog and the metrics agent's input: found by `bench
e2e`, whose worker sent every message and then emitted no lifecycle and committed nothing for the
run's 160 s (the "worker that stops without a word": 1 of 12 runs beside two CPU hogs on
2026-12-01, 3 of 13 before; its log had the two "Ignoring missing topic" lines, one join).

Here the leader, when it assigns without a subscribed topic, refreshes the metadata twice a
second until every such topic is listed (for at most a minute). aiokafka's coordinator then sees
the partition counts of its subscription change and rejoins; the next assignment has them all.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

from faust.assignor import PartitionAssignor

__all__ = ["REFRESH_EVERY_S", "REFRESH_FOR_S", "PipelinePartitionAssignor", "missing_topics"]

log = logging.getLogger(__name__)

REFRESH_EVERY_S = 0.5
REFRESH_FOR_S = 60.0


def missing_topics(cluster: Any, member_metadata: Mapping[str, Any]) -> list[str]:
    """The topics some member subscribes to that `cluster` lists no partition of."""
    topics = {topic for metadata in member_metadata.values() for topic in metadata.subscription}
    return sorted(t for t in topics if not cluster.partitions_for_topic(t))


async def refresh_until_listed(
    client: Any,
    topics: Iterable[str],
    *,
    every: float = REFRESH_EVERY_S,
    within: float = REFRESH_FOR_S,
) -> bool:
    """Ask `client` (aiokafka's) for metadata until it lists every one of `topics`."""
    wanted = list(topics)
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(every)
        await client.force_metadata_update()
        if all(client.cluster.partitions_for_topic(t) for t in wanted):
            return True
    log.warning("topics still missing from the metadata after %.0f s: %s", within, wanted)
    return False


class PipelinePartitionAssignor(PartitionAssignor):  # type: ignore[misc]
    """faust's assignor; an assignment made without a subscribed topic is followed by refreshes."""

    _refreshing: asyncio.Task[bool] | None = None

    def assign(self, cluster: Any, member_metadata: MutableMapping[str, Any]) -> Any:
        missing = missing_topics(cluster, member_metadata)
        if missing and (self._refreshing is None or self._refreshing.done()):
            log.warning(
                "group assigned without %s (not in the metadata yet): refreshing it", missing
            )
            # called by aiokafka's coordinator, on the consumer thread's loop
            consumer: Any = self.app.consumer
            client = consumer._thread._ensure_consumer()._client
            self._refreshing = asyncio.get_running_loop().create_task(
                refresh_until_listed(client, missing)
            )
        return super().assign(cluster, member_metadata)
