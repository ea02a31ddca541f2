"""Run `ardary-pipeline worker` as a real subprocess for integration tests (start, wait, kill)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from pipeline.kafka.worker import READY_LINE
from pipeline.procutil import free_port
from tests.polling import wait_until

__all__ = ["WorkerProcess", "free_port"]


class WorkerProcess:
    """One worker subprocess with its own data dir, web port and log file."""

    def __init__(
        self,
        env: Mapping[str, str],
        agents: str,
        data_dir: Path,
        store: str = "rocksdb://",
        loglevel: str | None = None,
    ) -> None:
        self.env = {**os.environ, **env}
        self.agents = agents
        self.data_dir = data_dir
        self.store = store
        # TEST_WORKER_LOGLEVEL=info brings faust's recovery and rebalance lines into the log
        self.loglevel = loglevel or os.environ.get("TEST_WORKER_LOGLEVEL", "warn")
        self.web_port = free_port()
        self.log_path = data_dir / f"worker-{self.web_port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready_timeout: float = 90.0) -> WorkerProcess:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline",
                "worker",
                "--agents",
                self.agents,
                "--web-port",
                str(self.web_port),
                "--data-dir",
                str(self.data_dir / "state"),
                "--store",
                self.store,
                "--loglevel",
                self.loglevel,
            ],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_until(self._ready, ready_timeout, f"worker {self.agents} ready ({self.log_path})")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited {self.proc.returncode}:\n{self.log_tail()}")
        return READY_LINE in self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def dump_tasks(self, timeout: float = 10.0) -> str:
        """SIGUSR1: mode writes every thread's and asyncio task's stack to the log; return it.

        Diagnostics for a failed test only. The dump has no end marker, so it counts as done
        once the log has grown and then stayed the same size for half a second.
        """
        if self.proc is None or self.proc.poll() is not None:
            return "(worker not running)"
        before = self.log_path.stat().st_size
        os.kill(self.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        size, stable_since = before, time.monotonic()
        while time.monotonic() < deadline:
            now = self.log_path.stat().st_size
            if now != size:
                size, stable_since = now, time.monotonic()
            elif size > before and time.monotonic() - stable_since > 0.5:
                break
            time.sleep(0.05)
        with self.log_path.open("rb") as log:
            log.seek(before)
            return log.read().decode(errors="replace")

    def kill(self) -> None:
        """SIGKILL: the crash case (no graceful shutdown, no final commit)."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        return self.proc.returncode
