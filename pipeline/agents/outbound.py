"""The outbound agent: `sms.send-requests` → Ardary, at the global rate, once, one SendResult each.

Decisions (see also `pipeline.core.sending` for the send states):

- **At-least-once + a send-state table, not faust's exactly_once.** A changelog-backed table
  `outbound-sends` (RocksDB in production) keyed by id_sms_api records IN_FLIGHT *and waits for
  the broker's acknowledgement of that changelog record* before Ardary is called, then
  PUBLISHED(result) once the SendResult is acknowledged. A redelivered request finds its state:
  PUBLISHED → nothing; IN_FLIGHT or DONE → if `sms.send-results` already holds its result
  (`ResultIndex` reads that partition from shortly before) nothing but PUBLISHED, else DONE's
  result or, for IN_FLIGHT, FAILED `UNKNOWN_AFTER_CRASH` — never resent.
  Changelog records and results are produced with `force=True` and awaited (faust's own
  `producer.flush()` returns after 0.1 s of quiet, which does not prove delivery).
- **Acks only after the results, in offset order.** The agent reads `stream.noack().events()`;
  an event is acked after its SendResult (and its PUBLISHED marker) was acknowledged by the
  broker, and only once every earlier event of its partition is acked too (`AckOrder`):
  faust-streaming 0.15.3 commits a run of acked offsets that starts one past the committed
  offset, though the message at the committed offset is still in flight, so acking out of
  order (priorities, concurrent batches) could let a crash lose a request. Events of an
  earlier consumer generation (a rebalance happened meanwhile) are never acked here.
- **Batching and priorities inside the agent** (concurrency=1, DESIGN pitfalls): events go into
  a `PriorityBatcher` keyed by (login, routing, sender_name, priority); a dispatcher hands out
  the most urgent ready batch whenever the rate limiter allows, and up to `max_concurrent`
  batches are in flight, so Ardary's latency does not cap the rate.
- **Global rate.** Each worker's `TokenBucket` runs at OUTBOUND_RATE_PER_SECOND * (its
  send-requests partitions / all partitions), re-divided on every assignment. A batch holds at
  most one pacing tick of tokens (`TokenBucket.batch_limit`), so the 1-s peak stays within a
  few % of the rate. A 429 (or any transient failure) pauses the bucket for the Retry-After or
  backoff delay.
- **Rebalance.** On revocation the buffered (not yet IN_FLIGHT) events are dropped unacked —
  the next owner reads them again — and batches in flight are awaited (bounded), so the next
  owner sees their IN_FLIGHT/DONE records; their events are not acked by this worker.
- **Opt-outs: an in-memory map fed by our own consumer of the whole `sms.optouts` topic** (no
  consumer group: every worker reads every partition, because that topic is keyed by phone and
  not co-partitioned with the requests). The agent starts only once it has read up to the end
  offsets seen at start-up. A faust GlobalTable would do the same with more machinery (and
  has open recovery bugs); the topic is compacted, so reading it whole stays cheap.
- **`date_to_send` in the future is passed to Ardary**, which schedules natively. Holding
  messages back would keep our opt-out checks valid until send time, but needs a durable
  scheduled store and a timer per message; Ardary applies its own STOP list at send time,
  which covers the main risk. A `date_to_send` already past is dropped (send now).
- **Account errors** (#001/#002) open a per-login circuit breaker: that login's messages are
  answered FAILED with the same codes without calling Ardary until the cool-down's probe
  succeeds; an ALERT line is logged (never the key). #003 from Ardary → SUPPRESSED and an
  OptOut(source="SEND_RESULT") on `sms.optouts`. Transient failures: bounded retries with
  jittered backoff (tenacity in the client; per-message #009 retried here), then FAILED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import httpx
from prometheus_client import Counter, Gauge

from pipeline.agents.app import Streams
from pipeline.ardary.api import MessageOutcome
from pipeline.ardary.codes import MISSING_IN_ANSWER, CodeCategory
from pipeline.ardary.phones import normalize_phone
from pipeline.clients.ardary_api import ArdaryClient, ArdaryOutcomeUnknown
from pipeline.core.ackorder import AckOrder
from pipeline.core.breaker import LoginCircuitBreaker
from pipeline.core.ratelimit import TokenBucket, rate_share
from pipeline.core.sending import (
    NO_ACCESS_KEY,
    OUTCOME_UNKNOWN,
    PROTOCOL_ERROR,
    RETRIES_EXHAUSTED,
    BatchKey,
    Done,
    InFlight,
    Prepared,
    PriorityBatcher,
    Refusal,
    SendState,
    backoff_delay,
    check_request,
    decode_state,
    encode_state,
    expired_partition,
    make_result,
    redelivery_result,
)
from pipeline.errors import (
    ArdaryAuthError,
    ArdaryProtocolError,
    ArdaryTransientError,
    BrokerError,
)
from pipeline.kafka.readers import topic_partitions
from pipeline.kafka.tables import as_current, sweep, ttl_scan_interval
from pipeline.records import OptOut, SendRequest, SendResult
from pipeline.settings import Settings

__all__ = [
    "TABLE_NAME",
    "OptOutBook",
    "OutboundOptions",
    "OutboundSender",
    "ResultIndex",
    "outbound_stats",
    "register",
]

log = logging.getLogger(__name__)

TABLE_NAME = "outbound-sends"

SENT = Counter("ardary_outbound_results_total", "SendResults produced, by outcome", ["outcome"])
BATCHES = Counter("ardary_outbound_batches_total", "Ardary send requests made")
RATE_SHARE = Gauge("ardary_outbound_rate_share", "This worker's share of the rate, msg/s")
IN_FLIGHT = Gauge("ardary_outbound_in_flight", "Messages handed to Ardary, outcome pending")
BUFFERED = Gauge("ardary_outbound_buffered", "Requests buffered, waiting for their batch")
EXPIRED = Counter(
    "ardary_outbound_states_expired_total", "Published send states deleted after the state TTL"
)


_current: OutboundSender | None = None


def outbound_stats() -> dict[str, Any]:
    """A snapshot of this process's outbound agent for health pages (empty when not running)."""
    return _current.stats() if _current is not None else {}


