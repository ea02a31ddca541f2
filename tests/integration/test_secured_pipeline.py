"""The whole pipeline on the secured three-node cluster with the real schema registry.

One run (the module's `pipeline_run`) of what a user deploys: simulator, ingress, worker and
sink (`run_stack`) on the session's SASL_SSL cluster with SCHEMA_REGISTRY_* set. An upstream
app written with confluent-kafka publishes 500 send requests through its own `AvroSerializer`
under the default subject strategy (`<topic>-value`), one in ten of them with an older version
of the SendRequest schema. While Ardary takes them, the JVM leading a `sms.send-requests`
partition is SIGKILLed; the broker command (the session's cluster) says so, the others keep
serving, and it restarts the node on its data dir. The tests then check what that run left:

- every request has exactly one SendResult, Ardary's ledger has no id sent twice, and the
  warehouse holds exactly the records of the topics it loads;
- the requests written with the older schema were read by their schema id (their text reached
  Ardary, the field the old version lacks took its default);
- a downstream app's `AvroDeserializer` reads `sms.lifecycle`, `sms.send-results` and
  `callbacks.status` with the same field values as the pipeline's own decoder.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from uuid import uuid4

import httpx
import pytest
from confluent_kafka import Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from pipeline.devtools.chaos.probes import partition_leaders
from pipeline.devtools.stack.stack import Stack, StackOptions, run_stack
from pipeline.devtools.stack.traffic import demo_requests
from pipeline.kafka.config import KafkaClientConfig
from pipeline.kafka.lag import group_lag, group_lag_by_partition
from pipeline.records import Record, SendRequest, SendResult
from pipeline.serde import Codec, SchemaStore, codec_for, record_to_dict
from pipeline.settings import Settings, load_settings
from pipeline.sinks.runner import sink_topics
from pipeline.topics import WAREHOUSE_TOPICS
from tests.conftest import Registry, SecuredCluster
from tests.environ import setting_variables
from tests.kafka_read import TopicReader, read_topic
from tests.polling import wait_until

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.errors import KafkaError

# The first test's set-up is the whole run (its waits bound it: ~3-4 min on a loaded box).
pytestmark = [pytest.mark.integration, pytest.mark.secured, pytest.mark.timeout(900)]

N = 500
OLD_EVERY = 10  # every tenth request is written with the older SendRequest schema
RATE = 40.0  # Ardary calls per second: ~12 s of sending, so the kill lands mid-run
KILL_AFTER = 120  # accepted by Ardary when the leader is killed

R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class PipelineRun:
    """What the run left behind, read once the stack stopped."""

    prefix: str
    settings: Settings
    client: KafkaClientConfig
    sent: dict[str, SendRequest]
    old_ids: frozenset[str]
    killed_node: int
    accepted_at_kill: int
    ledger: dict[str, dict[str, Any]]
    topics: dict[str, list[Any]]  # spec name -> raw kafka-python records, after the stop
    warehouse: dict[str, list[tuple[Any, ...]]]  # table -> primary-key rows
    subject_versions: list[int]


def _now_in_millis() -> datetime:
    """Now, at the precision of Avro's timestamp-millis (what a decoded record holds)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _old_send_request_schema() -> dict[str, Any]:
    """SendRequest as it was before `marketing` (a field with a default: a compatible change)."""
    current = SchemaStore.load().current("SendRequest").source
    old = {**current, "fields": [f for f in current["fields"] if f["name"] != "marketing"]}
    assert len(old["fields"]) == len(current["fields"]) - 1
    return old


def _registry_client(registry: Registry) -> SchemaRegistryClient:
    return SchemaRegistryClient(
        {"url": registry.url, "basic.auth.user.info": f"{registry.user}:{registry.password}"}
    )


def _as_upstream_dict(record: SendRequest, ctx: SerializationContext) -> dict[str, Any]:
    return record_to_dict(record)


