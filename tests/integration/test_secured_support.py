"""Helpers of the secured-cluster tests: a user's environment, a client, a command run and timed.

(No tests here; the name keeps the file beside the secured tests.)
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.kafka.config import KafkaClientConfig
from tests.conftest import Registry, SecuredCluster
from tests.environ import new_user_env

__all__ = ["CommandRun", "client_of", "run_command", "secured_env", "start_command"]


def secured_env(
    cluster: SecuredCluster, registry: Registry | None = None, **extra: str
) -> dict[str, str]:
    """A new user's environment with the cluster's client.env (and the registry) set."""
    settings = dict(cluster.settings)
    if registry is not None:
        settings |= registry.settings()
    return new_user_env(**(settings | extra))


def client_of(cluster: SecuredCluster) -> KafkaClientConfig:
    """The client config a pipeline process builds from the cluster's settings."""
    return KafkaClientConfig.from_env(cluster.settings)


@dataclass(frozen=True)
class CommandRun:
    """One finished `ardary-pipeline` command."""

    args: tuple[str, ...]
    returncode: int | None  # None: still running at the deadline (then killed)
    stdout: str
    stderr: str
    seconds: float

    def describe(self) -> str:
        return (
            f"`ardary-pipeline {' '.join(self.args)}` -> {self.returncode} in {self.seconds:.1f}s"
            f"\n--- stdout\n{self.stdout[-2000:]}\n--- stderr\n{self.stderr[-3000:]}"
        )


class _Started:
    def __init__(self, args: Sequence[str], env: Mapping[str, str], cwd: Path) -> None:
        self.args = tuple(args)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args],
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def finish(self, timeout: float) -> CommandRun:
        """Wait until `timeout` seconds after the start; kill it if it still runs then."""
        remaining = max(self.started + timeout - time.monotonic(), 0.1)
        try:
            out, err = self.proc.communicate(timeout=remaining)
            code: int | None = self.proc.returncode
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            code = None
        return CommandRun(self.args, code, out, err, time.monotonic() - self.started)


def start_command(args: Sequence[str], env: Mapping[str, str], cwd: Path) -> _Started:
    """Start `ardary-pipeline ARGS` as a user would (own session, no stdin); `.finish(t)`."""
    return _Started(args, env, cwd)


def run_command(
    args: Sequence[str], env: Mapping[str, str], cwd: Path, timeout: float = 60.0
) -> CommandRun:
    return start_command(args, env, cwd).finish(timeout)
