"""`ardary-pipeline bench outbound`: the outbound agent's rate accuracy, peak and raw throughput.

Real pieces only: the configured (or a local, `--nodes`/`--security`) Kafka cluster, the
simulator and worker subprocesses over real HTTP; every client gets the cluster's TLS/SASL
settings. Figures come from the simulator's ledger (its acceptance times), not from the
workers' own counts. Each run is done with one worker, then with two.

1. `rate`: rate R, a backlog is published, the first 2 s are warm-up, then `--seconds` are
   measured: achieved/R (`rate_accuracy`) and the largest count in any sliding 1-s window ÷ R
   (`rate_peak`);
2. `unlimited`: throughput (batches of 100);
3. `paced`: rate `--paced-rate` with a backlog and the simulator answering in
   `--paced-latency-ms`: achieved/R (`paced_rate_accuracy`), the peak, and the mean messages
   per Ardary call (the messages the simulator accepted with one acceptance time);
4. `login`: two logins with rates of their own (`--login-rates`, OUTBOUND_RATE_PER_LOGIN) inside
   a global rate of twice their sum, both with a backlog: the worse of the two achieved/rate
   (`login_rate_accuracy`, farther from 1) and of the two peaks ÷ rate (`login_rate_peak`);
5. duplicates in the ledger (must be 0).
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

__all__ = [
    "RUNS",
    "login_figures",
    "messages_per_call",
    "peak_per_second",
    "rate_figures",
    "run_outbound_bench",
    "unlimited_throughput",
]

PARTITIONS = 6
WARMUP = 2.0
RUNS = ("rate", "unlimited", "paced", "login")
_LOGIN, _KEY = "bench", "bench-key"
_RATED = ("bench-a", "bench-b")  # the login run's two logins
_ACCOUNTS = {login: _KEY for login in (_LOGIN, *_RATED)}


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


def _measured(stamps: list[float], seconds: float) -> list[float]:
    start = min(stamps) + WARMUP
    return [t for t in stamps if start <= t < start + seconds]


def rate_figures(stamps: list[float], rate: float, seconds: float) -> tuple[float, float]:
    """(achieved/rate, peak/rate) over `seconds` after a warm-up from the first acceptance."""
    if not stamps:
        return 0.0, 0.0
    window = _measured(stamps, seconds)
    return len(window) / seconds / rate, peak_per_second(window) / rate


def messages_per_call(stamps: list[float], seconds: float) -> float:
    """Mean messages per Ardary call in the measured window: the simulator stamps every message
    of one call with the call's one acceptance time."""
    if not stamps:
        return 0.0
    window = _measured(stamps, seconds)
    return len(window) / max(1, len(set(window)))


def login_figures(
    stamps_by_login: dict[str, list[float]], rates: dict[str, float], seconds: float
) -> tuple[float, float]:
    """(achieved/rate farthest from 1, largest peak/rate) over the logins of `rates`."""
    figures = [
        rate_figures(stamps_by_login.get(login, []), r, seconds) for login, r in rates.items()
    ]
    accuracy = max((a for a, _ in figures), key=lambda a: abs(a - 1.0))
    return accuracy, max(p for _, p in figures)


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
                json.dumps(_ACCOUNTS),
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

    def configure(self, **changes: Any) -> None:
        httpx.post(f"{self.url}/_sim/config", json=changes, timeout=30).raise_for_status()

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


def _publish(
    client: KafkaClientConfig, topic: str, batches: list[tuple[str, int]], tag: str
) -> None:
    """Publish `count` requests of each `(login, count)`, interleaved as campaigns arrive."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka import KafkaProducer

    codec = make_codec(None)
    producer = KafkaProducer(
        **client.kafka_python(), acks="all", linger_ms=20, batch_size=256 * 1024
    )
    now = datetime.now(UTC)
    try:
        for i in range(max(count for _, count in batches)):
            for login, count in batches:
                if i < count:
                    r = SendRequest(
                        f"{tag}{login}-{i}", login, "+33612345678", "Bench message", now
                    )
                    producer.send(topic, key=record_key(r), value=codec.encode(r))
        producer.flush(120)
    finally:
        producer.close()


def _env(
    cluster: BenchCluster, prefix: str, sim: _Sim, rate: float, **extra: str
) -> dict[str, str]:
    """A worker's complete environment: the cluster's settings and the run's."""
    return cluster.subprocess_env(
        PIPELINE_TOPIC_PREFIX=prefix,
        PIPELINE_PARTITIONS=str(PARTITIONS),
        ARDARY_BASE_URL=f"{sim.url}/api",
        ARDARY_ACCESS_KEYS=json.dumps(_ACCOUNTS),
        ARDARY_MODE="prod",
        OUTBOUND_RATE_PER_SECOND=str(rate),
        OUTBOUND_MAX_BATCH="100",
        **extra,
    )


