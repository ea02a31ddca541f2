"""The local stack: broker, topics, simulator, ingress, worker and sink, wired together.

Every process but the broker is a child `ardary-pipeline <command>` with its log in the run
directory; the broker is the project's LocalKafka (or `KAFKA_BOOTSTRAP_SERVERS`). Children are
tied to this process (PDEATHSIG), so Ctrl-C or a crash of the demo leaves nothing behind.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pipeline.devtools.localkafka import LocalKafka
from pipeline.devtools.stack.processes import ProcessGroup, free_port, http_ok
from pipeline.devtools.stack.traffic import DEMO_ACCOUNTS
from pipeline.kafka.admin import ensure_topics
from pipeline.kafka.config import KafkaClientConfig
from pipeline.settings import Settings

__all__ = ["Stack", "StackOptions", "run_stack"]


@dataclass(frozen=True)
class StackOptions:
    """What differs between `demo` and `dev` (and tests)."""

    run_dir: Path
    dialect: str = "v2"
    seed: int = 7
    partitions: int = 3
    rate_per_second: float = 200.0
    delivery_delay_ms: float = 400.0
    simulator_args: tuple[str, ...] = ()  # extra `simulator` flags (tests: duplicates, shuffle)
    workers: int = 1  # worker processes, one group; each serves the dashboard on its own port


@dataclass(frozen=True)
class Stack:
    """A running stack: where everything is."""

    bootstrap: str
    client: KafkaClientConfig  # the stack's own clients' settings (TLS/SASL on a secured cluster)
    prefix: str
    processes: ProcessGroup
    simulator_url: str
    ingress_url: str
    worker_url: str
    warehouse_path: Path
    sink_group: str
    worker_urls: tuple[str, ...] = ()  # every worker's, `worker_url` first
    sink_url: str = ""  # the sink's /healthz, /readyz, /metrics


def _worker_ready(log_path: Path) -> bool:
    from pipeline.kafka.worker import READY_LINE

    try:
        return READY_LINE in log_path.read_text(errors="replace")
    except FileNotFoundError:
        return False


@contextmanager
def run_stack(settings: Settings, options: StackOptions) -> Iterator[Stack]:
    """Start everything; on exit stop it all (children in reverse order, then the broker)."""
    run_dir = options.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    broker: LocalKafka | None = None
    if settings.kafka_bootstrap_servers:
        client = KafkaClientConfig.from_settings(settings)
        bootstrap = client.bootstrap
        # a shared cluster: keep this run's topics apart from everything else on it
        prefix = f"{settings.pipeline_topic_prefix}{run_dir.name}."
    else:
        broker = LocalKafka(data_dir=run_dir / "kafka")
        bootstrap = broker.start()
        client = KafkaClientConfig(bootstrap)
        prefix = settings.pipeline_topic_prefix
    processes: ProcessGroup | None = None
    try:
        ensure_topics(client, prefix, options.partitions, settings.pipeline_replication_factor)
        sim_port, ingress_port = free_port(), free_port()
        worker_ports = [free_port() for _ in range(max(1, options.workers))]
        token = secrets.token_urlsafe(16)
        warehouse = run_dir / "warehouse.duckdb"
        sink_group = f"{prefix}warehouse"
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "PIPELINE_TOPIC_PREFIX": prefix,
            "PIPELINE_PARTITIONS": str(options.partitions),
            "PIPELINE_CALLBACK_TOKEN": token,
            "ARDARY_BASE_URL": f"http://127.0.0.1:{sim_port}/api",
            "ARDARY_ACCESS_KEYS": json.dumps(DEMO_ACCOUNTS),
            "ARDARY_MODE": "prod",
            "OUTBOUND_RATE_PER_SECOND": str(options.rate_per_second),
            "WAREHOUSE_URL": f"duckdb:///{warehouse}",
            "INGRESS_SPOOL_DIR": str(run_dir / "ingress-spool"),
        }
        processes = ProcessGroup(run_dir, env)
        callback_url = f"http://127.0.0.1:{ingress_port}/callbacks/{token}"
        processes.start(
            "simulator",
            [
                "simulator",
                "--port",
                str(sim_port),
                "--callback-url",
                callback_url,
                "--dialect",
                options.dialect,
                "--seed",
                str(options.seed),
                "--accounts",
                json.dumps(DEMO_ACCOUNTS),
                "--delivery-delay-ms",
                str(options.delivery_delay_ms),
                "--click-probability",
                "0.35",
                "--stop-probability",
                "0.03",
                *options.simulator_args,
            ],
            ready=http_ok(f"http://127.0.0.1:{sim_port}/_sim/stats"),
        )
        processes.start(
            "ingress",
            ["ingress", "--host", "127.0.0.1", "--port", str(ingress_port)],
            ready=http_ok(f"http://127.0.0.1:{ingress_port}/readyz"),
        )
        for index, worker_port in enumerate(worker_ports):
            name = "worker" if index == 0 else f"worker-{index + 1}"
            worker_log = run_dir / f"{name}.log"
            processes.start(
                name,
                [
                    "worker",
                    "--web-port",
                    str(worker_port),
                    "--data-dir",
                    str(run_dir / ("faust" if index == 0 else f"faust-{index + 1}")),
                    "--loglevel",
                    "info",
                ],
                ready=partial(_worker_ready, worker_log),
                timeout=120,
            )
        sink_port = free_port()
        sink_web = ["--web-host", "127.0.0.1", "--web-port", str(sink_port)]  # not 8082
        processes.start(
            "sink", ["sink", "--url", f"duckdb:///{warehouse}", "--group", sink_group, *sink_web]
        )
        yield Stack(
            bootstrap=bootstrap,
            client=client,
            prefix=prefix,
            processes=processes,
            simulator_url=f"http://127.0.0.1:{sim_port}",
            ingress_url=f"http://127.0.0.1:{ingress_port}/callbacks/<token>",
            worker_url=f"http://127.0.0.1:{worker_ports[0]}",
            warehouse_path=warehouse,
            sink_group=sink_group,
            worker_urls=tuple(f"http://127.0.0.1:{port}" for port in worker_ports),
            sink_url=f"http://127.0.0.1:{sink_port}",
        )
    finally:
        if processes is not None:
            processes.stop_all()
        if broker is not None:
            broker.stop()


def sink_lag(stack: Stack) -> int:
    """Records the sink has not yet committed, over every topic it reads (0 = caught up)."""
    from pipeline.kafka.lag import group_lag
    from pipeline.sinks.runner import sink_topics

    return group_lag(stack.client, stack.sink_group, sink_topics(stack.prefix))


def wait_sink_caught_up(stack: Stack, timeout: float = 60.0) -> None:
    """Block until the sink committed everything produced so far (or raise after `timeout`)."""
    from pipeline.errors import PipelineError
    from pipeline.kafka.errors import is_retriable

    deadline = time.monotonic() + timeout
    lag = -1
    while True:
        try:
            lag = sink_lag(stack)
        except PipelineError as exc:  # a coordinator that moved is "not yet"
            if not is_retriable(exc):
                raise
        if lag == 0:
            return
        stack.processes.check_alive()
        if time.monotonic() > deadline:
            raise PipelineError(f"the sink is still {lag} record(s) behind after {timeout:.0f}s")
        time.sleep(0.5)
