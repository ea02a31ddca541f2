"""A local Apache Kafka cluster (KRaft): one node or three, plaintext or SASL_SSL.

Each node is one JVM running broker and controller together (the three controllers form a
static quorum), with its own data directory under `<data-dir>/node-N/`. With
`security="sasl_ssl"` clients connect over TLS with SCRAM (SHA-256 or SHA-512; PLAIN is
refused): a test CA and broker certificate are generated into `<data-dir>/certs/`, a SCRAM user
is created when the storage is formatted (`kafka-storage format --add-scram`), and the brokers
talk to each other over a separate loopback listener (`INTERNAL`, plaintext). The client
settings are written as `KEY=value` lines to `<data-dir>/client.env` (mode 0600: it holds the
password). With three nodes, internal topics get replication factor 3 and every topic
`min.insync.replicas=2`, as a production cluster would.

Like `LocalKafka`, every JVM is tied to this process (it dies with it, even on SIGKILL), and
single nodes can be killed, paused and restarted for fault tests.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import signal
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self

from pipeline.devtools.certs import ensure_tls_files
from pipeline.devtools.kafkajars import ensure_jars, require_tools
from pipeline.devtools.localkafka import (
    _port_is_free,
    _raise_for_java,
    _tail,
    new_cluster_id,
    render_log4j2_properties,
)
from pipeline.errors import BrokerError, ConfigError
from pipeline.procutil import die_with_parent, free_ports

__all__ = ["SCRAM_USER", "LocalCluster", "Security", "render_node_properties"]

Security = Literal["plaintext", "sasl_ssl"]

_HOST = "127.0.0.1"
SCRAM_USER = "ardary"
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
CLIENT_MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True, slots=True)
class NodePorts:
    """The three listeners of one node."""

    client: int
    internal: int
    controller: int


@dataclass(frozen=True, slots=True)
class ClusterState:
    """What a data directory was formatted for (`cluster.json`): kept across restarts."""

    cluster_id: str
    security: Security
    ports: tuple[NodePorts, ...]
    password: str

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ports": [asdict(p) for p in self.ports]})

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        raw = json.loads(text)
        return cls(
            raw["cluster_id"],
            raw["security"],
            tuple(NodePorts(**p) for p in raw["ports"]),
            raw["password"],
        )


def render_node_properties(
    node_id: int,
    ports: tuple[NodePorts, ...],
    security: Security,
    log_dir: Path,
    tls_pem: Path | None,
) -> str:
    """server.properties of node `node_id` (1-based) of a cluster of `len(ports)` nodes."""
    nodes = len(ports)
    mine = ports[node_id - 1]
    replication = min(3, nodes)
    client_protocol = "SASL_SSL" if security == "sasl_ssl" else "PLAINTEXT"
    voters = ",".join(f"{i}@{_HOST}:{p.controller}" for i, p in enumerate(ports, start=1))
    settings = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": (
            f"CLIENT://{_HOST}:{mine.client},INTERNAL://{_HOST}:{mine.internal},"
            f"CONTROLLER://{_HOST}:{mine.controller}"
        ),
        "advertised.listeners": f"CLIENT://{_HOST}:{mine.client},INTERNAL://{_HOST}:{mine.internal}",
        "listener.security.protocol.map": (
            f"CLIENT:{client_protocol},INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
        ),
        "inter.broker.listener.name": "INTERNAL",
        "controller.listener.names": "CONTROLLER",
        "log.dirs": str(log_dir),
        "offsets.topic.replication.factor": str(replication),
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": str(replication),
        "transaction.state.log.min.isr": str(min(2, replication)),
        "share.coordinator.state.topic.replication.factor": str(replication),
        "share.coordinator.state.topic.min.isr": str(min(2, replication)),
        "default.replication.factor": str(replication),
        "min.insync.replicas": "2" if nodes >= 3 else "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
    }
    if security == "sasl_ssl":
        assert tls_pem is not None
        jaas = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        settings |= {
            "listener.name.client.sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
            "listener.name.client.scram-sha-256.sasl.jaas.config": jaas,
            "listener.name.client.scram-sha-512.sasl.jaas.config": jaas,
            "listener.name.client.ssl.keystore.type": "PEM",
            "listener.name.client.ssl.keystore.location": str(tls_pem),
        }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


class LocalCluster:
    """`nodes` Apache Kafka nodes on 127.0.0.1, each a JVM owned by this process.

    `data_dir` keeps topics, ports, certificates and the SCRAM password across restarts;
    without it a temporary directory is used and deleted by `stop()`. `port` fixes the first
    node's client port (the others take free ones).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        nodes: int = 1,
        security: Security = "plaintext",
        port: int | None = None,
        heap_mb: int = 384,
    ) -> None:
        if nodes not in (1, 3):
            raise ConfigError("--nodes: 1 or 3")
        self.nodes = nodes
        self.security: Security = security
        self._requested_dir = Path(data_dir).expanduser().resolve() if data_dir else None
        self._port = port
        self._heap_mb = heap_mb
        self._dir: Path | None = None
        self._temporary = False
        self._state: ClusterState | None = None
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._outs: dict[int, IO[bytes]] = {}
        self._lock = threading.RLock()

    # -- where things are ---------------------------------------------------------------------

    @property
    def data_dir(self) -> Path:
        if self._dir is None:
            raise BrokerError("the local Kafka cluster is not started")
        return self._dir

    @property
    def bootstrap(self) -> str:
        """`127.0.0.1:P1,127.0.0.1:P2,…` of the client listeners."""
        state = self._require_state()
        return ",".join(f"{_HOST}:{p.client}" for p in state.ports)

    @property
    def client_env_path(self) -> Path:
        return self.data_dir / "client.env"

    def client_settings(self) -> dict[str, str]:
        """The environment a pipeline process needs to reach this cluster (password included)."""
        state = self._require_state()
        env = {"KAFKA_BOOTSTRAP_SERVERS": self.bootstrap}
        if state.security == "sasl_ssl":
            env |= {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": CLIENT_MECHANISM,
                "KAFKA_SASL_USERNAME": SCRAM_USER,
                "KAFKA_SASL_PASSWORD": state.password,
                "KAFKA_SSL_CA_FILE": str(self.data_dir / "certs" / "ca.pem"),
            }
        return env

    def pid(self, node_id: int) -> int | None:
        proc = self._procs.get(node_id)
        return proc.pid if proc is not None and proc.poll() is None else None

    def is_running(self, node_id: int | None = None) -> bool:
        ids = [node_id] if node_id is not None else list(range(1, self.nodes + 1))
        return all(self.pid(i) is not None for i in ids)

    def _require_state(self) -> ClusterState:
        if self._state is None:
            raise BrokerError("the local Kafka cluster is not started")
        return self._state

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> str:
        """Start every node; return the bootstrap servers once all brokers answer."""
        with self._lock:
            deadline = time.monotonic() + timeout
            try:
                self._prepare()
                for node_id in range(1, self.nodes + 1):
                    if self.pid(node_id) is None:
                        self._spawn(node_id, deadline)
                self._wait_ready(deadline, timeout)
            except BaseException:
                self.stop()
                raise
            self._write_client_env()
            return self.bootstrap

    def stop(self, timeout: float = 20) -> None:
        """Stop every node (SIGTERM, then SIGKILL); delete a temporary data directory."""
        with self._lock:
            for node_id in list(self._procs):
                self.stop_node(node_id, timeout)
            atexit.unregister(self._stop_at_exit)
            if self._temporary and self._dir is not None:
                import shutil

                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
                self._temporary = False

    def stop_node(self, node_id: int, timeout: float = 20) -> None:
        """A clean shutdown of one node."""
        proc = self._procs.pop(node_id, None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)  # a paused node must be able to stop
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        out = self._outs.pop(node_id, None)
        if out is not None:
            out.close()

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node (a crash: no controlled shutdown)."""
        proc = self._procs.get(node_id)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def pause_node(self, node_id: int) -> None:
        """SIGSTOP one node: a hung broker that still holds its sockets."""
        proc = self._procs.get(node_id)
        if proc is not None:
            proc.send_signal(signal.SIGSTOP)

    def resume_node(self, node_id: int) -> None:
        proc = self._procs.get(node_id)
        if proc is not None:
            proc.send_signal(signal.SIGCONT)

    def start_node(self, node_id: int, timeout: float = 90) -> None:
        """(Re)start one node on its data and wait until the cluster lists every broker."""
        with self._lock:
            deadline = time.monotonic() + timeout
            self.stop_node(node_id)
            self._spawn(node_id, deadline)
            self._wait_ready(deadline, timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _stop_at_exit(self) -> None:
        self.stop(timeout=10)

    # -- steps --------------------------------------------------------------------------------

    def _prepare(self) -> None:
        """Data directory, remembered state (or a new one), certificates, configs, format."""
        if self._dir is None:
            if self._requested_dir is not None:
                self._dir, self._temporary = self._requested_dir, False
            else:
                import tempfile

                self._dir, self._temporary = Path(tempfile.mkdtemp(prefix="ardary-kafka-")), True
        data_dir = self._dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--data-dir: cannot create {data_dir}: {exc.strerror}") from None
        state_file = data_dir / "cluster.json"
        if self._state is None and state_file.is_file():
            self._state = ClusterState.from_json(state_file.read_text(encoding="utf-8"))
            if len(self._state.ports) != self.nodes or self._state.security != self.security:
                raise ConfigError(
                    f"--data-dir: {data_dir} holds a {len(self._state.ports)}-node "
                    f"{self._state.security} cluster, not {self.nodes}-node {self.security}"
                )
        if self._state is None:
            ports = iter(free_ports(3 * self.nodes))
            first = self._port or next(ports)
            node_ports = tuple(
                NodePorts(first if i == 0 else next(ports), next(ports), next(ports))
                for i in range(self.nodes)
            )
            self._state = ClusterState(
                new_cluster_id(), self.security, node_ports, secrets.token_urlsafe(18)
            )
            state_file.write_text(self._state.to_json(), encoding="utf-8")
            state_file.chmod(0o600)
        tls = ensure_tls_files(data_dir / "certs") if self.security == "sasl_ssl" else None
        for node_id in range(1, self.nodes + 1):
            node_dir = data_dir / f"node-{node_id}"
            node_dir.mkdir(exist_ok=True)
            (node_dir / "server.properties").write_text(
                render_node_properties(
                    node_id,
                    self._state.ports,
                    self.security,
                    node_dir / "logs",
                    tls.broker_pem if tls else None,
                ),
                encoding="utf-8",
            )
            (node_dir / "log4j2.properties").write_text(
                render_log4j2_properties(node_dir / "broker.log"), encoding="utf-8"
            )

    def _jvm(self, node_id: int) -> list[str]:
        java = require_tools("java")["java"]
        node_dir = self.data_dir / f"node-{node_id}"
        return [
            java,
            "-cp",
            f"{ensure_jars()}/*",
            f"-Dlog4j2.configurationFile={node_dir / 'log4j2.properties'}",
        ]

    def _format(self, node_id: int, deadline: float) -> None:
        state = self._require_state()
        node_dir = self.data_dir / f"node-{node_id}"
        command = [
            *self._jvm(node_id),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            state.cluster_id,
            "-c",
            str(node_dir / "server.properties"),
        ]
        if state.security == "sasl_ssl":
            for mechanism in SCRAM_MECHANISMS:
                command += [
                    "--add-scram",
                    f"{mechanism}=[name={SCRAM_USER},password={state.password}]",
                ]
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=max(deadline - time.monotonic(), 1),
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise BrokerError(f"formatting the Kafka storage in {node_dir} timed out") from None
        if done.returncode != 0:
            _raise_for_java(done.stdout + done.stderr)
            lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            raise BrokerError(
                f"formatting the Kafka storage in {node_dir} failed: "
                f"{(lines or ['no output'])[-1][:300]}"
            )

    def _spawn(self, node_id: int, deadline: float) -> None:
        state = self._require_state()
        node_dir = self.data_dir / f"node-{node_id}"
        mine = state.ports[node_id - 1]
        for port in (mine.client, mine.internal, mine.controller):
            if not _port_is_free(port):
                raise BrokerError(
                    f"port {port} on {_HOST} is already in use (is another broker running on "
                    f"{self.data_dir}?)"
                )
        if not (node_dir / "logs" / "meta.properties").is_file():
            self._format(node_id, deadline)
        jvm = self._jvm(node_id)
        command = [
            jvm[0],
            f"-Xmx{self._heap_mb}m",
            f"-Xms{min(128, self._heap_mb)}m",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            *jvm[1:],
            "kafka.Kafka",
            str(node_dir / "server.properties"),
        ]
        out = (node_dir / "broker.out").open("ab")
        self._outs[node_id] = out
        self._procs[node_id] = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=node_dir,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGKILL),
        )
        atexit.register(self._stop_at_exit)

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        while True:
            for node_id, proc in self._procs.items():
                if proc.poll() is not None:
                    node_dir = self.data_dir / f"node-{node_id}"
                    log = "\n".join(
                        t
                        for t in (_tail(node_dir / "broker.log"), _tail(node_dir / "broker.out"))
                        if t
                    )
                    _raise_for_java(log)
                    raise BrokerError(
                        f"Kafka node {node_id} exited with code {proc.returncode} while starting; "
                        f"last log lines:\n{log}"
                    )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"the local Kafka cluster did not answer within {timeout:.0f}s; see "
                    f"{self.data_dir}/node-*/broker.log"
                )
            if self._brokers_listed(min(remaining, 5.0)) >= self.nodes:
                return
            time.sleep(0.2)

    def _brokers_listed(self, timeout: float) -> int:
        """How many brokers the cluster's metadata lists (0 if it does not answer)."""
        from kafka.admin import KafkaAdminClient

        from pipeline.kafka.config import KafkaClientConfig

        config = KafkaClientConfig.from_env(self.client_settings())
        ms = max(int(timeout * 1000), 500)
        try:
            admin = KafkaAdminClient(
                **config.kafka_python(),
                client_id="ardary-localkafka-probe",
                request_timeout_ms=ms,
                bootstrap_timeout_ms=ms,
                reconnect_backoff_max_ms=200,
            )
        except Exception:
            return 0
        try:
            return len(admin.describe_cluster().get("brokers") or ())
        except Exception:
            return 0
        finally:
            with contextlib.suppress(Exception):
                admin.close()

    def _write_client_env(self) -> None:
        path = self.client_env_path
        text = "".join(f"{key}={value}\n" for key, value in self.client_settings().items())
        with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as out:
            out.write(text)