@dataclass(frozen=True, slots=True)
class OutboundOptions:
    """Tuning knobs (defaults suit production; tests shorten the waits)."""

    linger: float = 0.02
    max_concurrent: int = 16
    max_pending: int = 4000
    http_timeout: float = 10.0
    max_attempts: int = 4
    retry_base_delay: float = 0.2
    retry_max_delay: float = 10.0
    message_rounds: int = 3  # rounds for per-message #009 answers
    breaker_cooldown: float = 60.0
    revoke_wait: float = 20.0
    produce_timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundOptions:
        """The knobs an operator sets through the environment; the rest keep their defaults."""
        return cls(
            http_timeout=settings.outbound_http_timeout_seconds,
            max_attempts=settings.outbound_max_attempts,
            max_concurrent=settings.outbound_max_concurrent,
            breaker_cooldown=settings.outbound_breaker_cooldown_seconds,
        )


class OptOutBook:
    """Every phone's current consent, read from the whole `sms.optouts` topic (no group)."""

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

    async def follow(self, bootstrap: str, topic: str, decode: Callable[[bytes], Any]) -> None:
        """Read `topic` from the beginning forever; `ready` is set once caught up."""
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import KafkaError

        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            await consumer.start()
            parts = await topic_partitions(consumer, topic)
            tps = [TopicPartition(topic, p) for p in parts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            while True:
                if not self.ready.is_set() and await _caught_up(consumer, ends):
                    self.ready.set()
                    log.info("opt-out list loaded", extra={"opted_out": len(self)})
                batches = await consumer.getmany(timeout_ms=500)
                for messages in batches.values():
                    for message in messages:
                        if message.value is None:
                            continue
                        try:
                            record = decode(message.value)
                        except Exception:  # one bad record must not stop the feed
                            log.warning("undecodable opt-out record skipped")
                            continue
                        if isinstance(record, OptOut):
                            self.apply(record)
        except KafkaError as exc:
            raise BrokerError(f"opt-out feed failed: {type(exc).__name__}") from exc
        finally:
            await consumer.stop()


async def _caught_up(consumer: Any, ends: dict[Any, int]) -> bool:
    for tp, end in ends.items():
        if int(await consumer.position(tp)) < end:
            return False
    return True


class ResultIndex:
    """The results already on one `sms.send-results` partition, read on demand after a crash.

    A request redelivered in state IN_FLIGHT or DONE (not PUBLISHED) may or may not have its
    result on the topic already. Reading the partition from shortly before the send tells
    which, so the result is produced exactly once instead of at least once.
    """

    def __init__(self, bootstrap: str, topic: str, decode: Callable[[bytes], Any]) -> None:
        self._bootstrap = bootstrap
        self._topic = topic
        self._decode = decode
        self._seen: dict[int, tuple[datetime, dict[str, bytes]]] = {}

    def forget(self, partition: int) -> None:
        """Drop what was read of `partition` (it was revoked: others may write there now)."""
        self._seen.pop(partition, None)

    async def find(self, partition: int, id_sms_api: str, since: datetime) -> SendResult | None:
        """The result keyed `id_sms_api` produced to `partition` since `since`, if any."""
        cached = self._seen.get(partition)
        if cached is None or since < cached[0]:
            cached = (since, await self._read(partition, since))
            self._seen[partition] = cached
        raw = cached[1].get(id_sms_api)
        if raw is None:
            return None
        record = self._decode(raw)
        return record if isinstance(record, SendResult) else None

    async def _read(self, partition: int, since: datetime) -> dict[str, bytes]:
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import KafkaError

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap, group_id=None, enable_auto_commit=False
        )
        tp = TopicPartition(self._topic, partition)
        found: dict[str, bytes] = {}
        try:
            await consumer.start()
            consumer.assign([tp])
            offsets = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000)})
            end = (await consumer.end_offsets([tp]))[tp]
            start = offsets[tp].offset if offsets.get(tp) is not None else end
            consumer.seek(tp, start)
            while int(await consumer.position(tp)) < end:
                batches = await consumer.getmany(tp, timeout_ms=1000)
                for message in batches.get(tp, []):
                    if message.key is not None and message.value is not None:
                        found[message.key.decode()] = message.value
        except KafkaError as exc:
            raise BrokerError(f"cannot read {self._topic}: {type(exc).__name__}") from exc
        finally:
            await consumer.stop()
        return found


