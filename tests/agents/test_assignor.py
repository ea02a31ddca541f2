"""The assignor's refresh when a subscribed topic is missing from the metadata (the integration
proof, with a real worker and broker: tests/integration/test_late_topic_assignment.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from pipeline.agents.app import create_app
from pipeline.kafka.assignor import (
    PipelinePartitionAssignor,
    missing_topics,
    refresh_until_listed,
)
from pipeline.settings import load_settings


class Cluster:
    def __init__(self, partitions: dict[str, int]) -> None:
        self.partitions = partitions

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        n = self.partitions.get(topic, 0)
        return set(range(n)) if n else None


class Client:
    """aiokafka's client as far as the refresh uses it: the topic appears at the 3rd refresh."""

    def __init__(self, appears_at: int) -> None:
        self.cluster = Cluster({"a": 2})
        self.refreshes = 0
        self.appears_at = appears_at

    async def force_metadata_update(self) -> bool:
        self.refreshes += 1
        if self.refreshes >= self.appears_at:
            self.cluster.partitions["late"] = 2
        return True


def members(*subscriptions: list[str]) -> dict[str, Any]:
    return {f"m{i}": SimpleNamespace(subscription=s) for i, s in enumerate(subscriptions)}


def test_the_pipeline_app_uses_the_pipeline_assignor() -> None:
    app, _ = create_app(load_settings(kafka_bootstrap_servers="127.0.0.1:1"), agents=[])
    assert isinstance(app.assignor, PipelinePartitionAssignor)


def test_missing_topics_are_those_some_member_subscribes_to_without_partitions() -> None:
    cluster = Cluster({"a": 2, "b": 1})
    assert missing_topics(cluster, members(["a", "late"], ["b", "other"])) == ["late", "other"]
    assert missing_topics(cluster, members(["a"], ["b"])) == []


async def test_the_refresh_stops_once_every_topic_is_listed() -> None:
    client = Client(appears_at=3)
    assert await refresh_until_listed(client, ["late"], every=0.001, within=5)
    assert client.refreshes == 3


async def test_the_refresh_gives_up_after_its_time(caplog: pytest.LogCaptureFixture) -> None:
    client = Client(appears_at=10**9)
    assert not await refresh_until_listed(client, ["late"], every=0.001, within=0.05)
    assert client.refreshes > 1
    assert "still missing" in caplog.text


async def test_an_assignment_without_a_subscribed_topic_starts_one_refresh(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app, _ = create_app(load_settings(kafka_bootstrap_servers="127.0.0.1:1"), agents=[])
    assignor = app.assignor
    client = Client(appears_at=1)
    aiokafka_consumer = SimpleNamespace(_client=client)
    consumer = SimpleNamespace(_thread=SimpleNamespace(_ensure_consumer=lambda: aiokafka_consumer))
    monkeypatch.setattr(type(app), "consumer", consumer, raising=False)
    parent_assign: list[Any] = []
    monkeypatch.setattr(
        "faust.assignor.PartitionAssignor.assign",
        lambda self, cluster, metadata: parent_assign.append(metadata) or {},
    )
    metadata = members(["a", "late"])
    assignor.assign(client.cluster, metadata)
    assignor.assign(client.cluster, metadata)  # a refresh under way: not a second one
    assert parent_assign == [metadata, metadata]  # faust's assignment itself is unchanged
    task = assignor._refreshing
    assert task is not None
    assert await asyncio.wait_for(task, 5) is True
    assert client.refreshes == 1
