"""The chaos run's stack: a three-node local cluster with persistent data, the simulator, the
ingress (spool on), two workers and the DuckDB sink, each a restartable child process.

Everything lives in the run directory (`kafka/`, `worker-N/`, `ingress-spool/`,
`warehouse.duckdb`, one log per process), so a restarted process finds its data where it left
it, and the directory is the evidence after the run. Ports are fixed for the run: a restarted
ingress is reached at the same callback URL, a restarted node on the same listener.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.devtools.chaos.services import Service, Services, http_ready, log_ready
from pipeline.devtools.localkafka import LocalKafka
from pipeline.devtools.stack.traffic import DEMO_ACCOUNTS
from pipeline.kafka.admin import ensure_topics
from pipeline.kafka.config import KafkaClientConfig
from pipeline.kafka.worker import READY_LINE
from pipeline.procutil import free_ports
from pipeline.sinks.runner import READY_EVENT

__all__ = ["WORKERS", "ChaosOptions", "ChaosStack", "chaos_stack"]

WORKERS = ("worker-1", "worker-2")
PREFIX = "chaos."


@dataclass(frozen=True, slots=True)
class ChaosOptions:
    """The stack's knobs; the defaults are the ones the reported runs used."""

    seed: int
    partitions: int = 6
    outbound_rate: float = 200.0
    simulator_latency_ms: float = 150.0  # keeps Ardary calls in flight: a kill lands mid-batch
    delivery_delay_ms: float = 400.0
    duplicate_probability: float = 0.15
    shuffle_max_ms: float = 800.0
    broker_heap_mb: int = 384


@dataclass(frozen=True)
class ChaosStack:
    """A running chaos stack: where everything is."""

    run_dir: Path
    kafka: LocalKafka
    client: KafkaClientConfig
    prefix: str
    services: Services
    simulator_url: str
    ingress_url: str
    callback_url: str  # holds the token: written to no log and no report
    worker_urls: dict[str, str]
    warehouse: Path
    sink_group: str
    worker_group: str


def _env(
    bootstrap: str, run_dir: Path, token: str, sim_port: int, o: ChaosOptions
) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PIPELINE_TOPIC_PREFIX": PREFIX,
        "PIPELINE_PARTITIONS": str(o.partitions),
        "PIPELINE_CALLBACK_TOKEN": token,
        "ARDARY_BASE_URL": f"http://127.0.0.1:{sim_port}/api",
        "ARDARY_ACCESS_KEYS": json.dumps(DEMO_ACCOUNTS),
        "ARDARY_MODE": "prod",
        "OUTBOUND_RATE_PER_SECOND": str(o.outbound_rate),
        "WAREHOUSE_URL": f"duckdb:///{run_dir / 'warehouse.duckdb'}",
        "INGRESS_SPOOL_DIR": str(run_dir / "ingress-spool"),
    }


def _simulator_args(port: int, callback_url: str, o: ChaosOptions) -> list[str]:
    return [
        "simulator",
        "--port",
        str(port),
        "--callback-url",
        callback_url,
        "--dialect",
        "mixed",
        "--seed",
        str(o.seed),
        "--accounts",
        json.dumps(DEMO_ACCOUNTS),
        "--latency-ms",
        str(o.simulator_latency_ms),
        "--delivery-delay-ms",
        str(o.delivery_delay_ms),
        "--click-probability",
        "0.35",
        "--reply-probability",
        "0.1",
        "--stop-probability",
        "0.02",
        "--missed-call-probability",
        "0.05",
        "--duplicate-probability",
        str(o.duplicate_probability),
        "--shuffle",
        "--callback-attempts",
        "1",  # Ardary documents no retry: neither does its simulator here
    ]


@contextmanager
def chaos_stack(run_dir: Path, options: ChaosOptions) -> Iterator[ChaosStack]:
    """Start the cluster and every process (waiting until each is ready); stop all on exit."""
    run_dir.mkdir(parents=True, exist_ok=True)
    kafka = LocalKafka(run_dir / "kafka", nodes=3, heap_mb=options.broker_heap_mb)
    services = Services()
    try:
        kafka.start(timeout=180)
        env_kafka = kafka.client_settings()
        client = KafkaClientConfig.from_env(env_kafka)
        ensure_topics(client, PREFIX, options.partitions)
        sim_port, ingress_port, *web_ports = free_ports(2 + len(WORKERS))
        token = secrets.token_urlsafe(16)
        callback_url = f"http://127.0.0.1:{ingress_port}/callbacks/{token}"
        env = {**env_kafka, **_env(client.bootstrap, run_dir, token, sim_port, options)}
        sim_url = f"http://127.0.0.1:{sim_port}"
        ingress_url = f"http://127.0.0.1:{ingress_port}"

        def add(name: str, args: list[str], ready: object) -> Service:
            service = Service(name, args, env, run_dir / f"{name}.log", ready)  # type: ignore[arg-type]
            return services.add(service)

        add(
            "simulator",
            _simulator_args(sim_port, callback_url, options),
            http_ready(f"{sim_url}/healthz"),
        )
        add(
            "ingress",
            ["ingress", "--host", "127.0.0.1", "--port", str(ingress_port)],
            http_ready(f"{ingress_url}/readyz"),
        )
        worker_urls: dict[str, str] = {}
        for name, port in zip(WORKERS, web_ports, strict=True):
            args = [
                "worker",
                "--web-port",
                str(port),
                "--data-dir",
                str(run_dir / name),
                "--loglevel",
                "info",
            ]
            add(name, args, log_ready(READY_LINE))
            worker_urls[name] = f"http://127.0.0.1:{port}"
        sink_group = f"{PREFIX}warehouse"
        sink_web = ["--web-host", "127.0.0.1", "--web-port", str(free_ports()[0])]  # not 8082
        add("sink", ["sink", "--group", sink_group, *sink_web], log_ready(READY_EVENT))
        for service in services.by_name.values():
            service.start()
            service.wait_ready(180 if service.name.startswith("worker") else 90)
        yield ChaosStack(
            run_dir=run_dir,
            kafka=kafka,
            client=client,
            prefix=PREFIX,
            services=services,
            simulator_url=sim_url,
            ingress_url=ingress_url,
            callback_url=callback_url,
            worker_urls=worker_urls,
            warehouse=run_dir / "warehouse.duckdb",
            sink_group=sink_group,
            worker_group=f"{PREFIX}workers",
        )
    finally:
        services.stop_all()
        kafka.stop()
