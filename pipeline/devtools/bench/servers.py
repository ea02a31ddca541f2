"""The ingress benchmark's server processes: the ingress, a constant-200 app, their RSS."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline.devtools.bench.profile import ThreadCpu
from pipeline.devtools.waiting import wait_until
from pipeline.errors import PipelineError

__all__ = [
    "RssSampler",
    "hello_app",
    "hello_argv",
    "hello_rsgi",
    "ingress_argv",
    "machine_busy_seconds",
    "naive_argv",
    "running_server",
    "tree_cpu_seconds",
    "tree_rss_bytes",
    "tree_thread_cpu",
]

_HELLO_BODY = b'{"accepted":[]}'


async def hello_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Bare ASGI app answering a constant 200 (the server's ceiling on the same requests)."""
    if scope["type"] != "http":
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        return
    body = _HELLO_BODY
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _HelloRsgi:
    """Bare RSGI app answering a constant 200: the floor of the ingress's own server stack."""

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        protocol.response_bytes(
            200,
            [("content-type", "application/json"), ("content-length", str(len(_HELLO_BODY)))],
            _HELLO_BODY,
        )


hello_rsgi = _HelloRsgi()


def _tree(pid: int) -> list[int]:
    """A process and its descendants (granian serves from a child process)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                stack.extend(int(c) for c in (task / "children").read_text().split())
    return found


def tree_rss_bytes(pid: int) -> int:
    """RSS of a process and its descendants."""
    total = 0
    for current in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its descendants, all threads (/proc stat)."""
    ticks = 0
    for current in _tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot, all cores (/proc/stat: user,
    nice, system, irq, softirq, steal; idle and iowait left out)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def tree_thread_cpu(pid: int) -> list[ThreadCpu]:
    """User + system CPU seconds of every thread of a process and its descendants."""
    ticks = os.sysconf("SC_CLK_TCK")
    found: list[ThreadCpu] = []
    for current in _tree(pid):
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                with contextlib.suppress(OSError):
                    fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
                    name = (task / "comm").read_text().strip()
                    seconds = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
                    found.append(ThreadCpu(current, int(task.name), name, seconds))
    return found


class RssSampler:
    """Samples the peak RSS of a process tree in a background thread."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss_bytes(self.pid))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _answers_200(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - local URL
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def running_server(argv: list[str], env: dict[str, str], ready_url: str) -> Iterator[int]:
    """Start a server process (own process group), wait for `ready_url`, SIGTERM it at the end."""
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True)
        yield from _supervise(proc, log, ready_url)


def _supervise(proc: subprocess.Popen[bytes], log: Any, ready_url: str) -> Iterator[int]:
    try:
        try:
            wait_until(
                lambda: _answers_200(ready_url), 60, f"{ready_url} to answer 200", interval=0.2
            )
        except PipelineError:
            _print_tail(log)
            raise
        try:
            yield proc.pid
        except PipelineError:  # a wait on it timed out (the spool to drain, say): say why
            _print_tail(log)
            raise
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def _print_tail(log: Any) -> None:
    """The server's last log lines on stderr, under a heading."""
    log.seek(0)
    tail = log.read().decode(errors="replace")[-3000:]
    sys.stderr.write(f"--- the server's log, last lines ---\n{tail}\n")


def ingress_argv(port: int, server: str, threads: int) -> list[str]:
    if server == "granian":
        return [
            sys.executable, "-m", "pipeline", "ingress",
            "--host", "127.0.0.1", "--port", str(port), "--threads", str(threads),
        ]  # fmt: skip
    code = (
        "import uvicorn; uvicorn.run('pipeline.ingress.app:app_from_env', factory=True, "
        f"host='127.0.0.1', port={port}, loop='uvloop', http='httptools', "
        "log_level='warning', access_log=False)"
    )
    return [sys.executable, "-c", code]


def hello_argv(port: int, server: str, threads: int) -> list[str]:
    if server == "granian":  # the ingress's own stack: granian, RSGI
        code = (
            "from pipeline.ingress.server import serve; "
            f"serve('pipeline.devtools.bench.servers:hello_rsgi', '127.0.0.1', {port}, "
            f"runtime_threads={threads})"
        )
    else:
        code = (
            "import uvicorn; uvicorn.run('pipeline.devtools.bench.servers:hello_app', "
            f"host='127.0.0.1', port={port}, loop='uvloop', http='httptools', "
            "log_level='warning', access_log=False)"
        )
    return [sys.executable, "-c", code]


def naive_argv(port: int) -> list[str]:
    """The naive peer (pipeline/devtools/bench/naive.py) on uvicorn with uvloop and httptools."""
    code = (
        "import uvicorn; uvicorn.run('pipeline.devtools.bench.naive:app', "
        f"host='127.0.0.1', port={port}, loop='uvloop', http='httptools', "
        "log_level='warning', access_log=False)"
    )
    return [sys.executable, "-c", code]
