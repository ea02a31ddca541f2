"""The sink while tracing is on: a write is a `sink.write` span linked to the traces it wrote."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kafka.structs import TopicPartition

from pipeline.serde import AvroCodec, SchemaStore
from pipeline.sinks import runner
from pipeline.sinks.duckdb_sink import DuckDBSink
from pipeline.sinks.runner import _Loop
from tests.tracing_support import traced
from tests.unit.sinks.helpers import lifecycle

TP = TopicPartition("p.sms.lifecycle", 0)
CODEC = AvroCodec(SchemaStore.load())


def _message(offset: int, trace: str | None) -> Any:
    headers = [("traceparent", f"00-{trace}-{offset + 1:016x}-01".encode())] if trace else []
    value = CODEC.encode(lifecycle(offset))
    return SimpleNamespace(offset=offset, value=value, timestamp=0, headers=headers)


def _loop(tmp_path: Path) -> tuple[_Loop, DuckDBSink]:
    sink = DuckDBSink(tmp_path / "wh.duckdb", "g1")
    sink.setup()
    return _Loop(SimpleNamespace(), sink, CODEC, "g1", from_beginning=False), sink


def test_a_write_links_each_trace_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    loop, sink = _loop(tmp_path)
    a, b = "a" * 32, "b" * 32
    try:
        with traced(monkeypatch) as t:
            loop.handle({TP: [_message(0, a), _message(1, a), _message(2, None), _message(3, b)]})
            loop.flush(wait=True)
            write = t.one("sink.write")
    finally:
        loop.writer.shutdown(wait=True)
        sink.close()
    assert sorted(f"{link.context.trace_id:032x}" for link in write.links) == [a, b]
    attributes = dict(write.attributes or {})
    assert (attributes["ardary.records"], attributes["ardary.traces"]) == (4, 2)
    assert attributes["ardary.rows"] >= 4


def test_links_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner, "MAX_LINKS", 2)
    loop, sink = _loop(tmp_path)
    try:
        with traced(monkeypatch) as t:
            loop.handle({TP: [_message(n, f"{n + 1:032x}") for n in range(5)]})
            loop.flush(wait=True)
            write = t.one("sink.write")
    finally:
        loop.writer.shutdown(wait=True)
        sink.close()
    assert len(write.links) == 2
    assert dict(write.attributes or {})["ardary.traces"] == 5


def test_off_no_span_and_no_links(tmp_path: Path) -> None:
    loop, sink = _loop(tmp_path)
    try:
        loop.handle({TP: [_message(0, "a" * 32)]})
        assert loop.links == {}
        loop.flush(wait=True)
    finally:
        loop.writer.shutdown(wait=True)
        sink.close()
    assert loop.rows >= 1
