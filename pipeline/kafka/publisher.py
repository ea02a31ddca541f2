"""The ingress's one way into Kafka: publish a request's records, return once the broker has them.

`KafkaPublisher` wraps one idempotent aiokafka producer (acks=all) shared by every request.
It keeps one open record batch per topic-partition (`OpenBatches`, shared with the agents) and
hands it to aiokafka (`send_batch`) when that partition has nothing in flight; records arriving
meanwhile wait for the ack and go in the next batch. Each request waits on one future for all
its records. This replaces aiokafka's per-record `send()` (~25 µs of Python each, py-spy) and
the one-timer-per-request bound. Keys are partitioned as aiokafka's default partitioner does
(`partition_for`, murmur2), so co-partitioning with other producers holds.

Each request's wait is bounded by `within`, enforced by one watchdog task instead of a timer
per request. After a failure the publisher marks the broker down and fails fast (no 5 s wait
per request during an outage) until a background metadata probe sees the broker again. A
failed batch makes aiokafka take a new producer id (`idempotence`), so the records the failure
sent back to the spool go through once the broker is back.

A periodic probe (`watch_broker`: a metadata request every `PROBE_PERIOD_S`, `PROBE_TIMEOUT_S`
each) keeps `broker_up` true to the broker while no publish runs: `PROBE_MISSES` failures in a
row (each miss checked again after `probe_interval`) mark it down as a failed publish does, and
the same background probe brings it back. So `ardary_ingress_broker_up` falls within ~5 s of
the broker going away even when no callback arrives. The worker runs the same probe on its own
producer (`metadata_ok`). The time from `send_batch` to each batch's ack goes to
`ack_observer` (`ardary_kafka_produce_ack_seconds{process="ingress"}`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeAlias

from pipeline.errors import BrokerError
from pipeline.kafka import idempotence
from pipeline.kafka.config import KafkaClientConfig, client_config
from pipeline.kafka.produce import AckObserver, Headers, OpenBatches, partition_for, track_topic

__all__ = [
    "PROBE_MISSES",
    "PROBE_PERIOD_S",
    "PROBE_TIMEOUT_S",
    "KafkaPublisher",
    "PublishItem",
    "metadata_ok",
    "watch_broker",
]

log = logging.getLogger("pipeline.kafka.publisher")

PublishItem: TypeAlias = tuple[str, bytes | None, bytes]
"""(topic, key, value) of one encoded record."""

_WATCHDOG_TICK = 0.05  # seconds between deadline checks; deadlines are set this much early
_PARTITIONS_TTL = 30.0  # seconds a topic's partition list is reused before asking again
PROBE_PERIOD_S = 2.0
"""Seconds between two metadata probes of a broker believed up."""
PROBE_TIMEOUT_S = 1.0
"""How long one metadata probe may take before it counts as a miss."""
PROBE_MISSES = 2
"""Misses in a row that mark the broker down: one slow answer is not an outage."""


async def metadata_ok(producer: Any, within: float = PROBE_TIMEOUT_S) -> bool:
    """Whether `producer`'s (an aiokafka producer's) client gets the cluster's metadata from a
    broker within `within` seconds."""
    from aiokafka.errors import KafkaError

    if producer is None:
        return False
    try:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancellation
        # that arrives as the request completes, and the probe's task then never stops
        async with asyncio.timeout(within):
            await producer.client.fetch_all_metadata()
    except (KafkaError, OSError, TimeoutError):
        return False
    return True


async def watch_broker(
    check: Callable[[], Awaitable[bool]],
    report: Callable[[bool], None],
    *,
    period: float = PROBE_PERIOD_S,
    confirm: float = 0.5,
    misses: int = PROBE_MISSES,
) -> NoReturn:
    """Run `check()` every `period` seconds until cancelled: `report(True)` after a success,
    `report(False)` once `misses` checks in a row failed (a miss is checked again after
    `confirm` s, and each further miss reports False again). So a broker that stops answering
    is reported down within about `period + misses * (confirm + timeout)` seconds."""
    missed = 0
    while True:
        await asyncio.sleep(period if missed == 0 else confirm)
        if await check():
            missed = 0
            report(True)
            continue
        missed += 1
        if missed >= misses:
            report(False)


class _Request:
    """One request's wait: its future, how many of its records are not yet acknowledged, and
    the headers every one of its records carries (its trace context)."""

    __slots__ = ("future", "headers", "left")

    def __init__(self, future: asyncio.Future[None], left: int, headers: Headers = None) -> None:
        self.future = future
        self.left = left
        self.headers = headers


class KafkaPublisher:
    """An aiokafka producer with acks=all + idempotence, batching across requests, up/down flag.

    A request whose deadline passes gets TimeoutError and marks the broker down. That does not
    unsend its records if they were already handed to aiokafka: a 503 may still be followed by
    the record, and Ardary's retry then carries the same event_id, so consumers de-duplicate.
    """

    def __init__(
        self,
        client: KafkaClientConfig | str,
        *,
        linger_ms: int = 0,
        request_timeout_ms: int = 10_000,
        probe_interval: float = 0.5,
        probe_period: float = PROBE_PERIOD_S,
        ready_cache_seconds: float = 1.0,
        client_id: str = "ardary-ingress",
        ack_observer: AckObserver | None = None,
    ) -> None:
        self._client_config = client_config(client)
        self._bootstrap = self._client_config.bootstrap
        self._linger_ms = linger_ms
        self._request_timeout_ms = request_timeout_ms
        self._probe_interval = probe_interval
        self._probe_period = probe_period
        self._ack_observer = ack_observer
        self._ready_cache_seconds = ready_cache_seconds
        self._client_id = client_id
        self._producer: Any = None
        self._up = True
        self._probe: asyncio.Task[None] | None = None
        self._ready_at = 0.0
        self._ready_value = False
        self._queue: list[tuple[PublishItem, _Request]] = []  # for the next flush
        self._open: OpenBatches[_Request] | None = None  # unsent batches, from start()
        self._busy: set[tuple[str, int]] = set()  # a batch in flight (not yet acknowledged)
        self._partitions: dict[str, tuple[float, list[int]]] = {}  # topic → (expiry, ids)
        self._flush_wakeup: asyncio.Future[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._deadlines: list[tuple[float, int, _Request]] = []  # a heap, earliest first
        self._seq = itertools.count()
        self._watchdog: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None

    @property
    def broker_up(self) -> bool:
        """False after a failed publish or `PROBE_MISSES` failed probes in a row (publish then
        fails at once), True again once a metadata probe succeeds."""
        return self._up

    async def start(self, *, wait_for_broker: bool = True) -> None:
        """Connect. A broker that cannot be reached raises BrokerError, unless
        `wait_for_broker` is False (the ingress has a spool): then the publisher starts down
        and connects in the background as soon as the broker answers."""
        try:
            await self._connect()
        except BrokerError:
            if wait_for_broker:
                raise
            log.warning("broker unreachable at start: connecting in the background")
            self._up = False
            self._probe = asyncio.get_running_loop().create_task(self._connect_until_up())
            return
        self._up = True

    async def _connect(self) -> None:
        """Create and start the producer and the publisher's tasks (BrokerError if unreachable)."""
        from aiokafka import AIOKafkaProducer
        from aiokafka.errors import KafkaError

        idempotence.install()
        producer = AIOKafkaProducer(
            **self._client_config.aiokafka(),
            client_id=self._client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=self._linger_ms,
            request_timeout_ms=self._request_timeout_ms,
            max_batch_size=256 * 1024,
        )
        try:
            # aiokafka's start() waits for a producer id without end when the node that
            # answered the metadata request goes away before InitProducerId: the chaos run's
            # ingress, restarted while the cluster was stopping, never served (nor spooled)
            async with asyncio.timeout(self._request_timeout_ms / 1000):
                await producer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise BrokerError(
                f"cannot reach Kafka at {self._bootstrap}: {type(exc).__name__}"
            ) from exc
        self._producer = producer
        self._open = OpenBatches(producer)
        loop = asyncio.get_running_loop()
        self._flusher = loop.create_task(self._flush_loop())
        self._watchdog = loop.create_task(self._watch_deadlines())
        self._watcher = loop.create_task(
            watch_broker(
                self._periodic_probe,
                self._probed,
                period=self._probe_period,
                confirm=self._probe_interval,
            )
        )

    async def _connect_until_up(self) -> None:
        while True:
            await asyncio.sleep(self._probe_interval)
            try:
                await self._connect()
            except BrokerError:
                continue
            self._up = True
            self._ready_at = 0.0
            log.info("broker reachable: publisher connected")
            return

    async def stop(self) -> None:
        """Hand over what is queued, flush what aiokafka buffers, then close the producer."""
        for task in (self._probe, self._watchdog, self._watcher):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._probe = self._watchdog = self._watcher = None
        if self._flusher is not None:
            # the app drained its requests first; submit whatever is still queued (bounded)
            deadline = time.monotonic() + 5.0
            while (self._queue or self._open) and time.monotonic() < deadline:
                self._wake()
                await asyncio.sleep(0.01)
            self._fail_pending(BrokerError("publisher stopped"))
            flusher, self._flusher = self._flusher, None
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        if self._producer is not None:
            producer, self._producer = self._producer, None
            try:
                await producer.stop()  # flushes pending batches first
            except Exception as exc:  # a dead broker must not block shutdown
                log.warning("producer stop failed", extra={"error": type(exc).__name__})

    async def publish(
        self, items: Sequence[PublishItem], within: float, headers: Headers = None
    ) -> None:
        """Return once the broker acknowledged every record; BrokerError or TimeoutError
        (within `within` s) otherwise. Fails at once while the broker is known to be down.
        `headers` go on every record of `items` (the request's `traceparent`)."""
        if not self._up:
            raise BrokerError("broker unavailable")
        if self._producer is None or self._flusher is None:
            raise BrokerError("publisher is not started")
        loop = asyncio.get_running_loop()
        request = _Request(loop.create_future(), len(items), headers)
        self._queue.extend((item, request) for item in items)
        heapq.heappush(self._deadlines, (time.monotonic() + within, next(self._seq), request))
        self._wake()
        await request.future

    # ---- batching ---------------------------------------------------------------------------

    def _wake(self) -> None:
        wakeup = self._flush_wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)

    async def _flush_loop(self) -> None:
        """Run `_flush` whenever records were queued or a partition became free."""
        loop = asyncio.get_running_loop()
        while True:
            if not self._queue and not self._sendable():
                self._flush_wakeup = loop.create_future()
                await self._flush_wakeup
            await self._flush()  # fails its requests itself: it never raises

    async def _flush(self) -> None:
        """Append queued records to their partition's open batch; submit the batches of the
        partitions that have nothing in flight. A busy partition's records wait for its ack,
        so under load each batch carries everything that arrived during one round trip."""
        from aiokafka.errors import KafkaError

        producer, batches = self._producer, self._open
        assert batches is not None
        queue, self._queue = self._queue, []
        sending: list[_Request] = []
        now = time.monotonic()
        try:
            for (topic, key, value), request in queue:
                partitions = self._partitions.get(topic)
                if partitions is None or partitions[0] < now:
                    partitions = await self._load_partitions(topic)
                tp = (topic, partition_for(key, partitions[1]))
                if not batches.append(tp, key, value, request, request.headers):
                    raise BrokerError("record larger than a whole batch")
            for tp in self._sendable():
                builder, sending = batches.take(tp)
                track_topic(producer, tp[0])
                handed_at = time.monotonic()
                delivery = await producer.send_batch(builder, tp[0], partition=tp[1])
                self._busy.add(tp)
                delivery.add_done_callback(functools.partial(self._settle, tp, sending, handed_at))
                sending = []
        except Exception as exc:
            if isinstance(exc, KafkaError | OSError | BrokerError):
                self._mark_down(type(exc).__name__)
            else:  # a bug here must cost these requests a 503, never the process
                log.error("flush failed", extra={"error": type(exc).__name__})
            failure = BrokerError(f"publish failed: {type(exc).__name__}")
            for request in (*(request for _, request in queue), *sending):
                if not request.future.done():
                    request.future.set_exception(failure)
            self._fail_pending(failure)

    def _sendable(self) -> list[tuple[str, int]]:
        """Partitions with records waiting and no batch in flight."""
        if self._open is None:
            return []
        return [tp for tp in self._open.partitions() if tp not in self._busy]

    async def _load_partitions(self, topic: str) -> tuple[float, list[int]]:
        known = sorted(await self._producer.partitions_for(topic))
        entry = self._partitions[topic] = (time.monotonic() + _PARTITIONS_TTL, known)
        return entry

    def _fail_pending(self, failure: BrokerError) -> None:
        """Fail every request whose records wait in an unsubmitted batch, and drop those."""
        if self._open is None:
            return
        for request in self._open.clear():
            if not request.future.done():
                request.future.set_exception(failure)

    def _settle(
        self,
        tp: tuple[str, int],
        requests: list[_Request],
        handed_at: float,
        delivery: asyncio.Future[Any],
    ) -> None:
        """Done-callback of one batch's delivery: count its records off their requests, tell the
        ack observer how long the broker took, and let the partition's next batch go."""
        self._busy.discard(tp)
        if self._open is not None and tp in self._open:
            self._wake()
        error = None if delivery.cancelled() else delivery.exception()
        if delivery.cancelled() or error is not None:
            cause = type(error).__name__ if error is not None else "cancelled"
            self._mark_down(cause)
            failure = BrokerError(f"publish failed: {cause}")
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(failure)
            return
        if self._ack_observer is not None:
            self._ack_observer(time.monotonic() - handed_at)
        for request in requests:
            request.left -= 1
            if request.left == 0 and not request.future.done():
                request.future.set_result(None)

    async def _watch_deadlines(self) -> None:
        """Fail requests past their deadline (503) and mark the broker down."""
        heap = self._deadlines
        while True:
            await asyncio.sleep(_WATCHDOG_TICK)
            now = time.monotonic() + _WATCHDOG_TICK  # never later than the deadline
            while heap and (heap[0][2].future.done() or heap[0][0] <= now):
                request = heapq.heappop(heap)[2]
                if not request.future.done():
                    request.future.set_exception(TimeoutError("no acknowledgement in time"))
                    self._mark_down("deadline")

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
        return await metadata_ok(self._producer, within)

    async def _periodic_probe(self) -> bool:
        """The periodic probe (`watch_broker`) while the broker is deemed up; while it is down,
        `_probe_until_up` asks more often and brings it back."""
        if not self._up:
            return False
        return await self._metadata_ok(within=PROBE_TIMEOUT_S)

    def _probed(self, ok: bool) -> None:
        """The periodic probe's verdict (`watch_broker`): a broker that stopped answering is
        marked down as after a failed publish (then `_probe_until_up` brings it back)."""
        if not ok:
            self._mark_down("probe")

    async def _probe_until_up(self) -> None:
        while self._producer is not None:
            await asyncio.sleep(self._probe_interval)
            if await self._metadata_ok(within=1.0):
                self._up = True
                self._ready_at = 0.0
                log.info("broker reachable again")
                return
