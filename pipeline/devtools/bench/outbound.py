"""`ardary-pipeline bench outbound`: the outbound agent's rate accuracy, peak and raw throughput.

Real pieces only: the configured (or a local, `--nodes`/`--security`) Kafka cluster, the
simulator and worker subprocesses over real HTTP; every client gets the cluster's TLS/SASL
settings. Figures come from the simulator's ledger (its acceptance times),
not from the workers' own counts.

1. rate R with one worker, then with two: a backlog is published, the first 2 s are warm-up,
   then `--seconds` are measured: achieved/R (`rate_accuracy`) and the largest count in any
   sliding 1-s window ÷ R (`rate_peak`);
2. unlimited throughput (batches of 100) with one worker, then two;
3. duplicates in the ledger (must be 0).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import httpx

from pipeline.devtools.bench.broker import BenchCluster, bench_broker
from pipeline.devtools.waiting import wait_until
from pipeline.errors import PipelineError
from pipeline.kafka.admin import ensure_topics
from pipeline.kafka.config import KafkaClientConfig
from pipeline.procutil import free_port
from pipeline.records import SendRequest
from pipeline.serde import make_codec
from pipeline.topics import record_key

if TYPE_CHECKING:
    from pipeline.devtools.localkafka import Security

__all__ = ["peak_per_second", "rate_figures", "run_outbound_bench"]

PARTITIONS = 6
WARMUP = 2.0
_LOGIN, _KEY = "bench", "bench-key"


def peak_per_second(stamps: list[float]) -> int:
    """The largest number of timestamps inside any closed 1-s window."""
    stamps = sorted(stamps)
    best, j = 0, 0
    for i, start in enumerate(stamps):
        j = max(j, i)  # two pointers: the window [start, start + 1] is stamps[i:j]
        while j < len(stamps) and stamps[j] <= start + 1.0:
            j += 1
        best = max(best, j - i)
    return best


def rate_figures(stamps: list[float], rate: float, seconds: float) -> tuple[float, float]:
    """(achieved/rate, peak/rate) over `seconds` after a warm-up from the first acceptance."""
    if not stamps:
        return 0.0, 0.0
    start = min(stamps) + WARMUP
    window = [t for t in stamps if start <= t < start + seconds]
    return len(window) / seconds / rate, peak_per_second(window) / rate


class _Sim:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log = (workdir / "simulator.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline",
                "simulator",
                "--port",
                str(self.port),
                "--accounts",
                json.dumps({_LOGIN: _KEY}),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_until(self._up, 30, "the simulator")

    def _up(self) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/_sim/stats", timeout=1).status_code == 200
        return False

    def ledger(self) -> list[dict[str, Any]]:
        body = httpx.get(f"{self.url}/_sim/ledger", timeout=60).json()
        messages: list[dict[str, Any]] = body["messages"]
        return messages

    def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = httpx.get(f"{self.url}/_sim/stats", timeout=30).json()
        return stats

    def reset(self) -> None:
        httpx.post(f"{self.url}/_sim/reset", timeout=30).raise_for_status()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def _group_stable(client: KafkaClientConfig, group: str, members: int) -> Callable[[], bool]:
    """Whether the workers' consumer group settled with `members` members (shares divided)."""

    def check() -> bool:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from kafka.admin import KafkaAdminClient

        admin = KafkaAdminClient(**client.kafka_python(), client_id="bench-outbound")
        try:
            g = admin.describe_groups([group])[group]
        finally:
            admin.close()
        return bool(g["group_state"] == "Stable" and len(g["members"]) == members)

    return check


def _ready(log_path: Path, line: str) -> Callable[[], bool]:
    return lambda: line in log_path.read_text(errors="replace")


