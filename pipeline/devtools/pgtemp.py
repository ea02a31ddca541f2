"""A throw-away PostgreSQL server on a loopback port, for tests and the sink benchmark.

Uses Debian's `postgresql` package (`apt-get install -y postgresql`). initdb and postgres refuse
to run as root, so as root the server runs as the `postgres` system user (via runuser) in a
temporary directory it owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from pipeline.errors import EnvironmentMissing, SinkError
from pipeline.procutil import free_port

__all__ = ["TempPostgres", "find_pg_bin"]


def find_pg_bin() -> Path | None:
    """The bin directory of the newest installed PostgreSQL, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: (
            int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0
        ),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class TempPostgres:
    """`with TempPostgres() as pg: pg.dsn` — a fresh cluster, removed on exit."""

    def __init__(self, bin_dir: Path | None = None) -> None:
        self.bin_dir = bin_dir or find_pg_bin()
        self.port = 0
        self.dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._prefix: list[str] = []

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._prefix, *args], capture_output=True, check=False)
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise SinkError(f"{Path(args[0]).name} failed: {' | '.join(tail)}")

    def start(self, timeout: float = 60) -> str:
        """Initialise and start the cluster; returns the DSN once it accepts connections."""
        import psycopg

        if self.bin_dir is None:
            raise EnvironmentMissing(
                "PostgreSQL binaries not found (apt-get install -y postgresql)"
            )
        self.dir = Path(tempfile.mkdtemp(prefix="ardary-pg-"))
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.dir, user.pw_uid, user.pw_gid)
            self._prefix = ["runuser", "-u", "postgres", "--"]
        data = self.dir / "data"
        self._run(
            str(self.bin_dir / "initdb"),
            "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip
        self.port = free_port()
        log = open(self.dir / "postgres.log", "wb")  # noqa: SIM115 - kept open for the child
        self._proc = subprocess.Popen(
            [
                *self._prefix,
                str(self.bin_dir / "postgres"),
                "-D", str(data), "-k", str(self.dir), "-p", str(self.port), "-h", "127.0.0.1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise SinkError(f"postgres exited with {self._proc.returncode}")
            try:
                psycopg.connect(self.dsn, connect_timeout=2).close()
                return self.dsn
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SinkError(
                        f"postgres not accepting connections in {timeout:.0f}s"
                    ) from exc
                time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (fast shutdown) and remove its directory."""
        if self._proc is not None and self.dir is not None and self.bin_dir is not None:
            subprocess.run(
                [*self._prefix, str(self.bin_dir / "pg_ctl"), "stop", "-D", str(self.dir / "data"),
                 "-m", "fast", "-w"],
                capture_output=True,
                check=False,
                timeout=60,
            )  # fmt: skip
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

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
