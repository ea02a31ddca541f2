"""The broker a benchmark runs against: KAFKA_BOOTSTRAP_SERVERS, else a LocalKafka of its own."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["bench_broker"]


@contextlib.contextmanager
def bench_broker() -> Iterator[str]:
    """Yield bootstrap servers; a LocalKafka started here is stopped on exit."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if configured:
        yield configured
        return
    from pipeline.devtools.localkafka import LocalKafka

    with LocalKafka() as kafka:
        yield kafka.bootstrap
