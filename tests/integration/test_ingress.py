"""The ingress over real HTTP with the real broker: what it accepts is in Kafka, nothing is lost."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote
from uuid import uuid4

import httpx
import pytest

from pipeline.devtools.localkafka import LocalKafka
from pipeline.kafka.admin import ensure_topics
from pipeline.records import DeadLetter
from pipeline.serde import AvroCodec, SchemaStore
from pipeline.settings import Settings, load_settings
from pipeline.topics import TOPICS, spec_for
from tests.unit.ingress.samples import incoming_json, seed_samples, status_json

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from aiokafka import AIOKafkaConsumer, TopicPartition

pytestmark = pytest.mark.integration

TOKEN = "integration-Token-42"
CODEC = AvroCodec(SchemaStore.load())


def ingress_settings(bootstrap: str, prefix: str) -> Settings:
    """The ingress without its spool (INGRESS_SPOOL_DIR empty): what the broker alone does;
    tests/integration/test_ingress_spool.py runs it with one."""
    return load_settings(
        kafka_bootstrap_servers=bootstrap,
        pipeline_topic_prefix=prefix,
        pipeline_callback_token=TOKEN,
        schema_registry_url=None,
        ingress_spool_dir="",
    )


async def read_all(
    bootstrap: str, topics: Iterable[str], done: Callable[[list[Any]], bool], timeout: float = 60
) -> list[Any]:
    """Decoded records of `topics` from the beginning, until `done(records)` or the deadline."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [
            TopicPartition(t, p)
            for t in topics
            for p in (consumer.partitions_for_topic(t) or await _partitions(consumer, t))
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done(found):
            if loop.time() > deadline:
                pytest.fail(f"records not found in Kafka within {timeout:g}s")
            batches = await consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                found.extend(CODEC.decode(m.value) for m in messages)
        return found
    finally:
        await consumer.stop()


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()
    return consumer.partitions_for_topic(topic) or set()


def all_topics(prefix: str) -> list[str]:
    return [s.full_name(prefix) for s in TOPICS if s.name.startswith("callbacks.")]


async def test_every_callback_is_in_kafka_and_every_reject_in_the_dead_letters(
    kafka_bootstrap: str, unique_prefix: str
) -> None:
    from pipeline.devtools.ingress_runner import run_ingress

    await asyncio.to_thread(ensure_topics, kafka_bootstrap, unique_prefix, 3)
    settings = ingress_settings(kafka_bootstrap, unique_prefix)
    samples = seed_samples()
    bad_queries = [b"status=%7Bbroken", b"status=%FF%FE", b"calls=%5B1%5D", b"nothing=1"]
    async with (
        run_ingress(settings) as ingress,
        httpx.AsyncClient(base_url=ingress.url, timeout=30) as client,
    ):
        url = ingress.callback_url(TOKEN)
        good = await asyncio.gather(
            *(client.get(f"{url}?{s.query().decode()}") for s in samples),
            client.get(f"{url}?status={quote(status_json('two'), safe='')}"
                       f"&message={quote(incoming_json('Ça marche 🎉'), safe='')}"),
            client.post(url, json={"clics": {"id_sms_api": "p1", "phone_number": "+33612345678"}}),
        )  # fmt: skip
        bad = [await client.get(f"{url}?{q.decode()}") for q in bad_queries]
        wrong = await client.get(f"{ingress.url}/callbacks/nope?{samples[0].query().decode()}")
    assert [r.status_code for r in good] == [200] * len(good), [r.text for r in good]
    assert [r.status_code for r in bad] == [400] * len(bad)
    assert wrong.status_code == 404
    accepted = {a["event_id"]: a for r in good for a in r.json()["accepted"]}
    assert len(accepted) == len(samples) + 3
    dead_topic = spec_for("callbacks.dead-letter").full_name(unique_prefix)

    def complete(records: list[Any]) -> bool:
        ids = {r.event_id for r in records}
        letters = [r for r in records if isinstance(r, DeadLetter)]
        return set(accepted) <= ids and len(letters) >= len(bad_queries)

    records = await read_all(kafka_bootstrap, all_topics(unique_prefix), complete)
    by_id = {r.event_id: r for r in records}
    kinds = {s.kind for s in samples}
    for event_id, answer in accepted.items():
        assert answer["kind"] in kinds | {"status", "incoming_sms", "click"}
        assert by_id[event_id].event_id == event_id
    letters = [r for r in records if isinstance(r, DeadLetter)]
    assert sorted(letter.raw for letter in letters) == sorted(bad_queries)
    for letter in letters:
        assert letter.method == "GET"
        assert TOKEN.encode() not in CODEC.encode(letter)
    assert dead_topic in all_topics(unique_prefix)


async def test_broker_outage_gives_503s_never_a_false_200_and_recovers(
    local_kafka_factory: Callable[..., LocalKafka], unique_prefix: str
) -> None:
    from pipeline.devtools.ingress_runner import run_ingress

    broker = local_kafka_factory()
    bootstrap = broker.start()
    await asyncio.to_thread(ensure_topics, bootstrap, unique_prefix, 2)
    settings = ingress_settings(bootstrap, unique_prefix)
    answered: dict[str, int] = {}

    async def send(client: httpx.AsyncClient, url: str) -> httpx.Response:
        id_sms_api = f"out-{uuid4().hex[:10]}"
        response = await client.get(f"{url}?status={quote(status_json(id_sms_api), safe='')}")
        answered[id_sms_api] = response.status_code
        return response

    async with (
        run_ingress(settings) as ingress,
        # idle connections dropped by the client before uvicorn's 5-s keep-alive timeout closes
        # them: a request sent on one just as the server closed it failed with ReadError (CI)
        httpx.AsyncClient(
            base_url=ingress.url, timeout=30, limits=httpx.Limits(keepalive_expiry=1.0)
        ) as client,
    ):
        url = ingress.callback_url(TOKEN)
        before = await asyncio.gather(*(send(client, url) for _ in range(10)))
        assert [r.status_code for r in before] == [200] * 10

        await asyncio.to_thread(broker.stop)
        during = await asyncio.gather(*(send(client, url) for _ in range(20)))
        # The broker is gone: nothing can be acknowledged, so every answer is a 503 (the
        # request completed — httpx's 30 s timeout would have raised on a hang).
        assert [r.status_code for r in during] == [503] * 20
        assert {r.json()["error"] for r in during} == {"broker_unavailable"}
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200

        broker.start()  # same data directory and port (main thread: the JVM is tied to it)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 90
        while (await send(client, url)).status_code != 200:
            assert loop.time() < deadline, "the ingress did not recover after the broker returned"
            await asyncio.sleep(0.2)
        after = await asyncio.gather(*(send(client, url) for _ in range(10)))
        assert [r.status_code for r in after] == [200] * 10

    assert set(answered.values()) <= {200, 503}
    acknowledged = {i for i, code in answered.items() if code == 200}
    topic = spec_for("callbacks.status").full_name(unique_prefix)

    def complete(records: list[Any]) -> bool:
        return acknowledged <= {r.id_sms_api for r in records}

    records = await read_all(bootstrap, [topic], complete)
    assert acknowledged <= {r.id_sms_api for r in records}
