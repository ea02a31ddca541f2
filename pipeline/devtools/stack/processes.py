"""Child processes of the local stack: started with their logs in a run directory, stopped
in reverse order with a deadline, and killed by the kernel if the parent dies."""

from __future__ import annotations

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
from pipeline.procutil import die_with_parent, free_port

__all__ = ["Child", "ProcessGroup", "free_port", "http_ok"]


def http_ok(url: str) -> Callable[[], bool]:
    """A readiness probe: the URL answers 200."""

    def probe() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    return probe


@dataclass
class Child:
    """One `ardary-pipeline <command>` child process."""

    name: str
    args: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class ProcessGroup:
    """The stack's children; `stop_all()` is safe to call twice and from a signal handler."""

    run_dir: Path
    env: Mapping[str, str]
    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        args: list[str],
        ready: Callable[[], bool] | None = None,
        timeout: float = 90.0,
    ) -> Child:
        """Start `ardary-pipeline ARGS`; wait until `ready()` (or the process dies: error)."""
        child = Child(name, args, self.run_dir / f"{name}.log")
        with child.log_path.open("ab") as log:
            child.proc = subprocess.Popen(
                [sys.executable, "-m", "pipeline", *args],
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
        self.children.append(child)
        if ready is not None:
            deadline = time.monotonic() + timeout
            while not ready():
                if not child.alive():
                    raise PipelineError(
                        f"{name} exited during start-up (log: {child.log_path}):\n"
                        f"{child.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise PipelineError(f"{name} not ready after {timeout:.0f}s ({child.log_path})")
                time.sleep(0.2)
        return child

    def check_alive(self) -> None:
        """Raise if a child died: the stack is broken, say which and where its log is."""
        for child in self.children:
            if not child.alive():
                code = child.proc.returncode if child.proc else None
                raise PipelineError(
                    f"{child.name} exited with code {code} (log: {child.log_path}):\n"
                    f"{child.log_tail()}"
                )

    def stop(self, child: Child, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        proc = child.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return proc.returncode

    def stop_all(self, timeout: float = 20.0) -> None:
        for child in reversed(self.children):
            self.stop(child, timeout)