def _publish_upstream(
    client: KafkaClientConfig, registry: Registry, topic: str, requests: list[SendRequest]
) -> None:
    """What an upstream team's confluent-kafka app does: AvroSerializer, default subject
    strategy (`<topic>-value`), the Java client's partitioner (murmur2, so the pipeline's
    co-partitioning holds), acks=all. The old schema is registered first: version 1."""
    sr = _registry_client(registry)
    current = json.dumps(SchemaStore.load().current("SendRequest").source)
    old = AvroSerializer(sr, json.dumps(_old_send_request_schema()), _as_upstream_dict)
    new = AvroSerializer(sr, current, _as_upstream_dict)
    ctx = SerializationContext(topic, MessageField.VALUE)
    producer = Producer(
        {**client.librdkafka(), "partitioner": "murmur2_random", "acks": "all", "linger.ms": 5}
    )
    failed: list[str] = []

    def delivered(err: Any, msg: Any) -> None:
        if err is not None:
            failed.append(f"{msg.key()!r}: {err}")

    for n, request in enumerate(requests):
        serializer = old if n % OLD_EVERY == 0 else new
        producer.produce(
            topic,
            key=request.id_sms_api.encode(),
            value=serializer(request, ctx),
            on_delivery=delivered,
        )
        producer.poll(0)
    assert producer.flush(60) == 0, "upstream records still unsent after 60 s"
    assert not failed, failed[:5]


def _decoded(codec: Codec, value: bytes, kind: type[R]) -> R:
    record = codec.decode(value)
    assert isinstance(record, kind), f"a {type(record).__name__} where a {kind.__name__} belongs"
    return record


def _leaders(client: KafkaClientConfig, topic: str) -> dict[int, int]:
    """Partition → leader (partitions between leaders left out), or {} while the admin client
    reaches no live broker (its first bootstrap may be the node just killed: kafka-python does
    not try the next one)."""
    try:
        return partition_leaders(client, topic)
    except KafkaError:
        return {}


def _coordinator_of(client: KafkaClientConfig, group: str) -> int | None:
    """The broker coordinating `group` (librdkafka's admin: kafka-python has no public call)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client.librdkafka())
    (future,) = admin.describe_consumer_groups([group], request_timeout=10).values()
    try:
        return int(future.result().coordinator.id)
    except Exception:  # a diagnostic: the caller falls back to partition 0
        return None


def _librdkafka_committed(client: KafkaClientConfig, group: str) -> dict[str, int]:
    """The group's committed offsets as librdkafka reads them (a second opinion on the lag)."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client.librdkafka())
    request = [ConsumerGroupTopicPartitions(group)]
    (future,) = admin.list_consumer_group_offsets(request, request_timeout=10).values()
    try:
        found = future.result().topic_partitions or []
    except Exception as exc:  # a diagnostic
        return {"error": repr(exc)}  # type: ignore[dict-item]
    return {f"{tp.topic}[{tp.partition}]": tp.offset for tp in found}


def _sim(stack: Stack, path: str) -> Any:
    return httpx.get(f"{stack.simulator_url}/_sim/{path}", timeout=10).json()


