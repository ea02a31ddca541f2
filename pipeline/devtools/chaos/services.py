"""The chaos run's processes: `ardary-pipeline <command>` children that can be signalled,
killed and started again on the same ports and data, and a supervisor that restarts a child
that died when nobody meant it to (as Kubernetes would), noting it for the report.

Children are started from the thread that owns them (the kernel ties PDEATHSIG to the creating
thread): the chaos run drives everything from its main thread.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from pipeline.errors import PipelineError
from pipeline.procutil import die_with_parent

__all__ = ["Exit", "Service", "Services", "http_ready", "log_ready"]

Ready = Callable[["Service"], bool]


def http_ready(url: str) -> Ready:
    """Ready when `url` answers 200."""

    def probe(_: Service) -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


def log_ready(line: str) -> Ready:
    """Ready when `line` appears in the log written since the last start."""

    def probe(service: Service) -> bool:
        return line in service.log_since_start()

    return probe


@dataclass(frozen=True, slots=True)
class Exit:
    """A child that exited on its own: who, when (monotonic), its code and last log lines."""

    name: str
    at: float
    code: int | None
    tail: str


@dataclass
class Service:
    """One child process, restartable with the same command line and environment."""

    name: str
    args: list[str]
    env: Mapping[str, str]
    log_path: Path
    ready: Ready | None = None
    proc: subprocess.Popen[bytes] | None = None
    expected_down: bool = False
    starts: int = 0
    _log_offset: int = 0

    def start(self) -> None:
        """Start the child (not waiting for readiness); its log is appended to."""
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline", *self.args],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # signals reach the child's whole group
                preexec_fn=die_with_parent(signal.SIGKILL),
            )
        self.expected_down = False
        self.starts += 1

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def is_ready(self) -> bool:
        return self.alive() and (self.ready is None or self.ready(self))

    def wait_ready(self, timeout: float) -> None:
        """Block until ready; PipelineError if it exits or the time runs out."""
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if not self.alive():
                raise PipelineError(
                    f"{self.name} exited during start-up (log: {self.log_path}):\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                raise PipelineError(f"{self.name} not ready after {timeout:.0f}s ({self.log_path})")
            time.sleep(0.2)

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the child's process group; the supervisor leaves it down."""
        self.expected_down = True
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for the child to exit; SIGKILL it after `timeout`. Returns the exit code."""
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            return self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, then wait (SIGKILL after `timeout`)."""
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def log_since_start(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_since_start().splitlines()[-lines:])


@dataclass
class Services:
    """The run's children by name, and the exits nobody asked for."""

    by_name: dict[str, Service] = field(default_factory=dict)
    exits: list[Exit] = field(default_factory=list)
    restart_after: float = 2.0  # a supervisor's back-off before starting a dead child again
    _down_since: dict[str, float] = field(default_factory=dict)

    def add(self, service: Service) -> Service:
        self.by_name[service.name] = service
        return service

    def __getitem__(self, name: str) -> Service:
        return self.by_name[name]

    def supervise(self) -> None:
        """Note every child that died on its own and start it again after the back-off."""
        now = time.monotonic()
        for service in self.by_name.values():
            if service.expected_down or service.alive():
                self._down_since.pop(service.name, None)
                continue
            since = self._down_since.get(service.name)
            if since is None:
                code = service.proc.returncode if service.proc is not None else None
                self.exits.append(Exit(service.name, now, code, service.tail()))
                self._down_since[service.name] = now
            elif now - since >= self.restart_after:
                self._down_since.pop(service.name, None)
                service.start()

    def stop_all(self, timeout: float = 30.0) -> dict[str, int | None]:
        """SIGTERM every child at once, then wait for each; their exit codes."""
        for service in self.by_name.values():
            service.signal(signal.SIGTERM)
        return {name: s.wait_exit(timeout) for name, s in reversed(self.by_name.items())}
