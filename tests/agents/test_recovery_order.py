"""SeekFirstRecovery: the stream partitions deliver nothing until the seek to committed is done.

The integration proof is `tests/integration/test_outbound_crash.py` (a restarted worker loses
no request); this pins the order of the calls that makes it so, on the real faust objects.
"""

from __future__ import annotations

from typing import Any

import pytest
from faust.types import TP

from pipeline.agents.app import create_app
from pipeline.kafka.recovery import PipelineTableManager, SeekFirstRecovery
from pipeline.settings import Settings


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")  # nothing connects here
    built, _streams = create_app(Settings(), agents=["outbound"])
    return built


def test_the_app_recovers_with_seek_first(app: Any) -> None:
    assert isinstance(app.tables, PipelineTableManager)
    assert isinstance(app.tables.recovery, SeekFirstRecovery)


async def test_stream_partitions_resume_only_after_the_seek(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recovery = app.tables.recovery
    consumer = app.consumer
    stream_tp = TP("t.sms.send-requests", 0)
    changelog_tp = TP(f"{app.conf.id}-outbound-sends-changelog", 0)
    calls: list[str] = []

    async def seek() -> None:
        # what the fetcher may deliver while the seek is awaited
        calls.append(f"seek, stream active: {stream_tp in consumer._get_active_partitions()}")

    async def fetcher_started() -> None:
        calls.append("fetcher")

    consumer.pause_partitions({stream_tp})
    monkeypatch.setattr(consumer, "assignment", lambda: {stream_tp, changelog_tp})
    monkeypatch.setattr(consumer, "perform_seek", seek)
    monkeypatch.setattr(
        consumer, "resume_partitions", lambda tps: calls.append(f"resume {sorted(tps)}")
    )
    monkeypatch.setattr(app.flow_control, "resume", lambda: calls.append("flow"))
    monkeypatch.setattr(app._fetcher, "maybe_start", fetcher_started)
    monkeypatch.setattr(recovery, "_is_changelog_tp", lambda tp: tp == changelog_tp)
    app.consumer_generation_id = 3

    await recovery.on_recovery_completed(generation_id=3)

    assert calls == [
        "seek, stream active: False",
        f"resume {[stream_tp]}",
        "flow",
        "fetcher",
    ]
    assert recovery.completed.is_set()


async def test_a_rebalance_during_the_seek_resumes_nothing(
    app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    recovery = app.tables.recovery
    consumer = app.consumer
    calls: list[str] = []

    async def seek_then_rebalance() -> None:
        calls.append("seek")
        app.consumer_generation_id = 5  # a new generation arrived meanwhile

    monkeypatch.setattr(consumer, "assignment", lambda: {TP("t.sms.send-requests", 0)})
    monkeypatch.setattr(consumer, "perform_seek", seek_then_rebalance)
    monkeypatch.setattr(consumer, "resume_partitions", lambda tps: calls.append("resume"))
    monkeypatch.setattr(app.flow_control, "resume", lambda: calls.append("flow"))
    app.consumer_generation_id = 4

    await recovery.on_recovery_completed(generation_id=4)

    assert calls == ["seek"]
    assert not recovery.completed.is_set()
