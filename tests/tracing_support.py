"""Tracing turned on inside a test process, spans kept in memory (`pipeline.tracing`).

`start_tracing` reads the OTEL_* variables and exports over the network; the in-process tests
install the same `Tracing` facade over an SDK provider whose spans stay in memory, and put it
back off when they end.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipeline import tracing as tracing_module
from pipeline.tracing import Tracing

__all__ = ["Traced", "trace_id_of", "traced"]


class Traced:
    """The facade in use and the spans it finished."""

    def __init__(self, tracing: Tracing, exporter: InMemorySpanExporter) -> None:
        self.tracing = tracing
        self.exporter = exporter

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = list(self.exporter.get_finished_spans())
        return [s for s in found if name is None or s.name == name]

    def one(self, name: str) -> ReadableSpan:
        spans = self.spans(name)
        assert len(spans) == 1, f"{len(spans)} spans named {name!r}: {self.spans()}"
        return spans[0]


@contextmanager
def traced(monkeypatch: pytest.MonkeyPatch) -> Iterator[Traced]:
    """Tracing on for the block (`pipeline.tracing.active()` returns it), spans in memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing = Tracing(provider)
    monkeypatch.setattr(tracing_module, "_active", tracing)
    try:
        yield Traced(tracing, exporter)
    finally:
        monkeypatch.setattr(tracing_module, "_active", None)
        provider.shutdown()


def trace_id_of(headers: Any) -> str:
    """The trace id (hex) of a record's `traceparent` header."""
    (value,) = [v for k, v in headers or () if k == "traceparent"]
    text = value.decode() if isinstance(value, bytes) else value
    return str(text.split("-")[1])