@dataclass(slots=True)
class _Entry:
    """A request waiting for (or in) its Ardary call, with the events that carried it."""

    event: Any
    prepared: Prepared
    generation: int
    duplicates: list[Any] = field(default_factory=list)

    @property
    def request(self) -> SendRequest:
        return self.prepared.request


def _now() -> datetime:
    return datetime.now(UTC)


class OutboundSender:
    """The agent's machinery: receive, batch, rate-limit, send, record, produce, ack."""

    def __init__(
        self,
        app: faust.App,
        streams: Streams,
        settings: Settings,
        table: Any,
        *,
        options: OutboundOptions | None = None,
        optouts: OptOutBook | None = None,
    ) -> None:
        self.app = app
        self.streams = streams
        self.settings = settings
        self.table = table
        self.options = options or OutboundOptions()
        self.optouts = optouts or OptOutBook()
        self.limiter = TokenBucket(0.0)
        self.breaker = LoginCircuitBreaker(cooldown=self.options.breaker_cooldown)
        self.batcher: PriorityBatcher[_Entry] = PriorityBatcher(
            settings.outbound_max_batch, self.options.linger
        )
        self.requests_topic: str = streams["sms.send-requests"].get_topic_name()
        self.results_topic: str = streams["sms.send-results"].get_topic_name()
        self.optouts_topic: str = streams["sms.optouts"].get_topic_name()
        self.encode = streams.codec.codec.encode
        self.result_index = ResultIndex(
            settings.kafka_bootstrap_servers or "",
            self.results_topic,
            streams.codec.codec.decode,
        )
        self._pending: dict[str, _Entry] = {}
        self._account_codes: dict[str, tuple[str, ...]] = {}
        self._generation = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._wakeup = asyncio.Event()
        self._room = asyncio.Event()
        self._order: AckOrder[Any] = AckOrder()
        self._slots = asyncio.Semaphore(self.options.max_concurrent)
        self._rng = random.Random()
        self._stream: Any = None
        self._client: ArdaryClient | None = None
        self._http: httpx.AsyncClient | None = None
        self.counts: dict[str, int] = {}
        self.assigned = 0

    # --- stats and rebalance ----------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts by outcome, the rate share, buffered and in-flight messages."""
        return {
            "results": dict(self.counts),
            "rate_share": self.limiter.rate,
            "assigned_partitions": self.assigned,
            "buffered": len(self.batcher),
            "pending": len(self._pending),
            "held_for_ordered_ack": self._order.held,
            "opted_out_numbers": len(self.optouts),
        }

    def on_assigned(self, assigned: Any) -> None:
        """Take this worker's share of the global rate for its new assignment."""
        mine = sum(1 for tp in assigned if tp.topic == self.requests_topic)
        self.assigned = mine
        share = rate_share(
            self.settings.outbound_rate_per_second, mine, self.settings.pipeline_partitions
        )
        self.limiter.set_rate(share)
        RATE_SHARE.set(share or 0.0)
        log.info("outbound rate share", extra={"partitions": mine, "rate": share})
        self._wakeup.set()

    async def on_revoked(self, revoked: Any) -> None:
        """Drop buffered events of revoked partitions; let batches in flight finish."""
        gone = {(tp.topic, tp.partition) for tp in revoked}
        self._generation += 1
        dropped = self.batcher.remove_if(
            lambda e: (e.event.message.topic, e.event.message.partition) in gone
        )
        for entry in dropped:
            self._pending.pop(entry.request.id_sms_api, None)
        for tp in revoked:
            if tp.topic == self.requests_topic:
                self.result_index.forget(tp.partition)
                self._order.forget(tp.partition)
        BUFFERED.set(len(self.batcher))
        self._room.set()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=self.options.revoke_wait)

    # --- the agent loop ---------------------------------------------------------------------

    async def run(self, stream: Any) -> None:
        """Consume the agent's stream until cancelled (the agent body)."""
        global _current
        _current = self
        await self.optouts.ready.wait()
        self._http = httpx.AsyncClient(
            base_url=self.settings.ardary_base_url,
            limits=httpx.Limits(max_connections=self.options.max_concurrent * 2),
        )
        self._client = ArdaryClient(
            self._http,
            self.settings.access_key_for,
            mode=self.settings.ardary_mode,
            timeout=self.options.http_timeout,
            timezone=self.settings.ardary_timezone,
        )
        self._stream = stream.noack()
        dispatcher = asyncio.create_task(self._dispatch())
        try:
            async for event in self._stream.events():
                if dispatcher.done():
                    dispatcher.result()  # re-raise: a dead dispatcher must crash the agent
                while not self._has_room():
                    self._room.clear()
                    await self._room.wait()
                self._order.received(event.message.partition, event.message.offset)
                await self._receive(event)
        finally:
            dispatcher.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=5.0)
            await self._http.aclose()

    async def _receive(self, event: Any) -> None:
        request = event.value
        if not isinstance(request, SendRequest):
            log.warning("not a SendRequest; skipped")
            await self._ack([event])
            return
        entry = self._pending.get(request.id_sms_api)
        if entry is not None:  # the same id twice in a row: one send, one result
            entry.duplicates.append(event)
            return
        raw = self._load(event, request.id_sms_api)
        if raw is not None:
            await self._redelivered(event, request, decode_state(raw))
            return
        checked = check_request(request, opted_out=self.optouts.is_opted_out, now=_now())
        if isinstance(checked, Refusal):
            result = make_result(
                request,
                checked.outcome,
                completed_at=_now(),
                error_codes=checked.error_codes,
                phone_number=checked.phone_number,
            )
            await self._finish([event], result)
            return
        entry = _Entry(event, checked, self._generation)
        self._pending[request.id_sms_api] = entry
        r = checked.request
        key = BatchKey(r.login, r.routing, r.sender_name, max(0, min(2, r.priority)))
        self.batcher.add(key, entry, time.monotonic())
        BUFFERED.set(len(self.batcher))
        self._wakeup.set()

    async def _redelivered(self, event: Any, request: SendRequest, state: SendState) -> None:
        """A request this table already knows: never sent again, its result produced once."""
        if isinstance(state, Done) and state.published:
            await self._ack([event])
            return
        made = state.since if isinstance(state, InFlight) else state.result.completed_at
        found = await self.result_index.find(
            event.message.partition, request.id_sms_api, made - timedelta(seconds=5)
        )
        if found is not None:  # produced before the crash: just record that
            await self._store_all([(event, request.id_sms_api, Done(found, published=True))])
            await self._ack([event])
            return
        result = redelivery_result(state, request, _now())
        assert result is not None
        await self._finish([event], result)

    # --- dispatching ------------------------------------------------------------------------

    async def _sleep_or_wake(self, seconds: float) -> None:
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=max(0.0, seconds))

    async def _dispatch(self) -> None:
        while True:
            if not self.batcher:
                await self._sleep_or_wake(1.0)
                continue
            size = min(self.settings.outbound_max_batch, self.limiter.batch_limit)
            wait = self.limiter.delay(size)
            if wait > 0:
                await self._sleep_or_wake(min(wait, 1.0))
                continue
            popped = self.batcher.pop(time.monotonic(), size)
            if popped is None:
                deadline = self.batcher.next_deadline()
                await self._sleep_or_wake((deadline or 0.0) - time.monotonic() + 0.001)
                continue
            key, entries = popped
            BUFFERED.set(len(self.batcher))
            self.limiter.take(len(entries))
            await self._slots.acquire()
            task = asyncio.create_task(self._run_batch(key, entries))
            self._tasks.add(task)
            task.add_done_callback(self._batch_done)

    def _batch_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:  # never lose a batch silently: crash the worker, it restarts
            log.error("outbound batch crashed", exc_info=exc)
            self.app.loop.create_task(self.app.crash(exc))

    async def _run_batch(self, key: BatchKey, entries: list[_Entry]) -> None:
        if entries and entries[0].generation != self._generation:
            return  # revoked while queued for a slot: the next owner reads them again
        since = _now()
        await self._store_all([(e.event, e.request.id_sms_api, InFlight(since)) for e in entries])
        IN_FLIGHT.inc(len(entries))
        try:
            results = await self._call(key, [e.prepared for e in entries])
        finally:
            IN_FLIGHT.dec(len(entries))
        await self._finish_many(
            [
                ([entry.event, *entry.duplicates], result, entry)
                for entry, result in zip(entries, results, strict=True)
            ]
        )

    async def _call(self, key: BatchKey, batch: Sequence[Prepared]) -> list[SendResult]:
        """Ardary's verdict per message, retried as far as that is safe."""
        assert self._client is not None
        results: dict[str, SendResult] = {}
        attempts: dict[str, int] = {p.request.id_sms_api: 0 for p in batch}
        todo = list(batch)
        login = key.login

        def fail(items: Sequence[Prepared], codes: tuple[str, ...]) -> None:
            for p in items:
                results[p.request.id_sms_api] = make_result(
                    p.request,
                    "FAILED",
                    completed_at=_now(),
                    error_codes=codes,
                    attempts=attempts[p.request.id_sms_api],
                )

        if self.settings.access_key_for(login) is None:
            fail(todo, (NO_ACCESS_KEY,))
            todo = []
        for round_no in range(1, self.options.message_rounds + 1):
            if not todo:
                break
            if not self.breaker.allow(login):
                fail(todo, self._account_codes.get(login, ("#001",)))
                break
            BATCHES.inc()
            try:
                sent = await self._client.send_with_retries(
                    login,
                    [p.request for p in todo],
                    key.routing,
                    max_attempts=self.options.max_attempts,
                    base_delay=self.options.retry_base_delay,
                    max_delay=self.options.retry_max_delay,
                    sleep=self._retry_sleep,
                )
            except ArdaryAuthError as exc:
                codes = exc.codes or ("#001",)
                self._account_error(login, codes)
                for p in todo:
                    attempts[p.request.id_sms_api] += 1
                fail(todo, codes)
                break
            except ArdaryOutcomeUnknown:
                self.breaker.release_probe(login)
                for p in todo:
                    attempts[p.request.id_sms_api] += 1
                fail(todo, (OUTCOME_UNKNOWN,))
                break
            except ArdaryTransientError:
                self.breaker.release_probe(login)
                for p in todo:
                    attempts[p.request.id_sms_api] += self.options.max_attempts
                fail(todo, (RETRIES_EXHAUSTED,))
                break
            except ArdaryProtocolError:
                self.breaker.release_probe(login)
                for p in todo:
                    attempts[p.request.id_sms_api] += 1
                fail(todo, (PROTOCOL_ERROR,))
                break
            self.breaker.record_success(login)
            retry: list[Prepared] = []
            for p, outcome in zip(todo, sent.outcomes, strict=True):
                attempts[p.request.id_sms_api] += sent.attempts
                if _retriable(outcome) and round_no < self.options.message_rounds:
                    retry.append(p)
                    continue
                results[p.request.id_sms_api] = self._result(p, outcome, attempts)
            todo = retry
            if todo:
                delay = backoff_delay(
                    round_no,
                    base=self.options.retry_base_delay,
                    cap=self.options.retry_max_delay,
                    draw=self._rng.random(),
                )
                await asyncio.sleep(delay)
                await self._tokens(len(todo))
        return [results[p.request.id_sms_api] for p in batch]

    def _result(self, p: Prepared, outcome: MessageOutcome, attempts: dict[str, int]) -> SendResult:
        segments = outcome.sms_per_message
        if outcome.outcome == "SUBMITTED" and segments is None:
            segments = p.segments.segments
        return make_result(
            p.request,
            outcome.outcome,
            completed_at=_now(),
            error_codes=outcome.error_codes,
            sms_per_message=segments,
            sent_time=outcome.sent_time,
            attempts=attempts[p.request.id_sms_api],
        )

    def _account_error(self, login: str, codes: tuple[str, ...]) -> None:
        self.breaker.record_account_error(login)
        self._account_codes[login] = codes
        log.error(
            "ALERT Ardary refused the account; sending paused for this login",
            extra={
                "login": login,
                "codes": list(codes),
                "retry_in_s": self.breaker.retry_in(login),
            },
        )

    async def _retry_sleep(self, delay: float) -> None:
        self.limiter.pause(delay)  # a 429/5xx slows every batch of this worker, not just this one
        await asyncio.sleep(delay)

    async def _tokens(self, n: int) -> None:
        wait = self.limiter.delay(n)
        while wait > 0:
            await asyncio.sleep(min(wait, 1.0))
            wait = self.limiter.delay(n)
        self.limiter.take(n)

    # --- state, results, acks ---------------------------------------------------------------

    def _load(self, event: Any, id_sms_api: str) -> bytes | None:
        with as_current(event):
            raw = self.table.data.get(id_sms_api.encode())
        return raw if isinstance(raw, bytes) else None

    async def _produce(self, topic: str, key: bytes, value: bytes, partition: int | None) -> Any:
        """Hand a record to the Kafka producer; returns its delivery future.

        Straight to the producer rather than through faust's `Topic.send`, whose per-record
        bookkeeping cost more than the rest of a send's handling together (measured).
        """
        return await self.app.producer.send(topic, key, value, partition, None, None)

    async def _store_all(
        self, items: Sequence[tuple[Any, str, SendState]], *, wait: bool = True
    ) -> None:
        """Write states locally and to the changelog; with `wait`, until the broker has them."""
        futures = []
        changelog = self.table.changelog_topic.get_topic_name()
        for event, id_sms_api, state in items:
            partition = event.message.partition
            key, value = id_sms_api.encode(), encode_state(state, partition)
            with as_current(event):
                self.table.data[key] = value
            futures.append(await self._produce(changelog, key, value, partition))
        if wait:
            await self._settle(futures)

    async def _settle(self, futures: list[Any]) -> None:
        try:
            async with asyncio.timeout(self.options.produce_timeout):
                await asyncio.gather(*futures)
        except TimeoutError as exc:
            raise BrokerError("the broker did not acknowledge outbound state in time") from exc

    async def _finish(self, events: list[Any], result: SendResult) -> None:
        """Record, produce and ack the result of a request that had no IN_FLIGHT state."""
        await self._finish_many([(events, result, None)], durable_first=True)

    async def _finish_many(
        self,
        items: Sequence[tuple[list[Any], SendResult, _Entry | None]],
        *,
        durable_first: bool = False,
    ) -> None:
        """[DONE (awaited)] → results and opt-outs (awaited) → PUBLISHED → acks.

        After an Ardary call the IN_FLIGHT state is durable already, and a crash before
        PUBLISHED is resolved by `ResultIndex`; a request answered without a call (refused,
        redelivered) gets a durable DONE first, so its result is never made twice.
        """
        if durable_first:
            await self._store_all([(ev[0], r.id_sms_api, Done(r)) for ev, r, _ in items])
        futures = []
        for events, result, entry in items:
            futures.append(
                await self._produce(
                    self.results_topic,
                    result.id_sms_api.encode(),
                    self.encode(result),
                    events[0].message.partition,
                )
            )
            if result.outcome == "SUPPRESSED" and "#003" in result.error_codes and entry:
                futures.append(await self._publish_optout(result))
        await self._settle(futures)
        await self._store_all(
            [(events[0], r.id_sms_api, Done(r, published=True)) for events, r, _ in items]
        )
        to_ack: list[Any] = []
        for events, result, entry in items:
            self.counts[result.outcome] = self.counts.get(result.outcome, 0) + 1
            SENT.labels(result.outcome).inc()
            if entry is not None:
                self._pending.pop(result.id_sms_api, None)
            to_ack.extend(events)
        await self._ack(to_ack)

    async def _publish_optout(self, result: SendResult) -> Any:
        """Ardary said #003: remember it here and tell every worker through `sms.optouts`."""
        record = OptOut(
            phone_number=result.phone_number,
            opted_out=True,
            source="SEND_RESULT",
            event_id=f"send-result:{result.id_sms_api}",
            at=result.completed_at,
            login=result.login,
        )
        self.optouts.apply(record)
        return await self._produce(
            self.optouts_topic, result.phone_number.encode(), self.encode(record), None
        )

    def _has_room(self) -> bool:
        """Back-pressure: requests in work plus finished events held for ordered acks."""
        return len(self._pending) + self._order.held < self.options.max_pending

    async def _ack(self, events: list[Any]) -> None:
        """Ack finished events, each once every earlier event of its partition is acked.

        An event of an earlier consumer generation is not acked: its partition was revoked
        meanwhile, and its next owner (perhaps this worker again) reads it again.
        """
        generation = self.app.consumer_generation_id
        for event in events:
            message = event.message
            if message.generation_id != generation:
                continue
            for ready in self._order.finished(message.partition, message.offset, event):
                await self._stream.ack(ready)
        if self._has_room():
            self._room.set()


