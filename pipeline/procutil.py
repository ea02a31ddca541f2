"""Process helpers shared by the local broker and the local stack: free ports, tied children."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
from collections.abc import Callable

__all__ = ["die_with_parent", "free_ports"]

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
