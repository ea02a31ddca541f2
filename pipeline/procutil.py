"""Process helpers: free ports, tied children, a garbage collector tuned for batch work."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import secrets
import signal
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["batch_gc", "die_with_parent", "free_port", "free_ports", "server_ports"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_HOST = "127.0.0.1"


def free_ports(count: int = 1) -> list[int]:
    """`count` distinct loopback ports the kernel considers free right now."""
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((_HOST, 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections (Linux default 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((_HOST, port))
        except OSError:
            return False
    return True


def server_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports below the kernel's ephemeral range.

    For servers that bind seconds after the choice (a JVM starting): a port `free_ports` returns
    comes from the ephemeral range, so an outgoing connection may take it meanwhile — a starting
    Kafka node's own connections to its peers did, on a loaded machine ("Address already in
    use"). The kernel never hands a port below that range to an outgoing connection.
    """
    low = _ephemeral_low()
    first = 10_000
    if low - first < 100 * count:
        return free_ports(count)
    chosen: list[int] = []
    for _ in range(100 * count):
        port = first + secrets.randbelow(low - first)
        if port not in chosen and _bindable(port):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    return free_ports(count)


def free_port() -> int:
    """One loopback port the kernel considers free right now."""
    return free_ports(1)[0]


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn`: the kernel sends `sig` to the child when this process dies.

    Called from the thread that lives as long as the child (the kernel ties the child to the
    creating thread). If the parent already died before prctl took effect, the child exits.
    """
    parent_pid = os.getpid()

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


@contextlib.contextmanager
def batch_gc(gen0: int = 50_000) -> Iterator[None]:
    """Run garbage collection rarely while a loop holds large batches of decoded records.

    Records hold no reference cycles, but every allocation counts towards CPython's collection
    thresholds (700 by default), and each older-generation pass walks every record of the
    batches in memory: a sink flushing 20,000-row batches spent a tenth of its time there.
    Reference counting still frees everything at once; only cycle detection runs less often.
    """
    before = gc.get_threshold()
    gc.set_threshold(gen0, 20, 20)
    try:
        yield
    finally:
        gc.set_threshold(*before)