def _run(
    cluster: BenchCluster,
    sim: _Sim,
    workdir: Path,
    workers: int,
    rate: float,
    batches: list[tuple[str, int]],
    timeout: float,
    **env: str,
) -> list[dict[str, Any]]:
    """One run: workers up, the backlog published, every message in the ledger; the ledger."""
    prefix = f"bench{uuid4().hex[:6]}."
    client = cluster.client
    ensure_topics(client, prefix, PARTITIONS)
    sim.reset()
    count = sum(n for _, n in batches)
    with _workers(workers, _env(cluster, prefix, sim, rate, **env), workdir):
        wait_until(_group_stable(client, f"{prefix}workers", workers), 120, "a stable group")
        _publish(client, f"{prefix}sms.send-requests", batches, prefix)
        wait_until(lambda: sim.stats()["unique_ids"] >= count, timeout, "the simulator's ledger")
        return sim.ledger()


def _stamps(entries: list[dict[str, Any]], login: str | None = None) -> list[float]:
    return [float(m["first_accepted_at"]) for m in entries if login in (None, m["login"])]


def _throughput(stamps: list[float]) -> float:
    """Messages/s between the first and the last acceptance."""
    span = max(stamps) - min(stamps)
    return len(stamps) / span if span > 0 else float("inf")


def unlimited_throughput(cluster: BenchCluster, messages: int, workdir: Path) -> float:
    """Msg/s of one outbound worker with no rate limit, on the simulator's clock: the unlimited
    run with one worker, alone (its simulator and logs in `workdir`), for `bench e2e`."""
    sim = _Sim(workdir)
    try:
        return _throughput(_stamps(_run(cluster, sim, workdir, 1, 1e9, [(_LOGIN, messages)], 600)))
    finally:
        sim.stop()


def run_outbound_bench(
    *,
    seconds: float,
    rate: float,
    messages: int,
    paced_rate: float = 200.0,
    paced_latency_ms: float = 300.0,
    login_rates: tuple[float, float] = (20.0, 80.0),
    runs: tuple[str, ...] = RUNS,
    nodes: int | None = None,
    security: Security | None = None,
    echo: Callable[[str], Any] = print,
) -> None:
    """The chosen runs (`RUNS`, see the module docstring) with 1 and 2 workers, on the
    configured cluster or a local one of `nodes` nodes with `security`; RATIO lines last."""
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(bench_broker(nodes, security))
        echo(f"cluster: {cluster.describe()}")
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-out-")))
        sim = _Sim(workdir)
        stack.callback(sim.stop)
        bench = _Bench(cluster, sim, workdir, seconds, echo)
        if "rate" in runs:
            bench.rate_run(rate)
        if "unlimited" in runs:
            bench.unlimited_run(messages)
        if "paced" in runs:
            bench.paced_run(paced_rate, paced_latency_ms)
        if "login" in runs:
            bench.login_run(dict(zip(_RATED, login_rates, strict=True)))
        echo(f"duplicates in the ledger: {bench.duplicates}")
        bench.lines.append(f"RATIO ledger_duplicates={bench.duplicates}")
        for line in bench.lines:
            echo(line)


