"""`ardary-pipeline bench correlate`: the correlate worker's throughput, overhead, latency, RSS.

1. Pre-load N mixed events (request, result, sent, received per message) on fresh topics.
2. Bare loop: aiokafka `getmany` → decode → encode → produce (batched, not awaiting each send)
   over the same events → events/s, the ceiling of any consumer in Python on this machine.
3. One worker (`--agents correlate`, RocksDB) drains them → events/s, from its
   `/metrics` counter; `RATIO correlate_vs_bare=` worker / bare.
4. Latency: once the worker has committed every drained event (idle), status callbacks
   through the in-process ingress at a fixed rate, sent with aiohttp (httpx's client cost more
   CPU per request than the ingress and fell behind the rate); p99 from the ingress's 200 to
   the lifecycle record read from `sms.lifecycle`.
5. RSS of the worker process once it holds `--live` lifecycles.
6. Recovery (`pipeline.devtools.bench.recovery`): SIGKILL that worker, restart it on the same
   data dir, and time it until it processes new events (`RATIO recovery_seconds_1m=` for a
   million live lifecycles); then the same on an empty data dir (a full restore, reported).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote
from uuid import uuid4

from pipeline import records
from pipeline.devtools.bench.broker import BenchCluster, bench_broker
from pipeline.devtools.bench.recovery import recovery_label, seconds_to_resume
from pipeline.devtools.waiting import wait_until
from pipeline.errors import PipelineError
from pipeline.kafka.admin import ensure_topics, replication_for
from pipeline.kafka.config import KafkaClientConfig
from pipeline.kafka.lag import group_lag
from pipeline.kafka.readers import topic_partitions
from pipeline.kafka.worker import READY_LINE
from pipeline.procutil import die_with_parent, free_port
from pipeline.serde import make_codec
from pipeline.topics import record_key, topic_for_record

if TYPE_CHECKING:
    from pipeline.devtools.localkafka import Security

__all__ = [
    "TooFewEvents",
    "correlate_events_per_s",
    "mixed_events",
    "percentile",
    "run_correlate_bench",
]

SOURCES = ("sms.send-requests", "sms.send-results", "callbacks.status", "callbacks.clicks")
_WORKER = (sys.executable, "-m", "pipeline", "worker", "--agents", "correlate")
_COUNTER = re.compile(r'^ardary_agent_events_processed_total\{agent="correlate"\} (\S+)$', re.M)


def mixed_events(n_events: int, base: datetime) -> list[records.Record]:
    """`n_events` events, four per message: request, result, `sent`, `received`."""
    out: list[records.Record] = []
    for i in range((n_events + 3) // 4):
        mid = f"b{i:08d}"
        phone = f"+3361{i % 10_000_000:07d}"
        t = base + timedelta(milliseconds=i)
        out.append(records.SendRequest(mid, "bench", phone, "hello", t))
        out.append(
            records.SendResult(mid, "bench", phone, "SUBMITTED", t, sent_time=t, sms_per_message=1)
        )
        for k, status in enumerate(("sent", "received")):
            at = t + timedelta(seconds=k + 1)
            out.append(
                records.StatusCallback(
                    f"s-{mid}-{status}", phone, status, at, "{}", mid, "bench", date_status=at
                )
            )
    return out[:n_events]


async def _produce(client: KafkaClientConfig, items: list[tuple[str, bytes | None, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        **client.aiokafka(), linger_ms=20, max_batch_size=512 * 1024, acks=1
    )
    await producer.start()
    try:
        futs = [await producer.send(topic, value, key=key) for topic, key, value in items]
        await producer.flush()
        for fut in futs:
            await fut
    finally:
        await producer.stop()


async def _bare_loop(
    client: KafkaClientConfig, topics: list[str], out_topic: str, total: int
) -> float:
    """getmany → decode → encode → produce until `total` records passed; returns events/s."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    codec = make_codec(None)
    consumer = AIOKafkaConsumer(
        **client.aiokafka(), enable_auto_commit=False, max_partition_fetch_bytes=4 << 20
    )
    producer = AIOKafkaProducer(**client.aiokafka(), linger_ms=20, max_batch_size=512 << 10)
    await consumer.start()
    await producer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in await topic_partitions(consumer, t)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        seen = 0
        start = time.perf_counter()
        while seen < total:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for msgs in batches.values():
                for m in msgs:
                    value = codec.encode(codec.decode(m.value))
                    await producer.send(out_topic, value, key=m.key)
                seen += len(msgs)
        await producer.flush()
        return total / (time.perf_counter() - start)
    finally:
        await consumer.stop()
        await producer.stop()


