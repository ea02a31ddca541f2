"""`ardary-pipeline bench ingress`: callbacks/s over real HTTP into the real broker, and baselines.

Runs, against the configured cluster (KAFKA_*, else a LocalKafka started here, of `nodes`
nodes with `security`), every client with the cluster's TLS/SASL settings:
1. the ingress (`ardary-pipeline ingress`, granian) loaded by `wrk` (a compiled load generator
   in its own process) with >= 64 connections cycling through pre-generated callback URLs of
   both dialects and realistic sizes → callbacks/s, p50/p99, ingress RSS (process tree);
2. the same server stack answering a constant 200 to the same URLs → `ingress_vs_hello`;
3. the same aiokafka producer (acks=all, idempotent) producing the same encoded records
   without HTTP through its plain `send()`, 2,048 in flight → `ingress_vs_producer`;
4. p50/p99 at a fixed 1,000 callbacks/s from an open-loop generator (a separate Python
   process: Debian has no wrk2; latency counts from the scheduled send time, so a slow server
   cannot hide queueing — no coordinated omission).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.devtools.bench.broker import bench_broker
from pipeline.devtools.bench.openloop import fixed_rate
from pipeline.devtools.bench.servers import RssSampler, hello_argv, ingress_argv, running_server
from pipeline.devtools.bench.workload import TOKEN, encoded_records, generate_paths
from pipeline.devtools.bench.wrk import run_wrk, write_cycle_script
from pipeline.kafka.config import KafkaClientConfig
from pipeline.procutil import free_port

if TYPE_CHECKING:
    from pipeline.devtools.localkafka import Security

__all__ = ["run_ingress_bench"]


async def _produce(
    client: KafkaClientConfig, records: list[tuple[str, bytes | None, bytes]], total: int
) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        **client.aiokafka(),
        acks="all",
        enable_idempotence=True,
        linger_ms=2,  # aiokafka's send() path at its best here (0 ms measured no faster)
        max_batch_size=256 * 1024,
    )
    await producer.start()
    try:
        window = 2048
        # warm-up: metadata for every topic
        await asyncio.gather(*[await producer.send(t, v, key=k) for t, k, v in records[:50]])
        started = time.perf_counter()
        pending: list[asyncio.Future[Any]] = []
        for n in range(total):
            topic, key, value = records[n % len(records)]
            pending.append(await producer.send(topic, value, key=key))
            if len(pending) >= window:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return total / (time.perf_counter() - started)
    finally:
        await producer.stop()


def run_ingress_bench(
    *,
    seconds: float,
    connections: int,
    wrk_threads: int,
    path_count: int,
    rate: int,
    producer_records: int,
    server: str,
    threads: int,
    nodes: int | None = None,
    security: Security | None = None,
    echo: Callable[[str], Any] = print,
) -> None:
    """Callbacks/s over real HTTP into Kafka, vs a hello server and a bare producer."""
    if shutil.which("wrk") is None:
        echo("bench ingress: skipped: `wrk` is not installed (apt-get install wrk)")
        return
    from pipeline.kafka.admin import ensure_topics

    paths = generate_paths(path_count)
    sizes = sorted(len(p) for p in paths)
    load = os.getloadavg()
    echo(
        f"workload: {len(paths)} distinct callback URLs, both dialects, "
        f"URL bytes p50 {sizes[len(sizes) // 2]} max {sizes[-1]}; "
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} (others share this machine)"
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp,
        bench_broker(nodes, security) as cluster,
    ):
        echo(f"cluster: {cluster.describe()}")
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        ensure_topics(cluster.client, prefix, 6)
        script = write_cycle_script(Path(tmp), paths)
        env = cluster.subprocess_env(PIPELINE_TOPIC_PREFIX=prefix, PIPELINE_CALLBACK_TOKEN=TOKEN)
        env.pop("SCHEMA_REGISTRY_URL", None)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with running_server(ingress_argv(port, server, threads), env, f"{base}/readyz") as pid:
            run_wrk(base, script, connections, wrk_threads, 2)  # warm-up
            with RssSampler(pid) as rss:
                ingress = run_wrk(base, script, connections, wrk_threads, seconds)
            fixed = fixed_rate(port, paths, rate, seconds)
        hello_port = free_port()
        hello_base = f"http://127.0.0.1:{hello_port}"
        with running_server(hello_argv(hello_port, server, threads), env, f"{hello_base}/x"):
            run_wrk(hello_base, script, connections, wrk_threads, 2)
            hello = run_wrk(hello_base, script, connections, wrk_threads, seconds)
        records = encoded_records(paths, prefix)
        producer_rate = asyncio.run(_produce(cluster.client, records, producer_records))

    ok = ingress.requests - ingress.non_2xx
    callbacks_per_s = ingress.requests_per_s * ok / max(1, ingress.requests)
    echo(
        f"ingress ({server}, {connections} connections, {seconds:g} s): "
        f"{callbacks_per_s:,.0f} callbacks/s, p50 {ingress.p50_ms:.1f} ms, "
        f"p99 {ingress.p99_ms:.1f} ms, non-2xx {ingress.non_2xx}, "
        f"socket errors {ingress.socket_errors}"
    )
    echo(f"ingress RSS (peak, process tree): {rss.peak / 2**20:.0f} MB")
    echo(
        f"ingress at a fixed {rate}/s (open loop, {fixed['achieved_rate']:.0f}/s achieved): "
        f"p50 {fixed['p50_ms']:.1f} ms, p99 {fixed['p99_ms']:.1f} ms, "
        f"statuses {fixed['statuses']}"
    )
    echo(
        f"hello ({server}, constant 200, same URLs): {hello.requests_per_s:,.0f} req/s, "
        f"p99 {hello.p99_ms:.1f} ms"
    )
    echo(
        f"producer (aiokafka acks=all idempotent linger 2 ms, no HTTP): "
        f"{producer_rate:,.0f} records/s"
    )
    echo(f"RATIO ingress_vs_producer={callbacks_per_s / producer_rate:.2f}")
    echo(f"RATIO ingress_vs_hello={callbacks_per_s / hello.requests_per_s:.2f}")
