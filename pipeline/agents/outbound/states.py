"""The send-state table: what the outbound agent knows of each id_sms_api, durable in Kafka.

**At-least-once + a send-state table, not faust's exactly_once.** A changelog-backed table
`outbound-sends` (RocksDB in production) keyed by id_sms_api records IN_FLIGHT *and waits for
the broker's acknowledgement of that changelog record* before Ardary is called, then
PUBLISHED(result) once the SendResult is acknowledged (the states are `pipeline.core.sending`'s).
Writes go to the local store at once and into the caller's `PartitionBatches` for the
changelog (`table_write`); `settle` sends a batch and waits for the broker, bounded by the
produce timeout (faust's own `producer.flush()` returns after 0.1 s of quiet, which does not
prove delivery). Published states older than the state TTL are swept by a timer.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import faust

from pipeline.agents.liveness import Telemetry
from pipeline.core.sending import SendState, decode_state, encode_state, expired_partition
from pipeline.errors import BrokerError
from pipeline.kafka.errors import kafka_errors
from pipeline.kafka.produce import PartitionBatches
from pipeline.kafka.tables import as_current, sweep, table_write, ttl_scan_interval
from pipeline.settings import Settings

__all__ = ["TABLE_NAME", "SendStates", "settle"]

TABLE_NAME = "outbound-sends"


async def settle(batches: PartitionBatches, within: float) -> None:
    """Send `batches` and wait until the broker acknowledged every record, at most `within` s."""
    try:
        async with asyncio.timeout(within):
            with kafka_errors("outbound: producing"):
                await batches.send_and_wait()
    except TimeoutError as exc:
        raise BrokerError("the broker did not acknowledge outbound state in time") from exc


class SendStates:
    """The `outbound-sends` table: read a request's state, write one into a batch, expire."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.table: Any = app.Table(
            TABLE_NAME,
            partitions=settings.pipeline_partitions,
            key_type=bytes,
            value_type=bytes,  # the app's serializers are "raw": values are encode_state() bytes
        )

    def load(self, event: Any, id_sms_api: str) -> SendState | None:
        """The state of `id_sms_api` in `event`'s partition, or None for a new request."""
        with as_current(event):
            raw = self.table.data.get(id_sms_api.encode())
        return decode_state(raw) if isinstance(raw, bytes) else None

    def write(
        self, batches: PartitionBatches, event: Any, id_sms_api: str, state: SendState
    ) -> None:
        """Store `state` locally now; its changelog record goes out with `batches`."""
        partition = event.message.partition
        table_write(self.table, event, id_sms_api.encode(), encode_state(state, partition), batches)

    def register_expiry(self, app: faust.App, ttl_seconds: float, telemetry: Telemetry) -> None:
        """Delete PUBLISHED states older than `ttl_seconds`, on a timer (tombstones included)."""
        table = self.table

        @app.timer(ttl_scan_interval(ttl_seconds), name="outbound.expiry")  # type: ignore[untyped-decorator]
        async def expire_send_states() -> None:
            if app.rebalancing:
                return
            cutoff = datetime.now(UTC) - timedelta(seconds=ttl_seconds)
            partitions: dict[bytes, int] = {}

            def victim(key: bytes, value: Any) -> bool:
                partition = expired_partition(value, cutoff)
                if partition is not None:
                    partitions[key] = partition
                return partition is not None

            gone = await sweep(table, victim, partition_of=lambda key, _value: partitions[key])
            telemetry.outbound_states_expired.inc(len(gone))
