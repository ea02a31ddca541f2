"""`kafka_errors`: both clients' exceptions leave the boundary as the pipeline's own."""

from __future__ import annotations

import aiokafka.errors
import kafka.errors
import pytest

from pipeline.errors import BrokerError, ConfigError, PipelineError
from pipeline.kafka.errors import kafka_errors, map_kafka_error


@pytest.mark.parametrize(
    "raised",
    [
        aiokafka.errors.KafkaConnectionError("refused"),
        aiokafka.errors.RequestTimedOutError(),
        kafka.errors.BrokerNotAvailableError(),
        kafka.errors.KafkaTimeoutError("slow"),
        ConnectionRefusedError(111, "refused"),
    ],
    ids=type,
)
def test_client_errors_become_a_retriable_broker_error(raised: Exception) -> None:
    with pytest.raises(BrokerError) as caught, kafka_errors("cannot reach Kafka at h:9092"):
        raise raised
    assert str(caught.value) == f"cannot reach Kafka at h:9092: {type(raised).__name__}"
    assert caught.value.retriable
    assert caught.value.__cause__ is raised


def test_detail_adds_the_client_message() -> None:
    expected = r"^sink failed: KafkaTimeoutError: .*slow"
    with pytest.raises(BrokerError, match=expected), kafka_errors("sink failed", detail=True):
        raise kafka.errors.KafkaTimeoutError("slow")


def test_foreign_errors_and_our_own_pass_through_unchanged() -> None:
    with pytest.raises(KeyError), kafka_errors("anything"):
        raise KeyError("a bug")
    own = ConfigError("KAFKA_BOOTSTRAP_SERVERS: bad")
    with pytest.raises(ConfigError) as caught, kafka_errors("anything"):
        raise own
    assert caught.value is own


def test_map_kafka_error_answers_none_for_a_foreign_exception() -> None:
    assert map_kafka_error(ValueError("x"), "doing") is None
    mapped = map_kafka_error(aiokafka.errors.KafkaError(), "doing")
    assert isinstance(mapped, PipelineError)
