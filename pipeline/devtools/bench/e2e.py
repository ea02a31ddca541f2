"""`ardary-pipeline bench e2e`: the whole pipeline's sustained rate against its slowest stage.

One broker (`bench_broker`), one run:
1. each stage alone, with the functions of its own benchmark at a reduced size: the outbound
   worker (send requests → the simulator's accepted sends, no rate limit), the ingress (status
   callbacks/s over real HTTP, wrk), the correlate worker (preloaded events/s) and the sink
   (lifecycle rows/s into DuckDB);
2. the whole pipeline, started by the demo's stack (`pipeline.devtools.stack.stack.run_stack`):
   the simulator firing status callbacks at the ingress, the ingress, one worker, the DuckDB
   sink. N non-marketing send requests are published (no sending window applies) and the clock
   runs from the first publish until `sms.lifecycle` shows all N DELIVERED and the sink's group
   has committed everything (lag 0): the DuckDB file is the sink's while it runs. Then the sink
   is stopped and the warehouse itself must hold the N rows DELIVERED, else the run fails;
3. every stage's rate in messages/s: its own unit ÷ what one message costs that stage in the
   e2e run (status callbacks, events, lifecycle records per message, counted on the e2e run's
   topics), the slowest of them, the CPU each process of the e2e run used, how long the machine
   and the worker were saturated (CPU read every SAMPLE_EVERY_S), and the RATIO lines
   (`pipeline.devtools.bench.e2efigures`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from pipeline.devtools.bench.broker import KAFKA_CLIENT_VARIABLES, BenchCluster, bench_broker
from pipeline.devtools.bench.e2efigures import (
    IDLE_SECONDS,
    CpuSample,
    E2eRun,
    delivered_rate_between,
    histogram_sum_count,
    is_complete,
    report,
    stage_sizes,
)
from pipeline.devtools.waiting import wait_until
from pipeline.errors import PipelineError

if TYPE_CHECKING:
    from pipeline.devtools.localkafka import Security
    from pipeline.devtools.stack.stack import Stack

__all__ = ["run_e2e_bench"]

PARTITIONS = 6  # as the stage benchmarks
DELIVERY_DELAY_MS = 50.0  # the simulator's `received` comes 40-60 ms after the accepted send
ID_PREFIX = "e2e-"
SAMPLE_EVERY_S = 0.5  # CPU counters read this often during the run (saturation over time)
_QUIET_SIMULATOR = (  # status callbacks only: no clicks, replies, STOPs or calls
    "--click-probability", "0", "--reply-probability", "0",
    "--stop-probability", "0", "--missed-call-probability", "0",
)  # fmt: skip


def run_e2e_bench(
    *,
    requests: int,
    ingress_seconds: float = 10.0,
    nodes: int | None = None,
    security: Security | None = None,
    echo: Callable[[str], Any] = print,
) -> E2eRun:
    """The stages alone, then the whole pipeline, on one cluster; figures, then RATIO lines."""
    if shutil.which("wrk") is None:
        raise PipelineError("bench e2e: the ingress stage needs `wrk` (apt-get install wrk)")
    load = os.getloadavg()
    echo(
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} before the run "
        f"(others share this machine); {requests:,} messages end to end"
    )
    sizes = stage_sizes(requests)
    with (
        bench_broker(nodes, security) as cluster,
        tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp,
    ):
        echo(f"cluster: {cluster.describe()}")
        raw = _stages_alone(cluster, sizes, ingress_seconds, Path(tmp), echo)
        # kept when the run fails: its logs are the evidence
        run_dir = Path(tempfile.mkdtemp(prefix=f"bench-e2e{uuid4().hex[:6]}-"))
        run = _whole_pipeline(cluster, requests, run_dir, echo)
        shutil.rmtree(run_dir, ignore_errors=True)
    from pipeline.topics import WAREHOUSE_TOPICS

    report(raw, run, [s.name for s in WAREHOUSE_TOPICS], echo)
    return run


def _stages_alone(
    cluster: BenchCluster,
    sizes: Mapping[str, int],
    ingress_seconds: float,
    tmp: Path,
    echo: Callable[[str], Any],
) -> dict[str, tuple[float, str]]:
    """Each stage alone: name → (rate in its own unit, what was measured)."""
    from pipeline.devtools.bench.correlate import correlate_events_per_s
    from pipeline.devtools.bench.ingress import ingress_callbacks_per_s
    from pipeline.devtools.bench.outbound import unlimited_throughput
    from pipeline.devtools.bench.sink import sink_duckdb_rows_per_s
    from pipeline.devtools.bench.workload import generate_paths

    raw: dict[str, tuple[float, str]] = {}
    n = sizes["outbound"]
    workdir = tmp / "outbound"
    workdir.mkdir()
    raw["outbound"] = (unlimited_throughput(cluster, n, workdir), f"{n:,} send requests, 1 worker")
    echo(f"alone: outbound worker, {raw['outbound'][1]}: {raw['outbound'][0]:,.0f} msgs/s")
    paths = [p for p in generate_paths(5000) if "?status=" in p]  # the statuses of its mix
    rate = ingress_callbacks_per_s(cluster, paths, seconds=ingress_seconds)
    raw["ingress"] = (rate, f"wrk 64 connections {ingress_seconds:g} s, {len(paths):,} status URLs")
    echo(f"alone: ingress, {raw['ingress'][1]}: {rate:,.0f} status callbacks/s")
    n = sizes["correlate"]
    raw["correlate"] = (correlate_events_per_s(cluster, n), f"{n:,} preloaded events")
    echo(f"alone: correlate worker, {raw['correlate'][1]}: {raw['correlate'][0]:,.0f} events/s")
    n = sizes["sink"]
    raw["sink"] = (sink_duckdb_rows_per_s(cluster, n), f"{n:,} lifecycle records, DuckDB")
    echo(f"alone: sink, {raw['sink'][1]}: {raw['sink'][0]:,.0f} rows/s")
    return raw


@contextlib.contextmanager
def _cluster_environ(cluster: BenchCluster) -> Iterator[None]:
    """os.environ naming `cluster` (its TLS/SASL settings too) while the stack runs: the demo's
    stack hands its children this process's environment plus the bootstrap servers only."""
    saved = {k: os.environ.get(k) for k in KAFKA_CLIENT_VARIABLES}
    for name in KAFKA_CLIENT_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(cluster.env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _requests(n: int) -> Iterator[Any]:
    """`n` plain (non-marketing) one-segment send requests over the demo's three logins."""
    from pipeline.devtools.stack.traffic import DEMO_ACCOUNTS
    from pipeline.records import SendRequest

    logins = sorted(DEMO_ACCOUNTS)
    now = datetime.now(UTC)
    for i in range(n):
        yield SendRequest(
            id_sms_api=f"{ID_PREFIX}{i:07d}",
            login=logins[i % len(logins)],
            phone_number=f"+3361{i % 10_000_000:07d}",
            message=f"Your code is {100000 + i % 900000}.",
            requested_at=now,
            marketing=False,
        )


def _whole_pipeline(
    cluster: BenchCluster, requests: int, run_dir: Path, echo: Callable[[str], Any]
) -> E2eRun:
    from pipeline.devtools.stack.stack import StackOptions, run_stack
    from pipeline.sinks.runner import READY_EVENT

    settings = cluster.settings(pipeline_topic_prefix="bench-", schema_registry_url=None)
    options = StackOptions(
        run_dir=run_dir,
        partitions=PARTITIONS,
        rate_per_second=1e9,  # no rate limit: the outbound figure alone is unlimited too
        delivery_delay_ms=DELIVERY_DELAY_MS,
        simulator_args=_QUIET_SIMULATOR,
    )
    started = time.monotonic()
    with _cluster_environ(cluster), run_stack(settings, options) as stack:
        sink = next(c for c in stack.processes.children if c.name == "sink")
        wait_until(
            lambda: READY_EVENT in sink.log_path.read_text(errors="replace"),
            90,
            f"the sink to join its group ({sink.log_path})",
        )
        echo(
            f"e2e: the demo's stack up in {time.monotonic() - started:.1f} s (simulator, "
            f"ingress, one worker with every agent, DuckDB sink; {PARTITIONS} partitions); "
            f"logs in {run_dir}"
        )
        run = _measure(stack, cluster, requests, settings)
        if stack.processes.stop(sink) not in (0, None):
            raise PipelineError(f"the sink did not stop cleanly (log: {sink.log_path})")
        run.warehouse_rows, run.warehouse_delivered = _warehouse(stack.warehouse_path)
    if run.warehouse_rows != requests or run.warehouse_delivered != requests:
        raise PipelineError(
            f"warehouse check FAILED: sms_lifecycle holds {run.warehouse_rows} of the run's "
            f"{requests} messages, {run.warehouse_delivered} DELIVERED (logs: {run_dir})"
        )
    return run


def _cpu(stack: Stack, broker_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of each of the stack's processes, the broker and this process."""
    from pipeline.devtools.bench.servers import tree_cpu_seconds

    found = {
        c.name: tree_cpu_seconds(c.proc.pid) for c in stack.processes.children if c.proc is not None
    }
    if broker_pid is not None:
        found["broker"] = tree_cpu_seconds(broker_pid)
    found["this bench (publisher, reader)"] = time.process_time()
    return found


def _measure(stack: Stack, cluster: BenchCluster, requests: int, settings: Any) -> E2eRun:
    """Publish `requests`, wait until Kafka says the warehouse has them all DELIVERED."""
    from kafka import KafkaConsumer

    from pipeline.devtools.stack.stack import sink_lag
    from pipeline.kafka.send_requests import SendRequestPublisher
    from pipeline.records import SmsLifecycle
    from pipeline.serde import codec_for
    from pipeline.topics import spec_for

    codec = codec_for(settings)
    consumer = KafkaConsumer(
        spec_for("sms.lifecycle").full_name(stack.prefix),
        **stack.client.kafka_python(),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    delivered: dict[str, float] = {}  # id → when sms.lifecycle first showed it DELIVERED
    states: dict[str, str] = {}  # id → its latest state on sms.lifecycle (for a failure)
    lag: list[int] = []
    run = E2eRun(requests)
    broker_pid = cluster.kafka.pid if cluster.kafka is not None else None
    ingress_metrics = stack.ingress_url.split("/callbacks", 1)[0] + "/metrics"
    try:
        acks_before = _ingress_acks(ingress_metrics)
        idle = _cpu(stack, broker_pid)
        time.sleep(IDLE_SECONDS)  # a measured window, not a wait: what each costs with no traffic
        before = _cpu(stack, broker_pid)
        run.idle_cores = {n: (before[n] - idle.get(n, 0.0)) / IDLE_SECONDS for n in before}
        sample = _cpu_sampler(stack, run.cpu_samples)
        start, wall_start = time.monotonic(), time.time()
        sample(force=True)
        with SendRequestPublisher(stack.client, prefix=stack.prefix, codec=codec) as publisher:
            for request in _requests(requests):
                publisher.publish(request)
            publisher.flush(120)
        run.published_in = time.monotonic() - start

        def done() -> bool:
            stack.processes.check_alive()
            sample(force=False)
            for batch in consumer.poll(timeout_ms=200).values():
                now = time.monotonic()
                for message in batch:
                    record = codec.decode(message.value)
                    if isinstance(record, SmsLifecycle) and record.id_sms_api.startswith(ID_PREFIX):
                        states[record.id_sms_api] = record.state
                        if record.state == "DELIVERED":
                            delivered.setdefault(record.id_sms_api, now - start)
            if len(delivered) < requests:
                return False
            lag.append(sink_lag(stack))
            return is_complete(len(delivered), requests, lag[-1])

        # a failure bound only: ~20 msgs/s end to end on this loaded 2-core box
        try:
            wait_until(done, 120 + requests / 5, f"{requests} messages DELIVERED and sink lag 0")
        except PipelineError as exc:
            raise PipelineError(f"{exc}: {_stuck(stack, states, requests)}") from exc
        run.seconds = time.monotonic() - start
        sample(force=True)
        after = _cpu(stack, broker_pid)
        acks = [b - a for a, b in zip(acks_before, _ingress_acks(ingress_metrics), strict=True)]
        run.ingress_ack_seconds = acks[0] / acks[1] if acks[1] > 0 else None
    finally:
        consumer.close()
    run.delivered_seen_in = max(delivered.values())
    run.steady_msgs_per_s = delivered_rate_between(list(delivered.values()))
    run.cpu_seconds = {name: after[name] - before.get(name, 0.0) for name in after}
    run.counts = _topic_counts(stack)
    run.sends_accepted_in = _last_acceptance(stack.simulator_url) - wall_start
    return run


def _cpu_sampler(stack: Stack, samples: list[CpuSample]) -> Callable[..., None]:
    """A function that appends a `CpuSample` (the machine, the worker) to `samples`: at once
    with `force`, else when SAMPLE_EVERY_S has passed since the last one."""
    from pipeline.devtools.bench.servers import machine_busy_seconds, tree_cpu_seconds

    worker = next(c for c in stack.processes.children if c.name == "worker")
    pid = worker.proc.pid if worker.proc is not None else None

    def sample(*, force: bool) -> None:
        now = time.monotonic()
        if force or not samples or now - samples[-1].at >= SAMPLE_EVERY_S:
            used = tree_cpu_seconds(pid) if pid is not None else 0.0
            samples.append(CpuSample(now, machine_busy_seconds(), used))

    return sample


def _stuck(stack: Stack, states: Mapping[str, str], requests: int) -> str:
    """Where a run that did not complete stands: the lifecycles' states on sms.lifecycle, what
    the simulator fired, the workers' and the sink's lag by partition, the logs."""
    import httpx

    from pipeline.kafka.lag import group_lag_by_partition
    from pipeline.sinks.runner import sink_topics
    from pipeline.topics import TOPICS

    tally = Counter(states.values())
    tally["(no lifecycle)"] = requests - len(states)
    sim = httpx.get(f"{stack.simulator_url}/_sim/stats", timeout=30).json()
    inputs = [spec.full_name(stack.prefix) for spec in TOPICS]
    workers = group_lag_by_partition(stack.client, f"{stack.prefix}workers", inputs)
    sink = group_lag_by_partition(stack.client, stack.sink_group, sink_topics(stack.prefix))
    return (
        f"lifecycles by state {dict(tally)}; simulator accepted {sim['accepted']}, callbacks "
        f"{sim['callbacks']}; workers' lag {workers or 0}; sink's lag {sink or 0}; logs in "
        f"{stack.processes.run_dir}"
    )


def _last_acceptance(simulator_url: str) -> float:
    """The epoch second in which the simulator accepted its last send (its ledger's clock)."""
    import httpx

    stats = httpx.get(f"{simulator_url}/_sim/stats", timeout=30).json()
    return float(max(int(second) for second in stats["accepted_per_second"]) + 1)


def _ingress_acks(url: str) -> tuple[float, float]:
    """The ingress's publish → broker-ack histogram so far: (seconds summed, callbacks)."""
    import httpx

    text = httpx.get(url, timeout=10).text
    return histogram_sum_count(text, "ardary_ingress_publish_seconds")


def _topic_counts(stack: Stack) -> dict[str, int]:
    """Records on each of the run's topics (unprefixed name → sum of end offsets)."""
    from kafka import TopicPartition

    from pipeline.kafka.lag import admin_and_consumer
    from pipeline.topics import TOPICS

    counts: dict[str, int] = {}
    with admin_and_consumer(stack.client, "bench-e2e") as (_admin, consumer):
        for spec in TOPICS:
            topic = spec.full_name(stack.prefix)
            tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            counts[spec.name] = sum(int(o) for o in consumer.end_offsets(tps).values())
    return counts


def _warehouse(path: Path) -> tuple[int, int]:
    """(rows of the run's messages in sms_lifecycle, of them DELIVERED), read from the file."""
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        row = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE state = 'DELIVERED') FROM sms_lifecycle "
            "WHERE starts_with(id_sms_api, ?)",
            [ID_PREFIX],
        ).fetchone()
    finally:
        con.close()
    return (int(row[0]), int(row[1])) if row else (0, 0)
