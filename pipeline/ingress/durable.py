"""Where a callback's records go: Kafka within a short bound, else the local spool.

`DurableDoor.keep` is the one decision of the request path:
- the spool is empty and the broker is up → publish to Kafka, wait at most
  INGRESS_PUBLISH_TIMEOUT_SECONDS for the acknowledgement;
- the broker is known to be down, the publish failed or timed out → append to the spool
  (fsync'd before the answer);
- the spool still holds records → append behind them, even with the broker up, so records
  reach Kafka in the order they arrived (a STOP spooled during an outage must not land after
  the START that followed it);
- no spool (INGRESS_SPOOL_DIR empty) or a full one → the request cannot be kept: 503.

A record published after its timeout and then forwarded from the spool reaches Kafka twice;
every consumer de-duplicates by `event_id`. The request's headers (its trace context, while
tracing is on) go with its records to Kafka; the spool keeps records only, so a spooled
callback reaches Kafka without them. The forwarder (`run_forwarder`) publishes spooled
entries oldest first whenever the broker takes them, and only then moves the spool past them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from pipeline.errors import BrokerError
from pipeline.ingress.metrics import IngressMetrics
from pipeline.ingress.spool import SegmentSpool, SpoolFull, SpoolItem
from pipeline.kafka.produce import Headers

__all__ = ["DurableDoor", "Publisher"]

log = logging.getLogger("pipeline.ingress")

FORWARD_BATCH = 500  # spool entries per forwarded publish
FORWARD_TIMEOUT_S = 30.0
FULL_LOG_EVERY_S = 60.0
STUCK_LOG_EVERY_S = 60.0  # a forwarder that keeps failing says so (with the count) this often


class Publisher(Protocol):
    """Publishes the encoded records of one request; returns once the broker acknowledged all."""

    @property
    def broker_up(self) -> bool:
        """Whether the last attempt to reach the broker succeeded (cheap, no I/O)."""
        ...

    async def publish(
        self, items: Sequence[SpoolItem], within: float, headers: Headers = None
    ) -> None:
        """Raise BrokerError (or TimeoutError) within `within` s unless all are acknowledged;
        `headers` go on every record."""
        ...

    async def ready(self) -> bool:
        """Whether the broker is reachable right now (may be cached briefly)."""
        ...


class DurableDoor:
    """Kafka or the spool, for every request (see the module docstring)."""

    def __init__(
        self,
        publisher: Publisher,
        spool: SegmentSpool | None,
        *,
        timeout: float,
        metrics: IngressMetrics,
    ) -> None:
        self.publisher = publisher
        self.spool = spool
        self.timeout = timeout
        self.metrics = metrics
        self._forwarder: asyncio.Task[None] | None = None
        self._full_logged_at = -FULL_LOG_EVERY_S
        self._failures = 0  # forwarding attempts failed since the last success
        self._failure_logged_at = -STUCK_LOG_EVERY_S

    async def keep(self, items: Sequence[SpoolItem], headers: Headers = None) -> bool:
        """Make the records durable; True when they went to the spool (without `headers`).

        Raises BrokerError, TimeoutError or SpoolFull when they could not be kept.
        """
        spool = self.spool
        if spool is None:
            await self.publisher.publish(items, self.timeout, headers)
            return False
        if spool.records == 0 and self.publisher.broker_up:
            try:
                await self.publisher.publish(items, self.timeout, headers)
                return False
            except (BrokerError, TimeoutError):
                pass  # kept below; it may still reach Kafka (then twice: de-duplicated)
        try:
            await spool.append(items)
        except SpoolFull:
            now = time.monotonic()
            if now - self._full_logged_at >= FULL_LOG_EVERY_S:
                self._full_logged_at = now
                log.error(
                    "spool full: answering 503",
                    extra={"bytes": spool.bytes, "limit": spool.max_bytes},
                )
            raise
        return True

    def accepting(self) -> bool:
        """Whether a request would be kept even if the broker were down (the spool has room)."""
        spool = self.spool
        return spool is not None and spool.bytes < spool.max_bytes

    def start(self) -> None:
        """Start forwarding what the spool holds (what an earlier process left, too)."""
        if self.spool is not None and self._forwarder is None:
            self._forwarder = asyncio.get_running_loop().create_task(self._forward())

    async def stop(self) -> None:
        """Stop forwarding; spooled records stay on disk for the next start."""
        task, self._forwarder = self._forwarder, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _forward(self) -> None:
        spool = self.spool
        assert spool is not None
        backoff = 0.1
        while True:
            if spool.records == 0:
                spool.changed.clear()
                await spool.changed.wait()
                continue
            if not self.publisher.broker_up:
                await asyncio.sleep(0.2)  # the publisher's probe says when it is back
                continue
            entries = await spool.read(FORWARD_BATCH)
            items = [item for entry in entries for item in entry.items]
            try:
                await self.publisher.publish(items, FORWARD_TIMEOUT_S)
            except (BrokerError, TimeoutError) as exc:
                self._failed(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            except Exception as exc:  # a bug must not stop forwarding for good
                log.error("forwarder failed", extra={"error": type(exc).__name__})
                await asyncio.sleep(1.0)
                continue
            backoff = 0.1
            if self._failures:
                log.info("forwarding spooled records again", extra={"failures": self._failures})
                self._failures = 0
            await spool.forwarded(entries)
            self.metrics.forwarded(len(items))

    def _failed(self, exc: BaseException) -> None:
        """Count a failed forward; log the first, then once a minute with the count, so a
        forwarder stuck while the broker is up shows in the log as well as in the spool's
        oldest-age gauge (docs/operations.md says what to do)."""
        self._failures += 1
        now = time.monotonic()
        if self._failures > 1 and now - self._failure_logged_at < STUCK_LOG_EVERY_S:
            return
        self._failure_logged_at = now
        log.warning(  # the reason: a topic missing here blocks the spool's head
            "forwarding spooled records failed",
            extra={
                "error": type(exc).__name__,
                "reason": str(exc)[:300],
                "failures": self._failures,
                "spooled_records": self.spool.records if self.spool is not None else 0,
                "broker_up": self.publisher.broker_up,
            },
        )
