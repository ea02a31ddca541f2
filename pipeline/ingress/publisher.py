"""The ingress's one way into Kafka: publish a record and return only once the broker has it.

`KafkaPublisher` wraps one idempotent aiokafka producer (acks=all) shared by every request, so
concurrent requests ride the same batches. Each publish waits on its own delivery future, never
serially on others. After a failure the publisher marks the broker down and fails fast (no 5 s
wait per request during an outage) until a background metadata probe sees the broker again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

from pipeline.errors import BrokerError

__all__ = ["KafkaPublisher", "Publisher"]

log = logging.getLogger("pipeline.ingress.publisher")


class Publisher(Protocol):
    """Publishes one encoded record; returns once the broker acknowledged it."""

    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Raise BrokerError when the record is not (known to be) acknowledged."""
        ...

    async def ready(self) -> bool:
        """Whether the broker is reachable right now (cheap; may be cached briefly)."""
        ...


class KafkaPublisher:
    """An aiokafka producer with acks=all + idempotence, and a broker up/down flag.

    `timeout=None` (the ingress's choice) leaves the bound to the caller: the app wraps each
    request in one `asyncio.timeout`, and a publish cancelled by it marks the broker down.
    A cancelled wait does not unsend a record already handed to aiokafka (it skips cancelled
    futures), so a 503 may still be followed by the record: Ardary's retry then carries the
    same event_id, and consumers de-duplicate.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        linger_ms: int = 2,
        timeout: float | None = None,
        request_timeout_ms: int = 10_000,
        probe_interval: float = 0.5,
        ready_cache_seconds: float = 1.0,
        client_id: str = "ardary-ingress",
    ) -> None:
        self._bootstrap = bootstrap
        self._linger_ms = linger_ms
        self._timeout = timeout
        self._request_timeout_ms = request_timeout_ms
        self._probe_interval = probe_interval
        self._ready_cache_seconds = ready_cache_seconds
        self._client_id = client_id
        self._producer: Any = None
        self._up = True
        self._probe: asyncio.Task[None] | None = None
        self._ready_at = 0.0
        self._ready_value = False

    @property
    def broker_up(self) -> bool:
        return self._up

    async def start(self) -> None:
        """Connect; a broker that cannot be reached at start-up raises BrokerError."""
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        producer = AIOKafkaProducer(
            bootstrap_servers=self._bootstrap.split(","),
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=self._linger_ms,
            request_timeout_ms=self._request_timeout_ms,
            max_batch_size=256 * 1024,
        )
        try:
            await producer.start()
        except (KafkaError, OSError) as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise BrokerError(
                f"cannot reach Kafka at {self._bootstrap}: {type(exc).__name__}"
            ) from exc
        self._producer = producer
        self._up = True

    async def stop(self) -> None:
        """Flush what is buffered, then close the producer."""
        if self._probe is not None:
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe
            self._probe = None
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                await producer.stop()  # flushes pending batches first
            except Exception as exc:  # a dead broker must not block shutdown
                log.warning("producer stop failed", extra={"error": type(exc).__name__})

    async def publish(self, topic: str, key: bytes | None, value: bytes) -> None:
        from aiokafka.errors import KafkaError

        producer = self._producer
        if producer is None:
            raise BrokerError("publisher is not started")
        if not self._up:
            raise BrokerError("broker unavailable")
        try:
            if self._timeout is None:
                await (await producer.send(topic, value=value, key=key))
            else:
                async with asyncio.timeout(self._timeout):
                    await (await producer.send(topic, value=value, key=key))
        except asyncio.CancelledError:
            self._mark_down("deadline")  # nothing acknowledged within the caller's bound
            raise
        except TimeoutError as exc:
            self._mark_down("timeout")
            raise BrokerError(f"no acknowledgement within {self._timeout}s") from exc
        except (KafkaError, OSError) as exc:
            self._mark_down(type(exc).__name__)
            raise BrokerError(f"publish failed: {type(exc).__name__}") from exc

    async def ready(self) -> bool:
        now = time.monotonic()
        if now - self._ready_at < self._ready_cache_seconds:
            return self._ready_value
        self._ready_value = self._up and await self._metadata_ok(within=1.0)
        self._ready_at = time.monotonic()
        return self._ready_value

    def _mark_down(self, why: str) -> None:
        if self._up:
            log.warning("broker marked down", extra={"cause": why})
        self._up = False
        if self._probe is None or self._probe.done():
            self._probe = asyncio.get_running_loop().create_task(self._probe_until_up())

    async def _metadata_ok(self, within: float) -> bool:
        from aiokafka.errors import KafkaError

        producer = self._producer
        if producer is None:
            return False
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), within)
        except (KafkaError, OSError, TimeoutError):
            return False
        return True

    async def _probe_until_up(self) -> None:
        while self._producer is not None:
            await asyncio.sleep(self._probe_interval)
            if await self._metadata_ok(within=1.0):
                self._up = True
                self._ready_at = 0.0
                log.info("broker reachable again")
                return
