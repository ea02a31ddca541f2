"""Test data for the stream agents: mixed events, shuffles and duplicates; topic I/O helpers."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline import records
from pipeline.serde import make_codec
from pipeline.topics import record_key, topic_for_record

LOGINS = ("alice", "bob", "carol")


def _ms(ts: datetime) -> datetime:
    """Whole milliseconds: the Avro records carry timestamp-millis."""
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)


def make_events(n_messages: int, *, seed: int, base: datetime, span_s: float = 240.0) -> list[Any]:
    """Distinct events of `n_messages` messages (plus replies, calls and id-less callbacks).

    All event times lie within `span_s` after `base`, so no metrics window closes in a test.
    """
    rng = random.Random(seed)
    out: list[Any] = []

    def at(offset: float) -> datetime:
        return _ms(base + timedelta(seconds=min(offset, span_s)))

    for i in range(n_messages):
        mid = f"m{seed}-{i:05d}"
        login = rng.choice(LOGINS)
        phone = f"+3361{i % 250:07d}"
        t0 = rng.uniform(0, span_s * 0.6)
        out.append(
            records.SendRequest(
                id_sms_api=mid,
                login=login,
                phone_number=phone,
                message=f"hello {i}",
                requested_at=at(t0),
                metadata={"campaign": f"c{i % 3}"},
            )
        )
        roll = rng.random()
        if roll < 0.06:
            out.append(
                records.SendResult(
                    id_sms_api=mid,
                    login=login,
                    phone_number=phone,
                    outcome="REJECTED",
                    completed_at=at(t0 + 1),
                    error_codes=("#003",) if roll < 0.03 else ("#007",),
                )
            )
            continue
        if roll < 0.08:
            continue  # never answered: stays REQUESTED
        out.append(
            records.SendResult(
                id_sms_api=mid,
                login=login,
                phone_number=phone,
                outcome="SUBMITTED",
                completed_at=at(t0 + 1),
                sent_time=at(t0 + 0.5),
                sms_per_message=1 + i % 2,
                attempts=1,
            )
        )
        t_sent = t0 + rng.uniform(1, 5)
        for status, ts in (("sent", t_sent), ("received", t_sent + rng.uniform(0.5, 30))):
            if status == "received" and rng.random() < 0.15:
                continue
            out.append(
                records.StatusCallback(
                    event_id=f"st-{mid}-{status}",
                    phone_number=phone,
                    status=status,
                    received_at=at(ts + 0.2),
                    raw="{}",
                    id_sms_api=mid,
                    login=login,
                    date_status=at(ts),
                )
            )
        for c in range(rng.choice((0, 0, 0, 1, 2))):
            tc = t_sent + 40 + rng.uniform(0, 60)
            out.append(
                records.ClickCallback(
                    event_id=f"cl-{mid}-{c}",
                    phone_number=phone,
                    received_at=at(tc + 0.1),
                    raw="{}",
                    id_sms_api=mid,
                    link="https://example.com/x",
                    date=at(tc),
                )
            )
    for j in range(max(1, n_messages // 20)):
        phone = f"+3361{j % 250:07d}"
        body = rng.choice(("STOP", "arrêt !", "Start", "thanks", "please don't stop"))
        out.append(
            records.IncomingSms(
                event_id=f"in-{seed}-{j}",
                from_number=phone,
                body=body,
                received_at=at(rng.uniform(0, span_s)),
                raw="{}",
                device_identification=rng.choice((*LOGINS, None)),
            )
        )
        out.append(
            records.CallEvent(
                event_id=f"call-{seed}-{j}",
                direction=rng.choice(("MISSED", "INCOMING")),
                phone_number=phone,
                received_at=at(rng.uniform(0, span_s)),
                raw="{}",
                device_identification=rng.choice(LOGINS),
            )
        )
        out.append(  # flagged: no id_sms_api, keyed by phone, skipped by correlation
            records.StatusCallback(
                event_id=f"noid-{seed}-{j}",
                phone_number=phone,
                status="received",
                received_at=at(rng.uniform(0, span_s)),
                raw="{}",
                flags=("MISSING_ID_SMS_API",),
            )
        )
    return out


def shuffled_with_duplicates(events: Iterable[Any], *, seed: int, dup_rate: float) -> list[Any]:
    """Every event once, callbacks (not sends) a second time with probability `dup_rate`."""
    rng = random.Random(seed)
    out = list(events)
    dups = [
        e
        for e in out
        if not isinstance(e, records.SendRequest | records.SendResult) and rng.random() < dup_rate
    ]
    out.extend(dups)
    rng.shuffle(out)
    return out


async def produce(bootstrap: str, prefix: str, events: Iterable[Any]) -> int:
    """Produce records to their topics, keyed as the contract says; returns how many."""
    from aiokafka import AIOKafkaProducer

    codec = make_codec(None)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    n = 0
    try:
        futures = []
        for ev in events:
            topic = topic_for_record(type(ev)).full_name(prefix)
            futures.append(await producer.send(topic, codec.encode(ev), key=record_key(ev)))
            n += 1
        await producer.flush()
        for fut in futures:
            await fut
    finally:
        await producer.stop()
    return n


class TopicReader:
    """Reads a whole topic from the beginning (no group); keeps the latest value per key."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.codec = make_codec(None)
        self.latest: dict[bytes, Any] = {}
        self.count = 0
        self.counts: Counter[bytes] = Counter()  # records read, by key
        self._consumer: Any = None

    async def __aenter__(self) -> TopicReader:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, group_id=None
        )
        await self._consumer.start()
        deadline = time.monotonic() + 20
        parts = None
        while not parts and time.monotonic() < deadline:
            cluster = await self._consumer._client.fetch_all_metadata()
            parts = cluster.partitions_for_topic(self.topic)
        if not parts:
            await self._consumer.stop()
            raise AssertionError(f"topic {self.topic} not found")
        tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        await self._consumer.seek_to_beginning(*tps)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def poll(self, timeout_ms: int = 500) -> int:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=5000)
        n = 0
        for msgs in batches.values():
            for m in msgs:
                self.latest[m.key] = None if m.value is None else self.codec.decode(m.value)
                self.counts[m.key] += 1
                n += 1
        self.count += n
        return n

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll until `condition()` holds; fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            await self.poll()


def recent_base(minutes_ago: int = 30) -> datetime:
    """A whole-minute start time in the recent past (the agents' watermarks cap at the clock)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    return now - timedelta(minutes=minutes_ago)
