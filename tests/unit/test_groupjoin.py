"""The sink's kafka-python group-join fix fails loudly if kafka-python moved what it touches."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import KafkaConsumer

from pipeline.errors import ConfigError
from pipeline.kafka.groupjoin import (
    GroupJoinInternalsChanged,
    resume_dropped_join,
    verify_group_join_internals,
)


@pytest.fixture
def consumer() -> Iterator[KafkaConsumer]:
    """The real consumer class, as the sink builds it, without a broker: with `api_version`
    given, kafka-python skips its bootstrap and connects only when asked to fetch."""
    built = KafkaConsumer(
        bootstrap_servers=["127.0.0.1:9"],  # the discard port: nothing is ever sent there
        group_id="groupjoin-test",
        api_version=(3, 9),
        enable_auto_commit=False,
    )
    try:
        yield built
    finally:
        built.close(autocommit=False)


def test_the_installed_kafka_python_has_what_the_fix_touches(consumer: KafkaConsumer) -> None:
    verify_group_join_internals(consumer)  # raises if anything moved
    resume_dropped_join(consumer)  # no join has run: nothing to do, and nothing raised


def test_a_renamed_join_task_is_reported(consumer: KafkaConsumer) -> None:
    coordinator: Any = getattr(consumer, "_coordinator")  # noqa: B009
    delattr(coordinator, "_join_task")
    with pytest.raises(GroupJoinInternalsChanged) as info:
        verify_group_join_internals(consumer)
    assert "ConsumerCoordinator._join_task" in str(info.value)
    assert "kafka-python 3.0.12" in str(info.value)
    assert isinstance(info.value, ConfigError)  # exit code 2, like an unverified version


@pytest.mark.parametrize(
    ("consumer_like", "missing"),
    [
        (SimpleNamespace(), "KafkaConsumer._coordinator"),
        (
            SimpleNamespace(_coordinator=SimpleNamespace(_join_task=None, need_rejoin=bool)),
            "SimpleNamespace.request_rejoin()",
        ),
        (
            SimpleNamespace(_coordinator=SimpleNamespace(_join_task=None, request_rejoin=bool)),
            "SimpleNamespace.need_rejoin()",
        ),
    ],
)
def test_each_missing_piece_is_named(consumer_like: object, missing: str) -> None:
    with pytest.raises(GroupJoinInternalsChanged) as info:
        verify_group_join_internals(consumer_like)
    assert f"has no {missing}:" in str(info.value)


def test_a_join_finished_after_its_poll_asks_for_a_rejoin() -> None:
    asked: list[bool] = []
    coordinator = SimpleNamespace(
        _join_task=SimpleNamespace(is_done=True),
        need_rejoin=lambda: False,
        request_rejoin=lambda: asked.append(True),
    )
    resume_dropped_join(SimpleNamespace(_coordinator=coordinator))
    assert asked == [True]
    coordinator._join_task = SimpleNamespace(is_done=False)  # still in flight: leave it be
    resume_dropped_join(SimpleNamespace(_coordinator=coordinator))
    assert asked == [True]
