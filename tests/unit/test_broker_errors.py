"""Kafka client errors leave the topic admin, the publishers, the dead-letter reader and the sink
as BrokerError with a message saying what was being done (`pipeline.kafka.errors.kafka_errors`).
The clients are replaced by fakes that fail: no broker is involved."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kafka
import kafka.admin
import pytest
from kafka.errors import CommitFailedError, KafkaConnectionError, KafkaTimeoutError

from pipeline.errors import BrokerError, SinkError
from pipeline.ingress.dead_letters import DeadLetterReader
from pipeline.kafka.admin import describe_topics, ensure_topics
from pipeline.kafka.send_requests import SendRequestPublisher
from pipeline.records import SendRequest
from pipeline.serde import make_codec
from pipeline.settings import load_settings
from pipeline.sinks import runner
from pipeline.sinks.base import TopicPartition
from pipeline.sinks.duckdb_sink import DuckDBSink


def _unreachable(*args: Any, **kwargs: Any) -> Any:
    raise KafkaConnectionError()


class FailingAdmin:
    """An admin client whose every request times out."""

    closed = False

    def __init__(self, **kwargs: Any) -> None:
        pass

    def list_topics(self) -> list[str]:
        raise KafkaTimeoutError("no answer in 15s")

    def describe_cluster(self) -> dict[str, Any]:
        raise KafkaTimeoutError("no answer in 15s")

    def close(self) -> None:
        FailingAdmin.closed = True


def test_admin_cannot_reach_the_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka.admin, "KafkaAdminClient", _unreachable)
    with pytest.raises(BrokerError) as info:
        describe_topics("h:1", "p.")
    assert str(info.value) == "cannot reach Kafka at h:1: KafkaConnectionError"
    assert info.value.retriable


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ensure_topics("h:1", "p.", 3), "topic provisioning failed"),
        (lambda: describe_topics("h:1", "p."), "cannot describe topics"),
    ],
)
def test_admin_requests_that_fail(monkeypatch: pytest.MonkeyPatch, call: Any, message: str) -> None:
    monkeypatch.setattr(kafka.admin, "KafkaAdminClient", FailingAdmin)
    FailingAdmin.closed = False
    with pytest.raises(BrokerError) as info:
        call()
    assert str(info.value).startswith(f"{message}: KafkaTimeoutError: ")
    assert str(info.value).endswith("no answer in 15s")
    assert isinstance(info.value.__cause__, KafkaTimeoutError)
    assert FailingAdmin.closed


class FailingProducer:
    """A producer that takes nothing: send and flush time out."""

    def __init__(self, **kwargs: Any) -> None:
        pass

    def send(self, *args: Any, **kwargs: Any) -> Any:
        raise KafkaTimeoutError("buffer full")

    def flush(self, timeout: float | None = None) -> None:
        raise KafkaTimeoutError("not acknowledged")

    def close(self, timeout: float | None = None) -> None:
        pass


def test_the_send_request_publisher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "KafkaProducer", _unreachable)
    with pytest.raises(BrokerError, match=r"^cannot reach Kafka at h:1: KafkaConnectionError$"):
        SendRequestPublisher("h:1")
    monkeypatch.setattr(kafka, "KafkaProducer", FailingProducer)
    publisher = SendRequestPublisher("h:1")
    request = SendRequest("id-1", "u@x.fr", "+33612345678", "hi", datetime.now(UTC))
    with pytest.raises(BrokerError, match=r"^cannot publish: KafkaTimeoutError$"):
        publisher.publish(request)
    with pytest.raises(BrokerError, match=r"^publish flush failed: KafkaTimeoutError$"):
        publisher.flush()


def test_the_dead_letter_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kafka, "KafkaConsumer", _unreachable)
    settings = load_settings(kafka_bootstrap_servers="h:1", pipeline_topic_prefix="p.")
    with pytest.raises(BrokerError) as info:
        DeadLetterReader(settings, make_codec(None), group=None, from_beginning=True)
    assert str(info.value) == "cannot read p.callbacks.dead-letter: KafkaConnectionError"


def test_the_sink_closes_its_warehouse_when_kafka_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(runner, "KafkaConsumer", _unreachable)
    settings = load_settings(kafka_bootstrap_servers="h:1")
    sink = DuckDBSink(tmp_path / "w.duckdb", "g")
    with pytest.raises(BrokerError, match=r"^cannot reach Kafka: KafkaConnectionError$"):
        runner.run_sink(settings, stop_event=threading.Event(), sink=sink)
    with pytest.raises(SinkError, match="before setup"):
        sink.conn  # noqa: B018 -- closed


class RefusingConsumer:
    """Owns one partition; refuses every commit."""

    def assignment(self) -> set[Any]:
        return {kafka.TopicPartition("t", 0)}

    def commit(self, offsets: Any, timeout_ms: int) -> None:
        raise CommitFailedError("rebalanced")


def test_a_failed_offset_commit_is_logged_and_retried_later(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    sink = DuckDBSink(tmp_path / "w.duckdb", "g")
    loop = runner._Loop(RefusingConsumer(), sink, make_codec(None), "g", False)
    loop.written[TopicPartition("t", 0)] = 5
    try:
        with caplog.at_level(logging.WARNING, logger="pipeline.sink"):
            loop.commit_written()  # informational only: no error escapes
        assert "Kafka offset commit failed (retried): CommitFailedError" in caplog.text
        assert loop.written == {TopicPartition("t", 0): 5}  # kept for the retry
        assert loop.commit_after > 0
    finally:
        loop.writer.shutdown(wait=True)