def _warehouse_keys(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    import duckdb

    conn = duckdb.connect(str(path), read_only=True)
    try:
        out = {}
        for spec in WAREHOUSE_TOPICS:
            assert spec.warehouse is not None
            table = spec.warehouse
            columns = ", ".join(f'"{name}"' for name in table.primary_key)  # `window` is reserved
            out[table.table] = conn.execute(f"SELECT {columns} FROM {table.table}").fetchall()
        return out
    finally:
        conn.close()


def _drive(
    stack: Stack,
    settings: Settings,
    cluster: SecuredCluster,
    registry: Registry,
    requests: list[SendRequest],
) -> tuple[int, int]:
    """Publish, kill the leader of a `sms.send-requests` partition mid-run (the one led by the
    worker group's coordinator when there is one: the harder case), restart it, wait until
    all is done."""
    requests_topic = f"{stack.prefix}sms.send-requests"
    coordinator = _coordinator_of(stack.client, f"{stack.prefix}workers")
    leaders = _leaders(stack.client, requests_topic)
    assert leaders, "no broker answered before the kill"
    partition = next((p for p, node in sorted(leaders.items()) if node == coordinator), 0)
    leader = leaders[partition]
    _publish_upstream(stack.client, registry, requests_topic, requests)

    def accepted() -> int:
        stack.processes.check_alive()
        return int(_sim(stack, "stats")["unique_ids"])

    wait_until(lambda: accepted() >= KILL_AFTER, 120, f"{KILL_AFTER} sends accepted by Ardary")
    said_before = len(cluster.command.stderr())
    cluster.command.kill_node(leader)
    accepted_at_kill = accepted()
    # the broker command says so, the others keep serving, and it starts the node again itself
    exited = cluster.command.wait_said(f"Kafka node {leader} exited", 30, after=said_before)
    assert "the others keep serving" in exited, exited
    wait_until(
        lambda: _leaders(stack.client, requests_topic).get(partition) not in (leader, None),
        60,
        f"a new leader for {requests_topic}-{partition} after node {leader} was killed",
        interval=0.5,
    )
    cluster.command.wait_said(f"Kafka node {leader} is back", 180, after=said_before)
    assert len(cluster.command.jvms()) == 3

    results = f"{stack.prefix}sms.send-results"
    with TopicReader(stack.client, results, codec_for(settings)) as reader:
        reader.wait_ids([r.id_sms_api for r in requests], timeout=180)
    wait_until(
        lambda: _sim(stack, "stats")["callbacks_pending"] == 0, 60, "the simulator's callbacks"
    )
    # the last callbacks reach the worker through the ingress: the worker has read them all
    inputs = [
        f"{stack.prefix}{name}"
        for name in (
            "sms.send-requests",
            "sms.send-results",
            "callbacks.status",
            "callbacks.clicks",
        )
    ]
    group = f"{stack.prefix}workers"
    try:
        wait_until(
            lambda: group_lag(stack.client, group, inputs) == 0,
            90,
            "the worker to commit every input record",
            interval=1.0,
        )
    except AssertionError as timed_out:
        lagging = group_lag_by_partition(stack.client, group, inputs)
        theirs = _librdkafka_committed(stack.client, group)
        gauges = [
            line
            for line in httpx.get(f"{stack.worker_url}/metrics", timeout=10).text.splitlines()
            if line.startswith("ardary_consumer_lag")
        ]
        raise AssertionError(
            f"{timed_out}; lag {lagging}; librdkafka reads {theirs}; worker gauges {gauges}"
        ) from None
    return leader, accepted_at_kill


@pytest.fixture(scope="module")
def pipeline_run(
    secured_cluster: SecuredCluster,
    schema_registry: Registry,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[PipelineRun]:
    run_dir = tmp_path_factory.mktemp("secured-stack") / "run"
    requests = list(demo_requests(N, seed=uuid4().int % 10_000, clock=_now_in_millis))
    with pytest.MonkeyPatch.context() as env:
        for name in setting_variables():
            env.delenv(name)
        environment = {
            **secured_cluster.settings,
            **schema_registry.settings(),
            "PIPELINE_TOPIC_PREFIX": f"t{uuid4().hex[:8]}.",
        }
        for name, value in environment.items():
            env.setenv(name, value)
        settings = load_settings()
        options = StackOptions(run_dir=run_dir, rate_per_second=RATE)
        with run_stack(settings, options) as stack:
            killed, accepted_at_kill = _drive(
                stack, settings, secured_cluster, schema_registry, requests
            )
            ledger = {m["id_sms_api"]: m for m in _sim(stack, "ledger")["messages"]}
            for name in ("worker", "ingress", "simulator"):
                (child,) = [c for c in stack.processes.children if c.name == name]
                assert stack.processes.stop(child) == 0, child.log_tail()
            wait_until(
                lambda: group_lag(stack.client, stack.sink_group, sink_topics(stack.prefix)) == 0,
                90,
                "the sink to commit every record",
                interval=1.0,
            )
            prefix, client = stack.prefix, stack.client
        topics = {
            spec.name: read_topic(client, spec.full_name(prefix)) for spec in WAREHOUSE_TOPICS
        }
        topics["sms.send-requests"] = read_topic(client, f"{prefix}sms.send-requests")
        subject = f"{prefix}sms.send-requests-value"
        yield PipelineRun(
            prefix=prefix,
            settings=settings,
            client=client,
            sent={r.id_sms_api: r for r in requests},
            old_ids=frozenset(r.id_sms_api for n, r in enumerate(requests) if n % OLD_EVERY == 0),
            killed_node=killed,
            accepted_at_kill=accepted_at_kill,
            ledger=ledger,
            topics=topics,
            warehouse=_warehouse_keys(run_dir / "warehouse.duckdb"),
            subject_versions=_registry_client(schema_registry).get_versions(subject),
        )


# -- the tests -------------------------------------------------------------------------------


def test_a_killed_partition_leader_loses_nothing_and_sends_nothing_twice(
    pipeline_run: PipelineRun,
) -> None:
    run = pipeline_run
    assert run.accepted_at_kill < N, "the kill came too late to land mid-run"
    codec = codec_for(run.settings)
    results = [_decoded(codec, r.value, SendResult) for r in run.topics["sms.send-results"]]
    per_id = Counter(r.id_sms_api for r in results)
    assert set(per_id) == set(run.sent), "a request without a result, or a result of no request"
    assert [i for i, n in per_id.items() if n != 1] == [], "a request with two results"
    assert [i for i, m in run.ledger.items() if m["submissions"] != 1] == [], "sent twice"
    assert set(run.ledger) <= set(run.sent)
    for result in results:
        if result.outcome == "SUBMITTED":
            assert result.id_sms_api in run.ledger  # reported sent => Ardary has it


def test_the_warehouse_holds_exactly_the_records_of_its_topics(pipeline_run: PipelineRun) -> None:
    run = pipeline_run
    codec = codec_for(run.settings)
    for spec in WAREHOUSE_TOPICS:
        assert spec.warehouse is not None
        names = spec.warehouse.primary_key
        records = [codec.decode(r.value) for r in run.topics[spec.name]]
        expected = {tuple(_key_value(getattr(rec, n)) for n in names) for rec in records}
        rows = run.warehouse[spec.warehouse.table]
        got = [tuple(_key_value(v) for v in row) for row in rows]
        assert len(got) == len(set(got)), spec.warehouse.table
        assert set(got) == expected, (
            f"{spec.warehouse.table}: {len(got)} rows, {len(expected)} keys"
        )
    assert run.warehouse["sms_send_results"], "no results loaded at all"
    assert run.warehouse["callbacks_status"], "no status callback loaded at all"


def _key_value(value: Any) -> Any:
    """A key as comparable text: datetimes as UTC instants (DuckDB returns naive UTC)."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat()
    return value


def test_records_of_an_older_schema_version_are_read_by_their_schema_id(
    pipeline_run: PipelineRun,
) -> None:
    run = pipeline_run
    assert len(run.subject_versions) == 2, run.subject_versions  # the old one, then the current
    ids_by_version: dict[int, set[str]] = {}
    for record in run.topics["sms.send-requests"]:
        assert record.value[:1] == b"\x00"  # Confluent framing
        schema_id = int.from_bytes(record.value[1:5], "big")
        ids_by_version.setdefault(schema_id, set()).add(record.key.decode())
    assert len(ids_by_version) == 2
    assert run.old_ids in ids_by_version.values()
    codec = codec_for(run.settings)
    for raw in run.topics["sms.send-requests"]:
        decoded = _decoded(codec, raw.value, SendRequest)
        assert decoded == run.sent[decoded.id_sms_api]  # `marketing` from the reader's default
    delivered_old = [i for i in run.old_ids if i in run.ledger]
    assert delivered_old, "no request of the older schema reached Ardary"
    for id_sms_api in delivered_old:
        entry, sent = run.ledger[id_sms_api], run.sent[id_sms_api]
        assert (entry["message"], entry["phone_number"]) == (sent.message, sent.phone_number)


@pytest.mark.parametrize("topic", ["sms.lifecycle", "sms.send-results", "callbacks.status"])
def test_a_downstream_avro_deserializer_reads_what_our_decoder_reads(
    topic: str, pipeline_run: PipelineRun, schema_registry: Registry
) -> None:
    run = pipeline_run
    deserializer = AvroDeserializer(_registry_client(schema_registry))
    ctx = SerializationContext(f"{run.prefix}{topic}", MessageField.VALUE)
    codec = codec_for(run.settings)
    raws = run.topics[topic]
    assert raws, f"nothing on {topic}"
    for raw in raws:
        theirs = deserializer(raw.value, ctx)
        ours = record_to_dict(codec.decode(raw.value))
        assert _plain(theirs) == _plain(ours)


def _plain(value: Any) -> Any:
    """Lists for tuples (our records hold arrays as tuples), recursively."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
