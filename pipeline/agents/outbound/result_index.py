"""Which results are on a `sms.send-results` partition already: read on demand after a crash.

A request redelivered in state IN_FLIGHT or DONE (not PUBLISHED) may or may not have its
result on the topic already: the worker may have died between producing the result and
recording PUBLISHED. Reading the partition from shortly before the send tells which, so the
result is produced exactly once instead of at least once. The reading is the generic
`pipeline.kafka.readers.read_partition_since`; only the outbound agent asks, so this lives in
its package.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from pipeline.kafka.readers import read_partition_since
from pipeline.records import SendResult

__all__ = ["ResultIndex"]


class _Read(NamedTuple):
    """What was read of one partition: from when, and the latest value per key."""

    since: datetime
    values: dict[str, bytes]


class ResultIndex:
    """The results already on one `sms.send-results` partition, read once per partition."""

    def __init__(
        self, client: Mapping[str, Any], topic: str, decode: Callable[[bytes], Any]
    ) -> None:
        self._client = client  # aiokafka consumer arguments
        self._topic = topic
        self._decode = decode
        self._seen: dict[int, _Read] = {}

    def forget(self, partition: int) -> None:
        """Drop what was read of `partition` (it was revoked: others may write there now)."""
        self._seen.pop(partition, None)

    async def find(self, partition: int, id_sms_api: str, since: datetime) -> SendResult | None:
        """The result keyed `id_sms_api` produced to `partition` since `since`, if any.

        A partition is read again only for a `since` earlier than the read it has.
        """
        read = self._seen.get(partition)
        if read is None or since < read.since:
            records = await read_partition_since(self._client, self._topic, partition, since)
            values = {
                r.key.decode(): r.value
                for r in records
                if r.key is not None and r.value is not None
            }
            read = self._seen[partition] = _Read(since, values)
        raw = read.values.get(id_sms_api)
        if raw is None:
            return None
        record = self._decode(raw)
        return record if isinstance(record, SendResult) else None
