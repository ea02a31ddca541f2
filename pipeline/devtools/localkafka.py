"""A local single-node Apache Kafka broker (KRaft) so `dev`, `demo` and the tests need no cluster.

The broker is the real Apache Kafka 4.1.2 from Maven Central, run as a JVM child process:
`ensure_jars()` resolves its jars once into a user cache with Maven, `LocalKafka` formats a data
directory (first start only), starts the JVM, waits until the broker answers metadata requests and
stops it again. The JVM is tied to this Python process (Linux `PR_SET_PDEATHSIG`), so a crashed or
SIGKILLed Python leaves no orphan broker behind.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from pipeline.devtools.kafkajars import (
    INSTALL_HINT,
    KAFKA_VERSION,
    ensure_jars,
    first_error_line,
    require_tools,
)
from pipeline.errors import BrokerError, EnvironmentMissing
from pipeline.procutil import die_with_parent, free_ports

__all__ = [
    "KAFKA_VERSION",
    "LocalKafka",
    "new_cluster_id",
    "render_log4j2_properties",
    "render_server_properties",
]

_HOST = "127.0.0.1"


def new_cluster_id() -> str:
    """A KRaft cluster id as `kafka-storage random-uuid` makes it, without starting a JVM."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):  # Kafka avoids ids that read like a command-line flag
            return text


