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
   cannot hide queueing — no coordinated omission);
5. with `profile`, right after 1 and 4, a second loaded wrk run of the ingress under py-spy (so
   the figures of 1 are not perturbed by the sampler): its raw stacks go to that directory, and
   the CPU µs per callback of each thread and the main thread's by stage are printed at once
   (`pipeline.devtools.bench.profile`) and kept there in breakdown.txt.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.devtools.bench.broker import BenchCluster, bench_broker
from pipeline.devtools.bench.openloop import fixed_rate
from pipeline.devtools.bench.profile import (
    breakdown,
    folded,
    parse_raw,
    thread_cpu_delta,
)
from pipeline.devtools.bench.servers import (
    RssSampler,
    hello_argv,
    ingress_argv,
    naive_argv,
    running_server,
    tree_cpu_seconds,
    tree_thread_cpu,
)
from pipeline.devtools.bench.spoolrun import spool_run
from pipeline.devtools.bench.workload import TOKEN, encoded_records, generate_paths
from pipeline.devtools.bench.wrk import WrkResult, run_wrk, write_cycle_script
from pipeline.kafka.config import KafkaClientConfig
from pipeline.procutil import free_port

if TYPE_CHECKING:
    from pipeline.devtools.localkafka import Security

__all__ = ["find_py_spy", "ingress_callbacks_per_s", "run_ingress_bench"]

PY_SPY_RATE = 250
"""Samples per second of the profiled run (py-spy's default is 100)."""


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


def _loaded(pid: int, load: Callable[[], WrkResult]) -> tuple[WrkResult, float]:
    """A wrk run, and the server's CPU µs per request during it (process tree, all threads)."""
    before = tree_cpu_seconds(pid)
    result = load()
    spent = tree_cpu_seconds(pid) - before
    return result, spent / max(1, result.requests) * 1e6