class _Bench:
    """The runs of one `bench outbound`, sharing a broker, a simulator and the RATIO lines."""

    def __init__(
        self,
        cluster: BenchCluster,
        sim: _Sim,
        workdir: Path,
        seconds: float,
        echo: Callable[[str], Any],
    ) -> None:
        self.cluster = cluster
        self.sim = sim
        self.workdir = workdir
        self.seconds = seconds
        self.echo = echo
        self.duplicates = 0
        self.lines: list[str] = []

    def _run(
        self, workers: int, rate: float, batches: list[tuple[str, int]], timeout: float, **env: str
    ) -> list[dict[str, Any]]:
        entries = _run(self.cluster, self.sim, self.workdir, workers, rate, batches, timeout, **env)
        self.duplicates += self.sim.stats()["duplicate_ids"]
        return entries

    def _backlog(self, rate: float) -> int:
        return int(rate * (self.seconds + WARMUP + 3))

    def rate_run(self, rate: float) -> None:
        for workers in (1, 2):
            entries = self._run(workers, rate, [(_LOGIN, self._backlog(rate))], self.seconds + 120)
            accuracy, peak = rate_figures(_stamps(entries), rate, self.seconds)
            suffix = "" if workers == 1 else "_2w"
            self.echo(
                f"rate {rate:g}/s, {workers} worker(s), {self.seconds:g} s measured: "
                f"{accuracy * rate:.1f} msg/s, peak {peak * rate:.0f} in 1 s"
            )
            self.lines += [
                f"RATIO rate_accuracy{suffix}={accuracy:.4f}",
                f"RATIO rate_peak{suffix}={peak:.4f}",
            ]

    def unlimited_run(self, messages: int) -> None:
        for workers in (1, 2):
            stamps = _stamps(self._run(workers, 1e9, [(_LOGIN, messages)], 600))
            throughput = _throughput(stamps)
            self.echo(f"unlimited, {workers} worker(s): {len(stamps)} msgs, {throughput:.0f} msg/s")
            self.lines.append(
                f"RATIO unlimited{'' if workers == 1 else '_2w'}_msgs_per_s={throughput:.0f}"
            )

    def paced_run(self, rate: float, latency_ms: float) -> None:
        self.sim.configure(latency_ms=latency_ms)
        try:
            for workers in (1, 2):
                entries = self._run(
                    workers, rate, [(_LOGIN, self._backlog(rate))], self.seconds + 120
                )
                stamps = _stamps(entries)
                accuracy, peak = rate_figures(stamps, rate, self.seconds)
                per_call = messages_per_call(stamps, self.seconds)
                suffix = "" if workers == 1 else "_2w"
                self.echo(
                    f"paced {rate:g}/s, Ardary answering in {latency_ms:g} ms, {workers} "
                    f"worker(s): {accuracy * rate:.1f} msg/s, peak {peak * rate:.0f} in 1 s, "
                    f"{per_call:.1f} messages per call"
                )
                self.lines += [
                    f"RATIO paced_rate_accuracy{suffix}={accuracy:.4f}",
                    f"RATIO paced_rate_peak{suffix}={peak:.4f}",
                    f"RATIO paced_msgs_per_call{suffix}={per_call:.1f}",
                ]
        finally:
            self.sim.configure(latency_ms=0)

    def login_run(self, rates: dict[str, float]) -> None:
        overall = 2 * sum(rates.values())
        env = {"OUTBOUND_RATE_PER_LOGIN": json.dumps(rates)}
        for workers in (1, 2):
            batches = [(login, self._backlog(r)) for login, r in rates.items()]
            entries = self._run(workers, overall, batches, self.seconds + 120, **env)
            by_login = {login: _stamps(entries, login) for login in rates}
            for login, r in rates.items():
                achieved, peak = rate_figures(by_login[login], r, self.seconds)
                self.echo(
                    f"login {login} at {r:g}/s (global {overall:g}/s), {workers} worker(s): "
                    f"{achieved * r:.2f} msg/s, peak {peak * r:.0f} in 1 s"
                )
            accuracy, peak = login_figures(by_login, rates, self.seconds)
            suffix = "" if workers == 1 else "_2w"
            self.lines += [
                f"RATIO login_rate_accuracy{suffix}={accuracy:.4f}",
                f"RATIO login_rate_peak{suffix}={peak:.4f}",
            ]
