"""`ardary-pipeline broker` run as a user runs it, for the session's three-node SASL_SSL cluster.

The suite's secured cluster is this command, not a `LocalKafka` object of the test process: the
tests that use the cluster check the command itself (its ready line, the settings it prints and
writes, a node's death and its restart under the pipeline's load), and the cluster's three JVMs
start once per session instead of once for the command's own test and once for the rest.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

from pipeline.procutil import die_with_parent
from tests.environ import new_user_env
from tests.polling import wait_until
from tests.procs import close, java_children, lines

__all__ = ["BrokerCommand"]

READY_TIMEOUT_S = 300.0  # three JVMs with TLS on a shared 2-core box: minutes, not seconds
SETTINGS_LINES = 7  # the six KAFKA_* lines and "client settings: <path>"


class BrokerCommand:
    """`python -m pipeline broker --nodes 3 --security sasl_ssl --data-dir <dir>`, started and
    read until ready; its stderr is kept line by line for the tests to wait on."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline",
                "broker",
                "--nodes",
                "3",
                "--security",
                "sasl_ssl",
                "--data-dir",
                str(data_dir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=data_dir.parent,
            env=new_user_env(PYTHONUNBUFFERED="1"),
            # a test process killed outright must not leave the command and its nodes running:
            # SIGTERM takes the command's clean path (it stops its nodes)
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
        self._stderr: list[str] = []
        self._lock = threading.Lock()
        err = lines(self.proc.stderr)  # type: ignore[arg-type]
        threading.Thread(target=self._keep, args=(err,), daemon=True).start()
        out = lines(self.proc.stdout)  # type: ignore[arg-type]
        try:
            self.ready = out.get(timeout=READY_TIMEOUT_S)
            self.printed = [out.get(timeout=10) for _ in range(SETTINGS_LINES)]
        except queue.Empty:
            close(self.proc)
            raise RuntimeError(
                f"the broker command printed no ready line and settings within "
                f"{READY_TIMEOUT_S:.0f}s: {self.stderr()}"
            ) from None

    def _keep(self, err: queue.Queue[str]) -> None:
        while True:
            line = err.get()
            with self._lock:
                self._stderr.append(line)

    def stderr(self) -> list[str]:
        """Every line the command wrote to stderr so far."""
        with self._lock:
            return list(self._stderr)

    def settings(self) -> dict[str, str]:
        """The KAFKA_* settings the command wrote to `<data-dir>/client.env` (password included)."""
        text = (self.data_dir / "client.env").read_text(encoding="utf-8")
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def jvms(self) -> set[int]:
        """The pids of the command's Kafka JVMs (one per running node)."""
        return java_children(self.proc.pid)

    def node_pid(self, node_id: int) -> int | None:
        """The JVM of node `node_id` (its command line names the node's directory)."""
        marker = f"{os.sep}node-{node_id}{os.sep}"
        for pid in self.jvms():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if marker.encode() in cmdline:
                return pid
        return None

    def kill_node(self, node_id: int) -> int:
        """SIGKILL node `node_id`'s JVM (the command restarts it after a few seconds); its pid."""
        pid = self.node_pid(node_id)
        assert pid is not None, f"no JVM of node {node_id} among {sorted(self.jvms())}"
        os.kill(pid, signal.SIGKILL)
        return pid

    def wait_said(self, text: str, timeout: float, *, after: int = 0) -> str:
        """The first stderr line from index `after` on containing `text` (fails with what came,
        or at once if the command exited)."""

        def found() -> str | None:
            seen = self.stderr()
            assert self.proc.poll() is None, f"the broker command exited: {seen}"
            return next((line for line in seen[after:] if text in line), None)

        return wait_until(found, timeout, f"the broker command to say {text!r}", interval=0.2)

    def stop(self, timeout: float = 60) -> int:
        """Ctrl-C (SIGINT), as a user stops it; the exit code (the process is killed after
        `timeout` s, then the code is that of the kill)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        close(self.proc)  # kills it if it still runs
        return self.proc.returncode