def render_server_properties(port: int, controller_port: int, log_dir: Path) -> str:
    """The broker+controller configuration of a single-node development cluster.

    Replication factors are 1 (one node), topics are never created implicitly (the pipeline
    provisions its own), and a new consumer group rebalances at once instead of after 3 s.
    """
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{_HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{_HOST}:{port},CONTROLLER://{_HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{_HOST}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(log_dir),
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def render_log4j2_properties(log_file: Path) -> str:
    """Log4j 2 configuration: warnings and errors of the broker into `log_file`, nothing else."""
    return (
        "status = warn\n"
        "appender.file.type = File\n"
        "appender.file.name = FILE\n"
        f"appender.file.fileName = {log_file}\n"
        "appender.file.layout.type = PatternLayout\n"
        "appender.file.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = WARN\n"
        "rootLogger.appenderRef.file.ref = FILE\n"
        "logger.kafka.name = kafka\n"
        "logger.kafka.level = WARN\n"
        "logger.apache.name = org.apache.kafka\n"
        "logger.apache.level = WARN\n"
    )


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def _resolve_ports(data_dir: Path, port: int | None) -> tuple[int, int]:
    """(broker port, controller port) for `data_dir`, remembered in `ports.json` across restarts.

    The controller port must not change once the storage is formatted (the KRaft voter set records
    it); the broker port follows `port` when given, else the remembered one.
    """
    state = data_dir / "ports.json"
    saved: dict[str, int] = {}
    if state.is_file():
        with contextlib.suppress(ValueError, OSError):
            loaded = json.loads(state.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                saved = {k: v for k, v in loaded.items() if isinstance(v, int)}
    fresh = iter(free_ports(2))
    broker_port = port or saved.get("port") or next(fresh)
    controller_port = saved.get("controller_port") or next(fresh)
    if controller_port == broker_port:
        controller_port = next(fresh)
    state.write_text(
        json.dumps({"port": broker_port, "controller_port": controller_port}), encoding="utf-8"
    )
    return broker_port, controller_port


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class LocalKafka:
    """One Apache Kafka broker+controller on 127.0.0.1, in a JVM owned by this process.

    `data_dir` keeps the topics and the ports across restarts; without it a temporary directory is
    used and deleted by `stop()`. Use as a context manager, or call `start()` / `stop()`.
    The JVM receives SIGKILL if the thread that called `start()` ends, so call it from the main
    thread (or one that lives as long as the broker).
    """

    def __init__(
        self, data_dir: Path | None = None, port: int | None = None, heap_mb: int = 512
    ) -> None:
        self._requested_dir = Path(data_dir).expanduser().resolve() if data_dir else None
        self._requested_port = port
        self._heap_mb = heap_mb
        self._data_dir: Path | None = None
        self._temporary = False
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None
        self._bootstrap: str | None = None
        self._lock = threading.RLock()

    # -- public API ---------------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """`127.0.0.1:PORT` of the running broker."""
        if self._bootstrap is None:
            raise BrokerError("the local Kafka broker is not started")
        return self._bootstrap

    @property
    def pid(self) -> int | None:
        """The JVM's process id while it runs (or until `stop()`)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def data_dir(self) -> Path | None:
        """The directory holding the broker's logs and state (None before the first start)."""
        return self._data_dir or self._requested_dir

    def is_running(self) -> bool:
        """Whether the JVM is alive (not whether it already answers requests)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 60) -> str:
        """Start the broker and return its bootstrap address once it answers metadata requests.

        Formats the storage on the first start of a data directory only, so data survive a
        restart. Raises EnvironmentMissing without Java/Maven, BrokerError if the JVM exits or
        does not become ready within `timeout` seconds (with the tail of its log).
        """
        with self._lock:
            if self.is_running() and self._bootstrap is not None:
                return self._bootstrap
            if self._proc is not None:  # died on its own: clean up before starting again
                self.stop()
            deadline = time.monotonic() + timeout
            java = require_tools("java")["java"]
            libs = ensure_jars()
            data_dir = self._prepare_data_dir()
            try:
                port, controller_port = _resolve_ports(data_dir, self._requested_port)
                for p in (port, controller_port):
                    if not _port_is_free(p):
                        raise BrokerError(
                            f"port {p} on {_HOST} is already in use "
                            f"(is another broker running on {data_dir}?)"
                        )
                props, log4j = self._write_config(data_dir, port, controller_port)
                classpath = f"{libs}/*"
                jvm_common = [java, "-cp", classpath, f"-Dlog4j2.configurationFile={log4j}"]
                if not (data_dir / "logs" / "meta.properties").is_file():
                    self._format(jvm_common, props, data_dir, deadline)
                self._spawn(jvm_common, props, data_dir)
                bootstrap = f"{_HOST}:{port}"
                self._wait_ready(bootstrap, data_dir, deadline, timeout)
            except BaseException:
                self.stop()
                raise
            self._bootstrap = bootstrap
            return bootstrap

    def stop(self, timeout: float = 20) -> None:
        """Stop the broker: SIGTERM (a clean shutdown), then SIGKILL after `timeout` seconds.

        Idempotent. Deletes the data directory if it was a temporary one.
        """
        with self._lock:
            proc, self._proc = self._proc, None
            self._bootstrap = None
            atexit.unregister(self._stop_at_exit)
            if proc is not None and proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.kill()
                    proc.wait()
            if self._out is not None:
                self._out.close()
                self._out = None
            if self._temporary and self._data_dir is not None:
                shutil.rmtree(self._data_dir, ignore_errors=True)
                self._data_dir = None
                self._temporary = False

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

    def __repr__(self) -> str:
        state = f"running at {self._bootstrap}" if self.is_running() else "stopped"
        return f"<LocalKafka {KAFKA_VERSION} {state} data={self.data_dir}>"

    # -- steps of start() ---------------------------------------------------------------------

    def _stop_at_exit(self) -> None:
        self.stop(timeout=10)

    def _prepare_data_dir(self) -> Path:
        if self._requested_dir is not None:
            self._data_dir = self._requested_dir
            self._temporary = False
        elif self._data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix="ardary-kafka-"))
            self._temporary = True
        self._data_dir.mkdir(parents=True, exist_ok=True)
        return self._data_dir

    @staticmethod
    def _write_config(data_dir: Path, port: int, controller_port: int) -> tuple[Path, Path]:
        props = data_dir / "server.properties"
        props.write_text(
            render_server_properties(port, controller_port, data_dir / "logs"), encoding="utf-8"
        )
        log4j = data_dir / "log4j2.properties"
        log4j.write_text(render_log4j2_properties(data_dir / "broker.log"), encoding="utf-8")
        return props, log4j

    @staticmethod
    def _format(jvm_common: list[str], props: Path, data_dir: Path, deadline: float) -> None:
        command = [
            *jvm_common,
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "-t",
            new_cluster_id(),
            "-c",
            str(props),
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
            raise BrokerError(f"formatting the Kafka storage in {data_dir} timed out") from None
        if done.returncode != 0:
            _raise_for_java(done.stdout + done.stderr)
            raise BrokerError(
                f"formatting the Kafka storage in {data_dir} failed: "
                f"{first_error_line(done.stderr or done.stdout)}"
            )

    def _spawn(self, jvm_common: list[str], props: Path, data_dir: Path) -> None:
        heap = max(self._heap_mb, 128)
        command = [
            jvm_common[0],
            f"-Xmx{heap}m",
            f"-Xms{min(256, heap)}m",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            *jvm_common[1:],
            "kafka.Kafka",
            str(props),
        ]
        self._out = (data_dir / "broker.out").open("ab")
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=data_dir,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, not the JVM
            preexec_fn=die_with_parent(signal.SIGKILL),
        )
        atexit.register(self._stop_at_exit)

    def _wait_ready(self, bootstrap: str, data_dir: Path, deadline: float, timeout: float) -> None:
        port = int(bootstrap.rsplit(":", 1)[1])
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = proc.returncode if proc is not None else None
                log = "\n".join(
                    part
                    for part in (_tail(data_dir / "broker.log"), _tail(data_dir / "broker.out"))
                    if part
                )
                _raise_for_java(log)
                raise BrokerError(
                    f"the local Kafka broker exited with code {code} while starting; "
                    f"last log lines:\n{log}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"the local Kafka broker did not answer on {bootstrap} within {timeout:.0f}s; "
                    f"see {data_dir / 'broker.log'}"
                )
            if _accepts(port) and _answers_metadata(bootstrap, min(remaining, 5.0)):
                return
            time.sleep(0.1)


def _raise_for_java(output: str) -> None:
    if "UnsupportedClassVersionError" in output:
        raise EnvironmentMissing(
            f"Kafka {KAFKA_VERSION} needs Java 17 or newer and `java` on PATH is older: "
            f"{INSTALL_HINT}"
        )


def _accepts(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((_HOST, port)) == 0


def _answers_metadata(bootstrap: str, timeout: float) -> bool:
    """Whether the broker lists itself in a metadata response (it is unfenced and serving)."""
    from kafka.admin import KafkaAdminClient  # imported late: only `start()` needs a client

    ms = max(int(timeout * 1000), 500)
    try:
        admin = KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="ardary-localkafka-probe",
            request_timeout_ms=ms,
            bootstrap_timeout_ms=ms,
            reconnect_backoff_max_ms=200,
        )
    except Exception:
        return False
    try:
        cluster = admin.describe_cluster()
        return bool(cluster.get("brokers"))
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            admin.close()
