"""A local Apache Kafka (KRaft) so `dev`, `demo` and the tests need no cluster: 1 or 3 nodes.

The broker is the real Apache Kafka 4.1.2 from Maven Central, run as JVM child processes:
`ensure_jars()` resolves its jars once into a user cache with Maven; `LocalKafka` formats each
node's data directory (`<data-dir>/node-N/`, first start only), starts the JVMs, waits until
the cluster lists every broker, and stops them again. Every JVM is tied to this Python process
(Linux `PR_SET_PDEATHSIG`), so a crashed or SIGKILLed Python leaves no orphan broker behind.
Single nodes can be killed, paused and restarted, for fault tests.

With `security="sasl_ssl"` clients connect over TLS with SCRAM (SHA-256 or SHA-512; PLAIN is
refused): a test CA and broker certificate are generated into `<data-dir>/certs/`, the SCRAM
user is created when the storage is formatted (`kafka-storage format --add-scram`), and the
client settings are written as `KEY=value` lines to `<data-dir>/client.env` (mode 0600: it
holds the password). What each node is configured with is `pipeline.devtools.kafkanode`.

`ARDARY_BROKER_JVM_OPTIONS` adds options to every node's JVM (and the storage tool's). The test
suite sets `-XX:TieredStopAtLevel=1 -XX:+UseSerialGC`: a three-node SASL_SSL cluster then needs
half the CPU to start (24 s instead of 48 s) and 0.15 instead of 0.25 of a core idle, on a
2-core box that runs many of them; the default keeps the JIT the benchmarks measure against.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from pipeline.devtools import classdata
from pipeline.devtools.certs import ensure_tls_files
from pipeline.devtools.kafkajars import (
    KAFKA_VERSION,
    ensure_jars,
    require_tools,
)
from pipeline.devtools.kafkanode import (
    CLIENT_MECHANISM,
    HOST,
    SCRAM_MECHANISMS,
    SCRAM_USER,
    ClusterState,
    NodePorts,
    Security,
    new_cluster_id,
    render_log4j2_properties,
    render_node_properties,
)
from pipeline.devtools.kafkaprobe import brokers_listed, log_tail, port_is_free, raise_for_java
from pipeline.errors import BrokerError, ConfigError
from pipeline.procutil import die_with_parent, server_ports

__all__ = ["KAFKA_VERSION", "LocalKafka", "Security"]

_STATE = "cluster.json"
JVM_OPTIONS_VARIABLE = "ARDARY_BROKER_JVM_OPTIONS"
DUMP_GRACE_S = 40.0  # more time to stop for the node writing the class archive as it exits


def extra_jvm_options() -> list[str]:
    """The options `ARDARY_BROKER_JVM_OPTIONS` adds to every JVM of a local node (shell words)."""
    try:
        return shlex.split(os.environ.get(JVM_OPTIONS_VARIABLE, ""))
    except ValueError as exc:
        raise ConfigError(f"{JVM_OPTIONS_VARIABLE}: {exc}") from None


class LocalKafka:
    """`nodes` Apache Kafka nodes (broker + controller) on 127.0.0.1, JVMs owned by this process.

    `data_dir` keeps topics, ports, certificates and the SCRAM password across restarts; without
    it a temporary directory is used and deleted by `stop()`. `port` fixes the first node's
    client port (else a free one, or the one the data directory used last time). Use as a
    context manager, or call `start()` / `stop()`. A JVM receives SIGKILL if the thread that
    started it ends, so start nodes from the main thread (or one as long-lived as they are).
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        port: int | None = None,
        heap_mb: int | None = None,
        *,
        nodes: int = 1,
        security: Security = "plaintext",
    ) -> None:
        if nodes not in (1, 3):
            raise ConfigError("--nodes: 1 or 3")
        self.nodes = nodes
        self.security: Security = security
        self._requested_dir = Path(data_dir).expanduser().resolve() if data_dir else None
        self._port = port
        self._heap_mb = heap_mb or (512 if nodes == 1 else 384)
        self._dir: Path | None = None
        self._temporary = False
        self._state: ClusterState | None = None
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._outs: dict[int, IO[bytes]] = {}
        self._dump: tuple[int, Path, Path] | None = None  # node, its class dump, the archive
        self._lock = threading.RLock()

    # -- where things are ---------------------------------------------------------------------

    @property
    def data_dir(self) -> Path | None:
        """The directory holding the nodes' data (None before a temporary one is made)."""
        return self._dir or self._requested_dir

    @property
    def bootstrap(self) -> str:
        """`127.0.0.1:P1[,127.0.0.1:P2,…]`: the nodes' client listeners."""
        state = self._state
        if state is None or not self._procs:
            raise BrokerError("the local Kafka broker is not started")
        return ",".join(f"{HOST}:{p.client}" for p in state.ports)

    @property
    def pid(self) -> int | None:
        """The first node's JVM process id while it runs."""
        return self.node_pid(1)

    def node_pid(self, node_id: int) -> int | None:
        proc = self._procs.get(node_id)
        return proc.pid if proc is not None and proc.poll() is None else None

    def dead_nodes(self) -> list[int]:
        """The nodes whose JVM was started and has exited since (a crash, a kill)."""
        return [i for i, proc in sorted(self._procs.items()) if proc.poll() is not None]

    def exit_code(self, node_id: int) -> int | None:
        """The exit code of a node's JVM once it has exited (None while it runs)."""
        proc = self._procs.get(node_id)
        return None if proc is None else proc.poll()

    def is_running(self, node_id: int | None = None) -> bool:
        """Whether the node's JVM (every node's, by default) is alive."""
        ids = [node_id] if node_id is not None else list(range(1, self.nodes + 1))
        return all(self.node_pid(i) is not None for i in ids)

    @property
    def client_env_path(self) -> Path:
        """`<data-dir>/client.env`: the settings a pipeline process needs (KEY=value lines)."""
        if self._dir is None:
            raise BrokerError("the local Kafka broker is not started")
        return self._dir / "client.env"

    def client_settings(self) -> dict[str, str]:
        """The environment a pipeline process needs to reach this cluster (password included)."""
        state = self._state
        if state is None or self._dir is None:
            raise BrokerError("the local Kafka broker is not started")
        env = {"KAFKA_BOOTSTRAP_SERVERS": ",".join(f"{HOST}:{p.client}" for p in state.ports)}
        if state.security == "sasl_ssl":
            env |= {
                "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_MECHANISM": CLIENT_MECHANISM,
                "KAFKA_SASL_USERNAME": SCRAM_USER,
                "KAFKA_SASL_PASSWORD": state.password,
                "KAFKA_SSL_CA_FILE": str(self._dir / "certs" / "ca.pem"),
            }
        return env

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<LocalKafka {KAFKA_VERSION} {self.nodes} node(s) {state} data={self.data_dir}>"

    # -- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 120) -> str:
        """Start every node; return the bootstrap servers once each node answers on its own
        listener and lists every broker.

        Raises EnvironmentMissing without Java/Maven, BrokerError if a JVM exits or the cluster
        does not answer within `timeout` seconds (with the tail of the failing node's log).
        """
        with self._lock:
            deadline = time.monotonic() + timeout
            require_tools("java")
            ensure_jars()
            try:
                self._prepare()
                for node_id in range(1, self.nodes + 1):
                    if self.node_pid(node_id) is None:
                        self._spawn(node_id, deadline)
                # listed is not answering: a client sent to a node whose listener is not open
                # yet was refused right after the ready line (ECONNREFUSED, then kafka-python's
                # UnknownBrokerIdError); so every node must answer on its own listener too
                self._wait_ready(deadline, timeout, answering=range(1, self.nodes + 1))
            except BaseException:
                self.stop()
                raise
            self._write_client_env()
            return self.bootstrap

    def stop(self, timeout: float = 20) -> None:
        """Stop every node (SIGTERM, then SIGKILL); delete a temporary data dir. Idempotent."""
        with self._lock:
            # every node at once: stopped one by one, the last ones wait out a controlled
            # shutdown that the departed controller quorum never grants (~20 s, not ~7 s)
            for node_id, proc in self._procs.items():
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(signal.SIGCONT)
                        proc.send_signal(self._stop_signal(node_id))
            for node_id in list(self._procs):
                self.stop_node(node_id, timeout)
            atexit.unregister(self._stop_at_exit)
            if self._temporary and self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
                self._temporary = False
                self._state = None

    def stop_node(self, node_id: int, timeout: float = 20) -> None:
        """A clean shutdown of one node."""
        dumping = self._dump is not None and self._dump[0] == node_id
        if dumping:
            timeout += DUMP_GRACE_S
        proc = self._procs.pop(node_id, None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)  # a paused node must be able to stop
                proc.send_signal(self._stop_signal(node_id))
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.kill()
                proc.wait()
        out = self._outs.pop(node_id, None)
        if out is not None:
            out.close()
        if proc is not None and dumping and self._dump is not None:
            _, dump, archive = self._dump
            classdata.publish_dump(dump, archive, proc.returncode)
            self._dump = None

    def _stop_signal(self, node_id: int) -> signal.Signals:
        """SIGTERM, but SIGKILL for a node of a temporary data dir that was to write the class
        archive when another node has written it since: its data is deleted anyway, and its
        dump at exit (a long-lived JVM's: 20 s and more on a busy box) would be thrown away."""
        if (
            self._temporary
            and self._dump is not None
            and self._dump[0] == node_id
            and self._dump[2].is_file()
        ):
            return signal.SIGKILL
        return signal.SIGTERM

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node: a crash, no controlled shutdown."""
        proc = self._procs.get(node_id)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def pause_node(self, node_id: int) -> None:
        """SIGSTOP one node: a hung broker that still holds its sockets."""
        proc = self._procs.get(node_id)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGSTOP)

    def resume_node(self, node_id: int) -> None:
        """SIGCONT a paused node."""
        proc = self._procs.get(node_id)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGCONT)

    def start_node(self, node_id: int, timeout: float = 90) -> None:
        """(Re)start one node on its data; wait until the cluster lists every broker again."""
        self.start_nodes([node_id], timeout)

    def start_nodes(self, node_ids: Iterable[int] | None = None, timeout: float = 90) -> None:
        """(Re)start several nodes (default: all) at once, then wait for the whole cluster: a
        cluster whose nodes were all stopped needs its controller quorum back together."""
        ids = list(node_ids) if node_ids is not None else list(range(1, self.nodes + 1))
        with self._lock:
            deadline = time.monotonic() + timeout
            for node_id in ids:
                self.stop_node(node_id)
            for node_id in ids:
                self._spawn(node_id, deadline)
            # the others may still list a restarted node before it answers (its fencing lags
            # its death by the broker session timeout): wait for each one's own listener too
            self._wait_ready(deadline, timeout, answering=ids)

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
        """Data directory, remembered state (or a new one), certificates, node configs."""
        if self._dir is None:
            if self._requested_dir is not None:
                self._dir, self._temporary = self._requested_dir, False
            else:
                self._dir = Path(tempfile.mkdtemp(prefix="ardary-kafka-"))
                self._temporary = True
        data_dir = self._dir
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--data-dir: cannot create {data_dir}: {exc.strerror}") from None
        state = self._state or self._load_state(data_dir / _STATE) or self._new_state()
        if self._port is not None and state.ports[0].client != self._port:
            state = state.with_client_port(1, self._port)
        self._state = state
        state_file = data_dir / _STATE
        state_file.write_text(state.to_json(), encoding="utf-8")
        state_file.chmod(0o600)
        tls = ensure_tls_files(data_dir / "certs") if self.security == "sasl_ssl" else None
        for node_id in range(1, self.nodes + 1):
            node_dir = data_dir / f"node-{node_id}"
            node_dir.mkdir(exist_ok=True)
            (node_dir / "server.properties").write_text(
                render_node_properties(
                    node_id,
                    state.ports,
                    self.security,
                    node_dir / "logs",
                    tls.broker_pem if tls else None,
                ),
                encoding="utf-8",
            )
            (node_dir / "log4j2.properties").write_text(
                render_log4j2_properties(node_dir / "broker.log"), encoding="utf-8"
            )

    def _load_state(self, path: Path) -> ClusterState | None:
        if not path.is_file():
            return None
        state = ClusterState.from_json(path.read_text(encoding="utf-8"))
        if len(state.ports) != self.nodes or state.security != self.security:
            raise ConfigError(
                f"--data-dir: {path.parent} holds a {len(state.ports)}-node {state.security} "
                f"cluster, not a {self.nodes}-node {self.security} one"
            )
        return state

    def _new_state(self) -> ClusterState:
        ports = iter(server_ports(3 * self.nodes))
        node_ports = tuple(
            NodePorts(next(ports), next(ports), next(ports)) for _ in range(self.nodes)
        )
        return ClusterState(new_cluster_id(), self.security, node_ports, secrets.token_urlsafe(18))

    def _jvm(self, node_id: int) -> list[str]:
        node_dir = self._node_dir(node_id)
        return [
            require_tools("java")["java"],
            *classdata.use_options(self._class_archive()),
            *extra_jvm_options(),
            "-cp",
            f"{ensure_jars()}/*",
            f"-Dlog4j2.configurationFile={node_dir / 'log4j2.properties'}",
        ]

    def _class_archive(self) -> Path:
        return classdata.archive_for(ensure_jars(), require_tools("java")["java"])

    def _node_dir(self, node_id: int) -> Path:
        assert self._dir is not None
        return self._dir / f"node-{node_id}"

    def _format(self, node_id: int, deadline: float) -> None:
        state = self._state
        assert state is not None
        node_dir = self._node_dir(node_id)
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
                user = f"{mechanism}=[name={SCRAM_USER},password={state.password}]"
                command += ["--add-scram", user]
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
            raise_for_java(done.stdout + done.stderr)
            lines = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()]
            if extra_jvm_options() and "Could not create the Java Virtual Machine" in done.stderr:
                why = next((line for line in lines if "Java Virtual Machine" not in line), "")
                raise ConfigError(f"{JVM_OPTIONS_VARIABLE}: the JVM refused it: {why[:200]}")
            raise BrokerError(
                f"formatting the Kafka storage in {node_dir} failed: "
                f"{(lines or ['no output'])[-1][:300]}"
            )

    def _spawn(self, node_id: int, deadline: float) -> None:
        state = self._state
        assert state is not None
        node_dir = self._node_dir(node_id)
        mine = state.ports[node_id - 1]
        for port in (mine.client, mine.internal, mine.controller):
            if not port_is_free(port):
                raise BrokerError(
                    f"port {port} on {HOST} is already in use (is another broker running on "
                    f"{self._dir}?)"
                )
        if not (node_dir / "logs" / "meta.properties").is_file():
            self._format(node_id, deadline)
        jvm = self._jvm(node_id)
        archive = self._class_archive()
        # the first node ever writes one, where it can
        if self._dump is None and not archive.is_file() and classdata.can_dump(archive):
            dump_options, dump = classdata.dump_options(archive, node_id)
            jvm[1:1] = dump_options
            self._dump = (node_id, dump, archive)
        command = [
            jvm[0],
            f"-Xmx{self._heap_mb}m",
            f"-Xms{min(256, self._heap_mb)}m",
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
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, not the JVM
            preexec_fn=die_with_parent(signal.SIGKILL),
        )
        atexit.register(self._stop_at_exit)

    def _wait_ready(self, deadline: float, timeout: float, answering: Iterable[int] = ()) -> None:
        """Until the cluster lists every broker, and each node of `answering` answers on its own
        client listener; BrokerError if a JVM exits or `deadline` passes."""
        pending = list(answering)
        while True:
            for node_id, proc in self._procs.items():
                if proc.poll() is not None:
                    node_dir = self._node_dir(node_id)
                    tails = (log_tail(node_dir / "broker.log"), log_tail(node_dir / "broker.out"))
                    log = "\n".join(t for t in tails if t)
                    raise_for_java(log)
                    raise BrokerError(
                        f"Kafka node {node_id} exited with code {proc.returncode} while starting; "
                        f"last log lines:\n{log}"
                    )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"the local Kafka broker did not answer within {timeout:.0f}s; see "
                    f"{self._dir}/node-*/broker.log"
                )
            settings = self.client_settings()
            if brokers_listed(settings, min(remaining, 5.0)) >= self.nodes:
                pending = [
                    node_id
                    for node_id in pending
                    if brokers_listed(
                        {**settings, "KAFKA_BOOTSTRAP_SERVERS": self._address(node_id)},
                        min(remaining, 5.0),
                    )
                    < self.nodes
                ]
                if not pending:
                    return
            time.sleep(0.1)

    def _address(self, node_id: int) -> str:
        state = self._state
        assert state is not None
        return f"{HOST}:{state.ports[node_id - 1].client}"

    def _write_client_env(self) -> None:
        text = "".join(f"{key}={value}\n" for key, value in self.client_settings().items())
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        with os.fdopen(os.open(self.client_env_path, flags, 0o600), "w") as out:
            out.write(text)
