"""`kafka_errors`: both clients' exceptions leave the boundary as the pipeline's own."""

from __future__ import annotations

from typing import Any

import aiokafka.errors
import kafka.errors
import pytest

from pipeline.errors import BrokerError, ConfigError, PipelineError
from pipeline.kafka.errors import is_retriable, kafka_errors, map_kafka_error


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


# -- "not yet": the one rule for every wait on Kafka (`is_retriable`) --------------------------

NOT_YET = [
    aiokafka.errors.NotCoordinatorError(),
    aiokafka.errors.CoordinatorLoadInProgressError(),
    aiokafka.errors.LeaderNotAvailableError(),
    aiokafka.errors.NotLeaderForPartitionError(),
    aiokafka.errors.KafkaConnectionError("lost"),
    aiokafka.errors.KafkaTimeoutError(),
    kafka.errors.NotCoordinatorError(),
    kafka.errors.CoordinatorLoadInProgressError(),
    kafka.errors.LeaderNotAvailableError(),
    kafka.errors.NotLeaderForPartitionError(),
    kafka.errors.KafkaConnectionError("lost"),
    kafka.errors.NodeNotReadyError(),
    kafka.errors.KafkaTimeoutError(),
    ConnectionResetError(104, "reset"),
    BrokerError("cannot reach Kafka at h:9092: KafkaConnectionError"),
]
REAL_FAILURES = [
    kafka.errors.GroupAuthorizationFailedError(),
    kafka.errors.TopicAuthorizationFailedError(),
    aiokafka.errors.TopicAuthorizationFailedError(),
    ConfigError("KAFKA_BOOTSTRAP_SERVERS: bad"),
    KeyError("a bug"),
]


@pytest.mark.parametrize(
    "raised", NOT_YET, ids=lambda e: f"{type(e).__module__}.{type(e).__name__}"
)
def test_a_retriable_error_is_not_yet(raised: Exception) -> None:
    assert is_retriable(raised)
    if not isinstance(raised, PipelineError):  # and it stays so through the boundary
        with pytest.raises(BrokerError) as caught, kafka_errors("reading the lag of group g"):
            raise raised
        assert is_retriable(caught.value)


@pytest.mark.parametrize(
    "raised", REAL_FAILURES, ids=lambda e: f"{type(e).__module__}.{type(e).__name__}"
)
def test_anything_else_is_a_real_failure(raised: Exception) -> None:
    assert not is_retriable(raised)
    mapped = map_kafka_error(raised, "reading")
    assert mapped is None or not is_retriable(mapped)


def test_the_tests_waits_and_the_devtools_waits_take_a_retriable_error_as_not_yet() -> None:
    from pipeline.devtools.waiting import wait_until as devtools_wait
    from tests.polling import wait_until as test_wait

    for wait in (test_wait, devtools_wait):
        calls = iter([kafka.errors.NotCoordinatorError(), BrokerError("moved"), True])

        def condition(calls: Any = calls) -> bool:
            step = next(calls)
            if isinstance(step, Exception):
                raise step
            return bool(step)

        wait(condition, 5, "a coordinator", interval=0)
        with pytest.raises(kafka.errors.GroupAuthorizationFailedError):
            wait(_raise(kafka.errors.GroupAuthorizationFailedError()), 5, "never", interval=0)


def _raise(exc: Exception) -> Any:
    def condition() -> bool:
        raise exc

    return condition
