"""Serve the ingress by import target with granian (Rust HTTP I/O threads, uvloop, HTTP/1.1).

Granian imports the app in a worker process, so the app opens its Kafka producer there (RSGI's
init hook, or ASGI's lifespan). Measured on the 2-core box (docs/benchmarks.md): granian + bare
ASGI is ~1.7x uvicorn; RSGI spares the per-request scope and message dicts of ASGI.
"""

from __future__ import annotations

import resource

from granian.constants import HTTPModes, Interfaces, Loops
from granian.http import HTTP1Settings
from granian.server import Server

__all__ = ["BACKLOG", "DEFAULT_RUNTIME_THREADS", "MAX_CONNECTIONS", "serve"]

DEFAULT_RUNTIME_THREADS = 2  # measured: 2 beats 1 by ~1.5x on the 2-core box (docs/benchmarks.md)
BACKLOG = 4096  # the kernel's accept queue (Linux caps it at net.core.somaxconn)
MAX_CONNECTIONS = 16384
"""granian's `backpressure`: it counts open connections, idle keep-alive ones included, and
stops accepting at the limit. Its default (the backlog, 1,024) let 1,024 idle keep-alive
connections of a sender's pool starve every new one until the 30-s header-read timeout closed
them: 30-50 s without an answer at 1,000 callbacks/s from an open-loop sender (bench ingress's
spool run). An idle connection costs a few KB in the Rust I/O threads and no Python work; the
process's file-descriptor limit is the real ceiling."""


def serve(
    target: str,
    host: str,
    port: int,
    *,
    factory: bool = False,
    runtime_threads: int = DEFAULT_RUNTIME_THREADS,
    drain_seconds: int = 15,
    interface: str = "rsgi",
) -> None:
    """Run `target` ("module:attr") until SIGINT/SIGTERM; blocks.

    One worker (the app's state — producer, metrics — is per process); on a signal granian
    stops accepting, the app's lifespan shutdown drains in-flight requests and flushes the
    producer, and a worker stuck longer than `drain_seconds` is killed.
    """
    _allow_connections(MAX_CONNECTIONS + 1024)
    Server(
        target,
        address=host,
        port=port,
        interface=Interfaces.RSGI if interface == "rsgi" else Interfaces.ASGI,
        workers=1,
        runtime_threads=runtime_threads,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        websockets=False,
        http1_settings=HTTP1Settings(keep_alive=True),
        backlog=BACKLOG,
        backpressure=MAX_CONNECTIONS,
        log_enabled=False,
        log_access=False,
        factory=factory,
        workers_kill_timeout=drain_seconds,
    ).serve()


def _allow_connections(wanted: int) -> None:
    """Raise this process's open-file limit toward `wanted` (up to its hard limit): the
    connection limit means little under a soft limit of 1,024, the default of many shells."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < ceiling:
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))
