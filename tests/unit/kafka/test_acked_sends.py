"""`AckedSends`: a kafka-python record whose batch failed is sent again, or reported."""

from __future__ import annotations

from typing import Any

import kafka.errors
import pytest

from pipeline.errors import BrokerError
from pipeline.kafka.acked import AckedSends


class _Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def add_errback(self, callback: Any) -> None:
        if self.error is not None:
            callback(self.error)


class Producer:
    """kafka-python's send/flush; the first `fail` sends fail with `error`."""

    def __init__(self, fail: int, error: Exception) -> None:
        self.fail, self.error = fail, error
        self.sent: list[tuple[str, bytes | None, bytes | None]] = []

    def send(self, topic: str, value: bytes | None, key: bytes | None = None) -> _Future:
        self.sent.append((topic, value, key))
        failing = len(self.sent) <= self.fail
        return _Future(self.error if failing else None)

    def flush(self, timeout: float | None = None) -> None:
        pass


def test_a_record_refused_for_its_sequence_is_sent_again() -> None:
    producer = Producer(fail=2, error=kafka.errors.OutOfOrderSequenceNumberError())
    sends = AckedSends(producer)
    sends.send("t", b"a", b"k1")
    sends.send("t", b"b", b"k2")
    sends.flush()
    assert producer.sent[2:] == [("t", b"a", b"k1"), ("t", b"b", b"k2")]  # once more each


def test_a_refusal_a_resend_cannot_cure_is_reported() -> None:
    producer = Producer(fail=1, error=kafka.errors.TopicAuthorizationFailedError())
    sends = AckedSends(producer)
    sends.send("t", b"a", None)
    with pytest.raises(BrokerError, match="1 record"):
        sends.flush()
    assert len(producer.sent) == 1


def test_resends_are_bounded() -> None:
    producer = Producer(fail=100, error=kafka.errors.KafkaTimeoutError())
    sends = AckedSends(producer)
    sends.send("t", b"a", None)
    with pytest.raises(BrokerError, match="KafkaTimeoutError"):
        sends.flush()
    assert len(producer.sent) == 1 + AckedSends.RESEND_ROUNDS