def _create_topic(cluster: BenchCluster, name: str, partitions: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(**cluster.client.kafka_python())
    try:
        admin.create_topics([NewTopic(name, partitions, replication_for(cluster.brokers))])
    finally:
        admin.close()


def _processed(port: int) -> float:
    import httpx

    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    found = _COUNTER.search(text)
    return float(found.group(1)) if found else 0.0


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class TooFewEvents(PipelineError):
    """The worker drained every event between two polls of its counter: no rate to give."""


def _drain_rate(port: int, target: float, timeout: float) -> float:
    """Events/s between the first and the `target`-th processed event (polled from /metrics)."""
    first: tuple[float, float] | None = None
    deadline = time.monotonic() + timeout
    while True:
        n, t = _processed(port), time.perf_counter()
        if first is None and n > 0:
            first = (n, t)
        if n >= target and first is not None:
            if n <= first[0]:  # everything between two polls: no interval to divide by
                raise TooFewEvents(
                    f"the worker processed all {target:.0f} events before a second /metrics "
                    "poll: too few to measure (--events)"
                )
            return (n - first[0]) / max(t - first[1], 1e-9)
        if time.monotonic() > deadline:
            raise PipelineError(f"worker processed {n:.0f}/{target:.0f} in time")
        time.sleep(0.05)


async def _latency(
    cluster: BenchCluster, prefix: str, rate: float, seconds: float, base: datetime, spool: Path
) -> list[float]:
    """ms from each callback's HTTP 200 to its lifecycle record on the topic.

    The ingress spools into `spool` (empty, the bench's own): the default directory is relative
    to the working directory, and callbacks left there by another run would be forwarded first.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from pipeline.devtools.ingress_runner import run_ingress
    from pipeline.devtools.simulator.sender import CallbackSender, NotDelivered

    settings = cluster.settings(pipeline_topic_prefix=prefix, ingress_spool_dir=spool)
    codec = make_codec(None)
    acked: dict[str, float] = {}
    seen: dict[str, float] = {}
    consumer = AIOKafkaConsumer(**cluster.client.aiokafka(), enable_auto_commit=False)
    await consumer.start()
    topic = f"{prefix}sms.lifecycle"
    consumer.assign([TopicPartition(topic, p) for p in await topic_partitions(consumer, topic)])
    await consumer.seek_to_end()
    sending_done = False
    all_seen = asyncio.Event()

    async def read() -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for msgs in batches.values():
                for m in msgs:
                    if m.value is None:
                        continue
                    rec = codec.decode(m.value)
                    if isinstance(rec, records.SmsLifecycle) and rec.id_sms_api.startswith("L"):
                        seen.setdefault(rec.id_sms_api, now)
            if sending_done and acked.keys() <= seen.keys():
                all_seen.set()

    reader = asyncio.create_task(read())
    sender = CallbackSender(64, timeout_s=10.0)  # aiohttp: the load must cost less than the work
    try:
        async with run_ingress(settings) as ingress:
            url = ingress.callback_url(None)

            async def one(i: int) -> None:
                payload = {
                    "user": "bench",
                    "phone_number": "+33612345678",
                    "status": "sent",
                    "date_status": (base + timedelta(milliseconds=i)).isoformat(),
                    "id_sms_api": f"L{i:07d}",
                }
                for _attempt in range(3):  # a kept-alive connection the server just closed
                    try:
                        status = await sender.get(f"{url}?status={quote(json.dumps(payload))}")
                    except NotDelivered:
                        continue
                    if status == 200:
                        acked[f"L{i:07d}"] = time.perf_counter()
                    return

            tasks = []
            start = time.perf_counter()
            for i in range(int(rate * seconds)):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
        sending_done = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_seen.wait(), 30)
    finally:
        await sender.aclose()
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await consumer.stop()
    return sorted(max(0.0, (seen[k] - acked[k]) * 1000) for k in acked if k in seen)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile of sorted `values` (NaN when there are none)."""
    if not values:
        return float("nan")
    return values[min(len(values) - 1, max(0, int(q * len(values) + 0.999999) - 1))]


def _preload(
    client: KafkaClientConfig, prefix: str, partitions: int, n_events: int, base: datetime
) -> list[tuple[str, bytes | None, bytes]]:
    """The run's topics, with `mixed_events` published on them; the records published."""
    ensure_topics(client, prefix, partitions)
    codec = make_codec(None)
    items = [
        (topic_for_record(type(e)).full_name(prefix), record_key(e), codec.encode(e))
        for e in mixed_events(n_events, base)
    ]
    asyncio.run(_produce(client, items))
    return items


def correlate_events_per_s(
    cluster: BenchCluster, n_events: int, partitions: int = 6, store: str = "rocksdb://"
) -> float:
    """Events/s of one correlate worker alone draining `n_events` preloaded mixed events (four
    per message): the throughput run of `bench correlate`, for `bench e2e`."""
    prefix = f"bench{uuid4().hex[:6]}."
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    items = _preload(cluster.client, prefix, partitions, n_events, base)
    env = cluster.subprocess_env(PIPELINE_TOPIC_PREFIX=prefix, PIPELINE_PARTITIONS=str(partitions))
    with tempfile.TemporaryDirectory(prefix="bench-correlate-") as tmp:
        worker = _Worker(env, store, Path(tmp))
        proc = worker.start("state")
        try:
            return _drain_rate(worker.port, len(items), 600)
        except TooFewEvents:
            return 0.0  # bench e2e's "no figure": a stage that is then never the slowest
        finally:
            _stop(proc)


def run_correlate_bench(
    *,
    n_events: int,
    partitions: int,
    live: int,
    rate: float,
    seconds: float,
    store: str,
    nodes: int | None = None,
    security: Security | None = None,
    with_recovery: bool = True,
    echo: Callable[[str], Any] = print,
) -> None:
    """Throughput of one correlate worker vs a bare aiokafka loop; latency p99; RSS; recovery."""
    with bench_broker(nodes, security) as cluster:
        echo(f"cluster: {cluster.describe()}")
        _bench(cluster, n_events, partitions, live, rate, seconds, store, with_recovery, echo)


def _bench(
    cluster: BenchCluster,
    n_events: int,
    partitions: int,
    live: int,
    rate: float,
    seconds: float,
    store: str,
    with_recovery: bool,
    echo: Callable[[str], Any],
) -> None:
    prefix = f"bench{uuid4().hex[:6]}."
    client = cluster.client
    codec = make_codec(None)
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    items = _preload(client, prefix, partitions, n_events, base)
    echo(f"preloaded {len(items)} events on {partitions} partitions ({prefix})")

    topics = [f"{prefix}{name}" for name in SOURCES]
    _create_topic(cluster, f"{prefix}bench-bare-out", partitions)
    bare = asyncio.run(_bare_loop(client, topics, f"{prefix}bench-bare-out", len(items)))
    echo(f"bare getmany→decode→encode→produce: {bare:,.0f} events/s")

    env = cluster.subprocess_env(PIPELINE_TOPIC_PREFIX=prefix, PIPELINE_PARTITIONS=str(partitions))
    recovery: tuple[float, float] | None = None
    with tempfile.TemporaryDirectory(prefix="bench-correlate-") as tmp:
        worker = _Worker(env, store, Path(tmp))
        proc = worker.start("state")
        try:
            rate_worker = _drain_rate(worker.port, len(items), 600)
            echo(f"correlate worker ({store}): {rate_worker:,.0f} events/s")

            # The drain's counter runs ahead of the worker's last outputs: started at once, the
            # first ~2 s of callbacks queued behind that tail (p99 1.7 s, 77 ms once idle).
            _wait_committed(client, prefix)
            lat = asyncio.run(_latency(cluster, prefix, rate, seconds, base, Path(tmp) / "spool"))
            echo(
                f"latency ingress 200 → sms.lifecycle at {rate:.0f}/s: n={len(lat)} "
                f"p50={percentile(lat, 0.5):.1f} ms p99={percentile(lat, 0.99):.1f} ms"
            )
            if live:
                _load_live(client, prefix, worker.port, live, base, codec)
                echo(f"worker RSS with {live:,} live lifecycles: {_rss_mb(proc.pid):.0f} MB")
                if with_recovery:
                    recovery, proc = _recovery(worker, proc, client, prefix, partitions, echo)
        finally:
            _stop(proc)
    echo(f"RATIO correlate_vs_bare={rate_worker / bare:.2f}")
    if recovery is not None:
        echo(f"RATIO recovery_seconds_{recovery_label(live)}={recovery[0]:.1f}")


class _Worker:
    """How to start `ardary-pipeline worker --agents correlate` here: env, store, log, port."""

    def __init__(self, env: dict[str, str], store: str, tmp: Path) -> None:
        self.env = env
        self.store = store
        self.tmp = tmp
        self.log_path = tmp / "worker.log"
        self.port = 0

    def spawn(self, state: str) -> subprocess.Popen[bytes]:
        """A worker on the data dir `tmp/state` (created empty when new), on a fresh web port."""
        self.port = free_port()
        with self.log_path.open("ab") as log:
            return subprocess.Popen(
                [
                    *_WORKER,
                    "--web-port",
                    str(self.port),
                    "--data-dir",
                    str(self.tmp / state),
                    "--store",
                    self.store,
                ],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench, which stops the worker
                preexec_fn=die_with_parent(signal.SIGTERM),  # a bench killed takes it along
            )

    def start(self, state: str) -> subprocess.Popen[bytes]:
        """`spawn`, then wait until the worker says it is ready (stopped if it does not)."""
        proc = self.spawn(state)
        try:
            wait_until(
                lambda: READY_LINE in self.log_text(), 120, f"worker ready ({self.log_path})"
            )
        except BaseException:
            _stop(proc)
            raise
        return proc

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _load_live(
    client: KafkaClientConfig, prefix: str, port: int, live: int, base: datetime, codec: Any
) -> None:
    """Publish `live` send requests (one lifecycle each) and wait until the worker took them."""
    done = _processed(port)
    extra = [
        records.SendRequest(f"R{i:08d}", "bench", "+33612345678", "x", base) for i in range(live)
    ]
    asyncio.run(
        _produce(
            client,
            [(f"{prefix}sms.send-requests", record_key(e), codec.encode(e)) for e in extra],
        )
    )
    wait_until(lambda: _processed(port) >= done + live, 1800, "live lifecycles", interval=1.0)


def _wait_committed(client: KafkaClientConfig, prefix: str) -> None:
    """Until the workers' group committed every input record: what a kill must not replay."""
    inputs = [f"{prefix}{name}" for name in SOURCES]
    wait_until(
        lambda: group_lag(client, f"{prefix}workers", inputs) == 0,
        120,
        "the worker to commit its inputs",
        interval=0.5,
    )


def _recovery(
    worker: _Worker,
    proc: subprocess.Popen[bytes],
    client: KafkaClientConfig,
    prefix: str,
    partitions: int,
    echo: Callable[[str], Any],
) -> tuple[tuple[float, float], subprocess.Popen[bytes]]:
    """SIGKILL, restart on the same data dir, then on an empty one; seconds until each resumes."""
    _wait_committed(client, prefix)
    _kill(proc)
    same, proc = seconds_to_resume(
        lambda: worker.spawn("state"), client, prefix, partitions, "probe-same", 600
    )
    echo(f"recovery after SIGKILL, same data dir: {same:.1f} s until new events are processed")
    _wait_committed(client, prefix)
    _kill(proc)
    empty, proc = seconds_to_resume(
        lambda: worker.spawn("state-empty"), client, prefix, partitions, "probe-empty", 1800
    )
    echo(f"recovery on an empty data dir (full restore): {empty:.1f} s")
    return (same, empty), proc