def find_py_spy() -> str | None:
    """The py-spy binary: next to this Python (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("py-spy")


def _profiled(
    pid: int, py_spy: str, directory: Path, seconds: float, load: Callable[[float], WrkResult]
) -> list[str]:
    """A wrk run under py-spy (raw stacks into `directory`) and its breakdown, as lines (also
    written to `directory`/breakdown.txt)."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / "stacks.txt"
    raw.unlink(missing_ok=True)
    duration = max(1, round(seconds))
    argv = [
        py_spy, "record", "--pid", str(pid), "--subprocesses", "--threads", "--nonblocking",
        "--rate", str(PY_SPY_RATE), "--duration", str(duration), "--format", "raw",
        "--output", str(raw),
    ]  # fmt: skip
    log = directory / "py-spy.log"
    with log.open("w", encoding="utf-8") as stderr:
        spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
        time.sleep(1.0)  # attached and sampling before the load starts; the load outlasts it
        before = tree_thread_cpu(pid)
        result = load(duration + 1)
        cpu = thread_cpu_delta(before, tree_thread_cpu(pid))
        load_average = os.getloadavg()[0]
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
    lines = [
        f"profile: a second wrk run under py-spy ({PY_SPY_RATE} Hz, {duration} s): "
        f"{_ok_per_s(result):,.0f} callbacks/s, load average {load_average:.1f} after it; "
        f"{directory}/: stacks.txt (py-spy raw), main-thread.folded (flamegraph.pl, "
        f"speedscope), breakdown.txt"
    ]
    if spy.returncode != 0 or not raw.exists():
        said = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        lines.append(f"profile: py-spy exited {spy.returncode}: {said[-1] if said else '-'}")
    samples = parse_raw(raw.read_text(encoding="utf-8")) if raw.exists() else []
    found = breakdown(samples, cpu, result.requests)
    (directory / "main-thread.folded").write_text(folded(samples, found.main_tid), "utf-8")
    lines.extend(found.lines())
    (directory / "breakdown.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def _create_topic(client: KafkaClientConfig, name: str, brokers: int) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    from pipeline.kafka.admin import replication_for

    admin = KafkaAdminClient(**client.kafka_python())
    try:
        admin.create_topics([NewTopic(name, 6, replication_for(brokers))])
    finally:
        admin.close()


def _ingress_env(cluster: BenchCluster, prefix: str, tmp: Path, **extra: str) -> dict[str, str]:
    """The ingress's environment: the cluster, the run's topics and token, a spool in `tmp`."""
    env = cluster.subprocess_env(
        PIPELINE_TOPIC_PREFIX=prefix,
        PIPELINE_CALLBACK_TOKEN=TOKEN,
        INGRESS_SPOOL_DIR=str(tmp / "spool"),
        **extra,
    )
    env.pop("SCHEMA_REGISTRY_URL", None)
    return env


def ingress_callbacks_per_s(
    cluster: BenchCluster,
    paths: list[str],
    *,
    seconds: float,
    connections: int = 64,
    wrk_threads: int = 2,
    server: str = "granian",
    threads: int = 2,
) -> float:
    """Callbacks/s answered 2xx by the shipped ingress alone under wrk over `paths` (fresh
    topics, a 2-s warm-up first): the measured run of `bench ingress`, for `bench e2e`."""
    from pipeline.kafka.admin import ensure_topics

    with tempfile.TemporaryDirectory(prefix="bench-ingress-") as tmp:
        prefix = f"bench{uuid.uuid4().hex[:6]}."
        ensure_topics(cluster.client, prefix, 6)
        script = write_cycle_script(Path(tmp), paths)
        env = _ingress_env(cluster, prefix, Path(tmp))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with running_server(ingress_argv(port, server, threads), env, f"{base}/readyz"):
            run_wrk(base, script, connections, wrk_threads, 2)  # warm-up
            result = run_wrk(base, script, connections, wrk_threads, seconds)
    return _ok_per_s(result)


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
    profile: Path | None = None,
    py_spy: str | None = None,
    echo: Callable[[str], Any] = print,
) -> None:
    """Callbacks/s over real HTTP into Kafka, vs the naive peer, the floor and a bare producer;
    with `profile` (and `py_spy`, the binary), where the ingress's CPU goes."""
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
        naive_topic = f"{prefix}naive.callbacks"
        _create_topic(cluster.client, naive_topic, cluster.brokers)
        script = write_cycle_script(Path(tmp), paths)
        env = _ingress_env(cluster, prefix, Path(tmp), NAIVE_TOPIC=naive_topic)

        def wrk_on(base: str) -> Callable[[], WrkResult]:
            return lambda: run_wrk(base, script, connections, wrk_threads, seconds)

        def wrk_for(base: str) -> Callable[[float], WrkResult]:
            return lambda s: run_wrk(base, script, connections, wrk_threads, s)

        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with running_server(ingress_argv(port, server, threads), env, f"{base}/readyz") as pid:
            run_wrk(base, script, connections, wrk_threads, 2)  # warm-up
            with RssSampler(pid) as rss:
                ingress, ingress_cpu = _loaded(pid, wrk_on(base))
            ingress_load = os.getloadavg()[0]
            fixed = fixed_rate(port, paths, rate, seconds)
            if profile is not None and py_spy is not None:
                echo(
                    f"ingress (measured run, no sampler): {_ok_per_s(ingress):,.0f} callbacks/s, "
                    f"CPU {ingress_cpu:.0f} µs/callback, load average {ingress_load:.1f} after it"
                )
                for line in _profiled(pid, py_spy, profile, seconds, wrk_for(base)):
                    echo(line)
        naive_port = free_port()
        naive_base = f"http://127.0.0.1:{naive_port}"
        with running_server(naive_argv(naive_port), env, f"{naive_base}/healthz") as pid:
            run_wrk(naive_base, script, connections, wrk_threads, 2)
            naive, naive_cpu = _loaded(pid, wrk_on(naive_base))
        hello_port = free_port()
        hello_base = f"http://127.0.0.1:{hello_port}"
        with running_server(hello_argv(hello_port, server, threads), env, f"{hello_base}/x") as pid:
            run_wrk(hello_base, script, connections, wrk_threads, 2)
            hello, hello_cpu = _loaded(pid, wrk_on(hello_base))
        records = encoded_records(paths, prefix)
        producer_rate = asyncio.run(_produce(cluster.client, records, producer_records))
        outage = None
        if cluster.kafka is not None:
            spool_env = {**env, "INGRESS_SPOOL_DIR": str(Path(tmp) / "spool-outage")}
            outage_port = free_port()
            outage_argv = ingress_argv(outage_port, server, threads)
            outage = spool_run(cluster.kafka, outage_port, outage_argv, spool_env, paths, rate)

    callbacks_per_s = _ok_per_s(ingress)
    naive_per_s = _ok_per_s(naive)
    echo(
        f"ingress ({server}, spool on, {connections} connections, {seconds:g} s): "
        f"{callbacks_per_s:,.0f} callbacks/s, p50 {ingress.p50_ms:.1f} ms, "
        f"p99 {ingress.p99_ms:.1f} ms, non-2xx {ingress.non_2xx}, "
        f"socket errors {ingress.socket_errors}, CPU {ingress_cpu:.0f} µs/callback, "
        f"load average {ingress_load:.1f} after it"
    )
    echo(f"ingress RSS (peak, process tree): {rss.peak / 2**20:.0f} MB")
    echo(
        f"ingress at a fixed {rate}/s (open loop, {fixed['achieved_rate']:.0f}/s achieved): "
        f"p50 {fixed['p50_ms']:.1f} ms, p99 {fixed['p99_ms']:.1f} ms, "
        f"statuses {fixed['statuses']}"
    )
    echo(
        f"naive peer (FastAPI + uvicorn, aiokafka send_and_wait acks=all, same URLs): "
        f"{naive_per_s:,.0f} callbacks/s, p99 {naive.p99_ms:.1f} ms, non-2xx {naive.non_2xx}, "
        f"CPU {naive_cpu:.0f} µs/callback"
    )
    echo(
        f"hello ({server}, constant 200, same URLs): {hello.requests_per_s:,.0f} req/s, "
        f"p99 {hello.p99_ms:.1f} ms, CPU {hello_cpu:.0f} µs/request"
    )
    echo(
        f"producer (aiokafka acks=all idempotent linger 2 ms, no HTTP): "
        f"{producer_rate:,.0f} records/s"
    )
    if outage is not None:
        for line in outage.lines():
            echo(line)
    echo(f"RATIO ingress_vs_naive={callbacks_per_s / max(1.0, naive_per_s):.2f}")
    echo(f"RATIO ingress_vs_producer={callbacks_per_s / producer_rate:.2f}")
    echo(f"RATIO ingress_vs_hello={callbacks_per_s / hello.requests_per_s:.2f}")
    echo(f"RATIO ingress_cpu_us_per_callback={ingress_cpu:.0f}")
    echo(f"RATIO ingress_p99_ms_at_{rate}={fixed['p99_ms']:.1f}")
    if outage is not None:
        echo(f"RATIO spool_drain_seconds={outage.drain_seconds:.1f}")


def _ok_per_s(result: WrkResult) -> float:
    """Requests/s that were answered 2xx."""
    ok = result.requests - result.non_2xx
    return result.requests_per_s * ok / max(1, result.requests)