def _retriable(outcome: MessageOutcome) -> bool:
    """A per-message answer worth another round: #009-like codes, never a missing entry."""
    return (
        outcome.category is CodeCategory.TRANSIENT and MISSING_IN_ANSWER not in outcome.error_codes
    )


def register(
    app: faust.App,
    streams: Streams,
    settings: Settings,
    *,
    options: OutboundOptions | None = None,
) -> OutboundSender:
    """Attach the outbound agent, its send-state table and the opt-out feed to `app`."""
    table = app.Table(
        TABLE_NAME,
        partitions=settings.pipeline_partitions,
        key_type=bytes,
        value_type=bytes,  # the app's serializers are "raw": values are encode_state() bytes
    )
    options = options or OutboundOptions.from_settings(settings)
    sender = OutboundSender(app, streams, settings, table, options=options)
    optouts_topic = streams["sms.optouts"].get_topic_name()
    bootstrap = settings.kafka_bootstrap_servers or ""
    decode = streams.codec.codec.decode

    @app.task  # type: ignore[misc,untyped-decorator]
    async def outbound_optouts() -> None:
        await sender.optouts.follow(bootstrap, optouts_topic, decode)

    @app.agent(streams["sms.send-requests"], name="outbound", concurrency=1)  # type: ignore[misc]
    async def outbound(stream: Any) -> None:
        await sender.run(stream)

    @app.timer(ttl_scan_interval(settings.outbound_state_ttl_seconds), name="outbound.expiry")  # type: ignore[untyped-decorator]
    async def expire_send_states() -> None:
        if app.rebalancing:
            return
        cutoff = _now() - timedelta(seconds=settings.outbound_state_ttl_seconds)
        partitions: dict[bytes, int] = {}

        def victim(key: bytes, value: Any) -> bool:
            partition = expired_partition(value, cutoff)
            if partition is not None:
                partitions[key] = partition
            return partition is not None

        gone = await sweep(table, victim, partition_of=lambda key, _value: partitions[key])
        EXPIRED.inc(len(gone))

    async def _revoked(_app: Any, revoked: Any, **_: Any) -> None:
        await sender.on_revoked(revoked)

    async def _assigned(_app: Any, assigned: Any, **_: Any) -> None:
        sender.on_assigned(assigned)

    app.on_partitions_revoked.connect(_revoked)  # type: ignore[arg-type]
    app.on_partitions_assigned.connect(_assigned)  # type: ignore[arg-type]
    return sender
