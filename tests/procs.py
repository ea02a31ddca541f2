"""Processes the tests start and watch through /proc: a child's output line by line, its JVMs,
whether a pid is gone, and closing a Popen whatever state it was left in."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from pathlib import Path
from typing import IO, Any

__all__ = ["close", "java_children", "lines", "pid_gone"]


def _stat(pid: int | str) -> tuple[str, str, int] | None:
    """(command name, state, parent pid) of `pid`, or None when it does not exist."""
    try:
        comm, _, rest = Path(f"/proc/{pid}/stat").read_text().rpartition(")")
    except OSError:
        return None
    state, ppid = rest.split()[:2]
    return comm.partition("(")[2], state, int(ppid)


def pid_gone(pid: int) -> bool:
    """True once `pid` no longer exists (a zombie awaiting its reaper counts as gone)."""
    found = _stat(pid)
    return found is None or found[1] == "Z"


def java_children(parent: int | None = None) -> set[int]:
    """The live JVMs whose parent is `parent` (default: this process)."""
    mine = os.getpid() if parent is None else parent
    found: set[int] = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        stat = _stat(entry.name)
        if stat is not None and stat[2] == mine and stat[1] != "Z" and stat[0] == "java":
            found.add(int(entry.name))
    return found


def lines(stream: IO[str]) -> queue.Queue[str]:
    """The lines of `stream` (newline stripped) as they come, read by a daemon thread, so a
    test can wait for one with a deadline (`get(timeout=…)`)."""
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            out.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return out


def close(proc: subprocess.Popen[Any]) -> None:
    """Kill `proc` if it still runs, reap it, and close its pipes."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