@contextlib.contextmanager
def _workers(n: int, env: dict[str, str], workdir: Path) -> Iterator[None]:
    """`n` outbound workers with environment `env` (complete: the cluster's settings in it)."""
    from pipeline.kafka.worker import READY_LINE

    procs: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for i in range(n):
            log_path = workdir / f"worker-{uuid4().hex[:6]}-{i}.log"
            with log_path.open("ab") as log:
                proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "pipeline",
                        "worker",
                        "--agents",
                        "outbound",
                        "--web-port",
                        str(free_port()),
                        "--data-dir",
                        str(workdir / f"state-{uuid4().hex[:6]}"),
                        "--store",
                        "rocksdb://",
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            procs.append((proc, log_path))
        for proc, log_path in procs:
            wait_until(_ready(log_path, READY_LINE), 120, f"worker ready ({log_path})")
            if proc.poll() is not None:
                raise PipelineError(f"worker exited, see {log_path}")
        yield
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _publish(client: KafkaClientConfig, topic: str, count: int, tag: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaProducer

    codec = make_codec(None)
    producer = KafkaProducer(
        **client.kafka_python(), acks="all", linger_ms=20, batch_size=256 * 1024
    )
    now = datetime.now(UTC)
    try:
        for i in range(count):
            r = SendRequest(f"{tag}-{i}", _LOGIN, "+33612345678", "Bench message", now)
            producer.send(topic, key=record_key(r), value=codec.encode(r))
        producer.flush(120)
    finally:
        producer.close()


def _env(cluster: BenchCluster, prefix: str, sim: _Sim, rate: float) -> dict[str, str]:
    return cluster.subprocess_env(
        PIPELINE_TOPIC_PREFIX=prefix,
        PIPELINE_PARTITIONS=str(PARTITIONS),
        ARDARY_BASE_URL=f"{sim.url}/api",
        ARDARY_LOGIN=_LOGIN,
        ARDARY_ACCESS_KEY=_KEY,
        ARDARY_MODE="prod",
        OUTBOUND_RATE_PER_SECOND=str(rate),
        OUTBOUND_MAX_BATCH="100",
    )


def _run(
    cluster: BenchCluster,
    sim: _Sim,
    workdir: Path,
    workers: int,
    rate: float,
    count: int,
    timeout: float,
) -> list[float]:
    prefix = f"bench{uuid4().hex[:6]}."
    client = cluster.client
    ensure_topics(client, prefix, PARTITIONS)
    sim.reset()
    with _workers(workers, _env(cluster, prefix, sim, rate), workdir):
        wait_until(_group_stable(client, f"{prefix}workers", workers), 120, "a stable group")
        _publish(client, f"{prefix}sms.send-requests", count, prefix)
        wait_until(lambda: sim.stats()["unique_ids"] >= count, timeout, "the simulator's ledger")
        stamps = [float(m["first_accepted_at"]) for m in sim.ledger()]
    return stamps


def run_outbound_bench(
    *,
    seconds: float,
    rate: float,
    messages: int,
    nodes: int | None = None,
    security: Security | None = None,
    echo: Callable[[str], Any] = print,
) -> None:
    """Rate accuracy and peak at --rate with 1 and 2 workers, then unlimited throughput, on the
    configured cluster or a local one of `nodes` nodes with `security`."""

    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(bench_broker(nodes, security))
        echo(f"cluster: {cluster.describe()}")
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-out-")))
        sim = _Sim(workdir)
        stack.callback(sim.stop)
        duplicates = 0
        lines: list[str] = []
        for workers in (1, 2):
            backlog = int(rate * (seconds + WARMUP + 3))
            stamps = _run(
                cluster,
                sim,
                workdir,
                workers,
                rate,
                backlog,
                seconds + 120,
            )
            duplicates += sim.stats()["duplicate_ids"]
            accuracy, peak = rate_figures(stamps, rate, seconds)
            suffix = "" if workers == 1 else "_2w"
            echo(
                f"rate {rate:g}/s, {workers} worker(s), {seconds:g} s measured: "
                f"{accuracy * rate:.1f} msg/s, peak {peak * rate:.0f} in 1 s"
            )
            lines += [
                f"RATIO rate_accuracy{suffix}={accuracy:.4f}",
                f"RATIO rate_peak{suffix}={peak:.4f}",
            ]
        for workers in (1, 2):
            stamps = _run(
                cluster,
                sim,
                workdir,
                workers,
                1e9,
                messages,
                600,
            )
            duplicates += sim.stats()["duplicate_ids"]
            span = max(stamps) - min(stamps)
            throughput = len(stamps) / span if span > 0 else float("inf")
            echo(f"unlimited, {workers} worker(s): {len(stamps)} msgs, {throughput:.0f} msg/s")
            lines.append(
                f"RATIO unlimited{'' if workers == 1 else '_2w'}_msgs_per_s={throughput:.0f}"
            )
        echo(f"duplicates in the ledger: {duplicates}")
        lines.append(f"RATIO ledger_duplicates={duplicates}")
        for line in lines:
            echo(line)
