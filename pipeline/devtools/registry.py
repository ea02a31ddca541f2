"""A local Confluent-API schema registry for tests and the dev stack: Apicurio Registry 2.4.2.

Apicurio speaks the Confluent schema-registry API at `/apis/ccompat/v7`, so the pipeline's own
registry client and confluent-kafka's `SchemaRegistryClient` both talk to it as they would to
Confluent's. It is built once from Maven Central (`deploy/schema-registry/`, ~2 minutes and
~260 MB of Maven downloads on a fresh machine) into the user cache, like the Kafka jars, and
runs in one JVM (in-memory storage, 256 MB heap) with HTTP basic auth on every API path.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from pipeline.devtools.kafkajars import file_lock, first_error_line, require_tools
from pipeline.errors import BrokerError, EnvironmentMissing
from pipeline.procutil import die_with_parent, server_ports

__all__ = ["APICURIO_VERSION", "LocalRegistry", "ensure_registry", "registry_cache_dir"]

APICURIO_VERSION = "2.4.2.Final"
_RUNNER = "schema-registry-1-runner.jar"
_HOST = "127.0.0.1"
_SOURCE = Path(__file__).resolve().parents[2] / "deploy" / "schema-registry"


def registry_cache_dir() -> Path:
    """Where the built registry lives: next to the Kafka jars in the user cache."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "ardary-pipeline" / f"apicurio-registry-{APICURIO_VERSION}"


def ensure_registry(timeout: float = 900) -> Path:
    """The runnable registry jar, building it with Maven on first use (atomic, under a lock)."""
    target = registry_cache_dir()
    runner = target / _RUNNER
    if runner.is_file():
        return runner
    tools = require_tools("java", "mvn")
    if not (_SOURCE / "pom.xml").is_file():
        raise EnvironmentMissing(
            f"the schema registry is built from {_SOURCE}, which this installation lacks "
            "(run from a checkout, or set SCHEMA_REGISTRY_URL to a registry)"
        )
    with file_lock(target.parent / f".{target.name}.lock"):
        if runner.is_file():
            return runner
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        try:
            shutil.copytree(_SOURCE, staging / "src-tree")
            tree = staging / "src-tree"
            try:
                done = subprocess.run(
                    [
                        tools["mvn"],
                        "-q",
                        "-B",
                        "-s",
                        str(tree / "settings.xml"),
                        "-f",
                        str(tree / "pom.xml"),
                        "package",
                        "-DskipTests",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=timeout,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
            except subprocess.TimeoutExpired:
                raise EnvironmentMissing(
                    f"Maven did not build the schema registry within {timeout:.0f}s: check "
                    "network access to Maven Central"
                ) from None
            built = tree / "target"
            if done.returncode != 0 or not (built / _RUNNER).is_file():
                raise EnvironmentMissing(
                    f"Maven could not build the schema registry "
                    f"({first_error_line(done.stdout + done.stderr)})"
                )
            output = staging / "registry"
            output.mkdir()
            shutil.move(str(built / _RUNNER), output / _RUNNER)
            shutil.move(str(built / "lib"), output / "lib")
            if target.exists():
                shutil.rmtree(target)
            output.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return runner


class LocalRegistry:
    """Apicurio Registry on 127.0.0.1 in a JVM owned by this process, basic auth on.

    `url` is the Confluent-API root (`…/apis/ccompat/v7`), what `SCHEMA_REGISTRY_URL` takes.
    """

    def __init__(
        self, users: dict[str, str], port: int | None = None, log_dir: Path | None = None
    ) -> None:
        self.users = dict(users)
        self.port = port or server_ports(1)[0]
        self._log_dir = log_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{_HOST}:{self.port}/apis/ccompat/v7"

    def start(self, timeout: float = 60) -> str:
        """Start the registry; return its URL once it answers."""
        runner = ensure_registry()
        java = require_tools("java")["java"]
        users = [
            f"-Dquarkus.security.users.embedded.users.{name}={password}"
            for name, password in self.users.items()
        ]
        log_dir = self._log_dir or Path(tempfile.mkdtemp(prefix="ardary-registry-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self._out = (log_dir / "registry.log").open("ab")
        self._proc = subprocess.Popen(
            [
                java,
                "-Xmx256m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",
                f"-Dquarkus.http.host={_HOST}",
                f"-Dquarkus.http.port={self.port}",
                *users,
                "-jar",
                str(runner),
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=log_dir,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGKILL),
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while not _answers(self.port):
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"the schema registry exited with code {self._proc.returncode}:\n"
                    f"{_tail(log_dir / 'registry.log')}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise BrokerError(f"the schema registry did not answer within {timeout:.0f}s")
            time.sleep(0.1)
        return self.url

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._out is not None:
            self._out.close()
            self._out = None
        atexit.unregister(self.stop)

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


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _answers(port: int) -> bool:
    """Whether the registry answers HTTP (401 without credentials counts: it is up)."""
    try:
        with socket.create_connection((_HOST, port), timeout=0.5) as sock:
            sock.sendall(b"GET /apis/ccompat/v7/subjects HTTP/1.0\r\nHost: x\r\n\r\n")
            return sock.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False
