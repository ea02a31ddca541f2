"""Stream == batch through the real thing: 500 send requests, the Ardary simulator over HTTP
(callbacks duplicated and shuffled), the ingress, the outbound, correlate, opt-out and metrics
agents. Once every callback has been delivered, the latest `sms.lifecycle` record per message
equals `batch_lifecycles` over the events actually on the input topics, and the latest
`metrics.sms` window per key equals `batch_metrics_from_events` over them — exactly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.core.lifecycle import batch_lifecycles
from pipeline.core.metrics import batch_metrics_from_events
from pipeline.devtools.stack.stack import Stack, StackOptions, run_stack
from pipeline.devtools.stack.traffic import demo_requests
from pipeline.kafka.send_requests import SendRequestPublisher
from pipeline.records import (
    CallEvent,
    ClickCallback,
    IncomingSms,
    OptOut,
    SendRequest,
    SendResult,
    SmsMetricsWindow,
    StatusCallback,
)
from pipeline.settings import load_settings
from pipeline.topics import metrics_key
from tests.agents.streamdata import TopicReader

pytestmark = pytest.mark.integration

N_MESSAGES = 500  # 1,000 took 46-64 s of a 2-core box for the same checks
INPUTS = (
    "sms.send-requests",
    "sms.send-results",
    "callbacks.status",
    "callbacks.clicks",
    "callbacks.incoming-sms",
    "callbacks.calls",
    "sms.optouts",
)


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = load_settings(kafka_bootstrap_servers=kafka_bootstrap)
    run_dir: Path = tmp_path_factory.mktemp("sim") / f"sb{int(time.time())}"
    options = StackOptions(
        run_dir=run_dir,
        dialect="v1",
        seed=5,
        rate_per_second=500.0,
        simulator_args=(
            "--duplicate-probability",
            "0.3",
            "--shuffle",
            "--reply-probability",
            "0.2",
            "--missed-call-probability",
            "0.1",
        ),
    )
    with run_stack(settings, options) as running:
        yield running


class AllRecords(TopicReader):
    """A TopicReader that also keeps every record, not only the latest per key."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(bootstrap, topic)
        self.values: list[Any] = []

    async def poll(self, timeout_ms: int = 500) -> int:
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=5000)
        n = 0
        for msgs in batches.values():
            for m in msgs:
                value = None if m.value is None else self.codec.decode(m.value)
                self.latest[m.key] = value
                if value is not None:
                    self.values.append(value)
                n += 1
        self.count += n
        return n


def _is_zero(w: SmsMetricsWindow) -> bool:
    skip = {"window_start", "window_end", "login", "window"}
    return all(not v for k, v in dataclasses.asdict(w).items() if k not in skip)


async def _sim_quiet(stack: Stack, client: httpx.AsyncClient) -> bool:
    stats = (await client.get(f"{stack.simulator_url}/_sim/stats")).json()
    return stats["callbacks"].get("planned", 0) > 0 and stats["callbacks_pending"] == 0


async def test_simulated_traffic_stream_equals_batch(stack: Stack) -> None:
    with SendRequestPublisher(stack.bootstrap, prefix=stack.prefix) as pub:
        for request in demo_requests(N_MESSAGES, seed=21, clock=lambda: datetime.now(UTC)):
            pub.publish(request)

    # 1. every request has its result, and the simulator has delivered every callback
    async with AllRecords(stack.bootstrap, f"{stack.prefix}sms.send-results") as results:
        await results.until(lambda: len(results.latest) == N_MESSAGES, 120, f"{N_MESSAGES} results")
    async with httpx.AsyncClient(timeout=5) as client:
        deadline = time.monotonic() + 120
        while not await _sim_quiet(stack, client):
            stack.processes.check_alive()
            assert time.monotonic() < deadline, "simulator callbacks still pending"
            await asyncio.sleep(0.5)
        stats = (await client.get(f"{stack.simulator_url}/_sim/stats")).json()
    assert stats["callbacks"].get("planned", 0) > 2 * N_MESSAGES  # sent + received at least

    # 2. the inputs, exactly as the agents saw them (duplicates included)
    inputs: list[Any] = []
    for name in INPUTS:
        async with AllRecords(stack.bootstrap, f"{stack.prefix}{name}") as reader:
            while await reader.poll(timeout_ms=1500):
                pass
            inputs.extend(reader.values)
    statuses = [e for e in inputs if isinstance(e, StatusCallback)]
    assert len(statuses) > len({e.event_id for e in statuses})  # duplicates really arrived
    message_types = SendRequest | SendResult | StatusCallback | ClickCallback
    lifecycle_events = [e for e in inputs if isinstance(e, message_types)]
    expected = {k.encode(): v for k, v in batch_lifecycles(lifecycle_events).items()}
    assert len(expected) == N_MESSAGES
    assert sum(v.state == "DELIVERED" for v in expected.values()) > N_MESSAGES * 0.9
    assert any(v.click_count > 0 for v in expected.values())
    fact_types = message_types | IncomingSms | CallEvent | OptOut
    fact_events = [e for e in inputs if isinstance(e, fact_types)]
    expected_windows = {
        metrics_key(k.window, k.start, k.login): v
        for k, v in batch_metrics_from_events(fact_events).items()
    }

    # 3. stream == batch
    async with TopicReader(stack.bootstrap, f"{stack.prefix}sms.lifecycle") as lifecycles:
        await lifecycles.until(
            lambda: lifecycles.latest == expected, 120, "sms.lifecycle == batch_lifecycles"
        )
    async with TopicReader(stack.bootstrap, f"{stack.prefix}metrics.sms") as windows:

        def nonzero() -> dict[bytes, Any]:
            return {k: v for k, v in windows.latest.items() if v is not None and not _is_zero(v)}

        await windows.until(
            lambda: nonzero() == expected_windows, 120, "metrics.sms == batch_metrics"
        )
