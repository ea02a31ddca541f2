"""Stream == batch: 1,000 messages, shuffled and duplicated, through a real worker.

The input records are produced straight to the topics (SendRequest, SendResult, StatusCallback,
ClickCallback, IncomingSms, CallEvent), not through the simulator and ingress, so the test
controls every time and every duplicate. The worker runs correlate, optouts and metrics with the
RocksDB store; the latest record per key read back from `sms.lifecycle` and `metrics.sms` must
equal the batch functions over the same events — exactly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeline.agents.optouts import optout_for
from pipeline.core.lifecycle import batch_lifecycles
from pipeline.core.metrics import batch_metrics_from_events
from pipeline.kafka.admin import ensure_topics
from pipeline.records import (
    ClickCallback,
    SendRequest,
    SendResult,
    SmsMetricsWindow,
    StatusCallback,
)
from pipeline.topics import metrics_key
from tests.agents.streamdata import (
    TopicReader,
    make_events,
    produce,
    recent_base,
    shuffled_with_duplicates,
)
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

PARTITIONS = 3
LIFECYCLE_TYPES = (SendRequest, SendResult, StatusCallback, ClickCallback)
N_MESSAGES = 1000


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from uuid import uuid4

    prefix = f"t{uuid4().hex[:8]}."
    ensure_topics(kafka_bootstrap, prefix, PARTITIONS)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PIPELINE_TOPIC_PREFIX": prefix,
        "PIPELINE_PARTITIONS": str(PARTITIONS),
    }
    data_dir: Path = tmp_path_factory.mktemp("worker")
    worker = WorkerProcess(env, "correlate,optouts,metrics", data_dir).start()
    try:
        yield kafka_bootstrap, prefix, worker
    finally:
        code = worker.stop()
        assert code == 0, worker.log_tail()


def _is_zero(w: SmsMetricsWindow) -> bool:
    skip = {"window_start", "window_end", "login", "window"}
    return all(not v for k, v in dataclasses.asdict(w).items() if k not in skip)


async def test_stream_equals_batch(stack: Any) -> None:
    bootstrap, prefix, worker = stack
    events = make_events(N_MESSAGES, seed=7, base=recent_base())
    stream = shuffled_with_duplicates(events, seed=8, dup_rate=0.3)
    assert len(stream) > len(events)  # duplicates are really there

    message_events = [e for e in events if isinstance(e, LIFECYCLE_TYPES)]
    expected_lifecycles = {k.encode(): v for k, v in batch_lifecycles(message_events).items()}
    optouts = [o for o in (optout_for(e) for e in events) if o is not None]
    assert any(o.source == "SEND_RESULT" for o in optouts)
    assert any(o.source == "INCOMING_SMS" and o.opted_out for o in optouts)
    expected_windows = {
        metrics_key(k.window, k.start, k.login): v
        for k, v in batch_metrics_from_events([*events, *optouts]).items()
    }
    assert len(expected_lifecycles) == N_MESSAGES

    await produce(bootstrap, prefix, stream)

    async with TopicReader(bootstrap, f"{prefix}sms.lifecycle") as lifecycles:
        await lifecycles.until(
            lambda: lifecycles.latest == expected_lifecycles,
            timeout=90,
            what="sms.lifecycle == batch_lifecycles",
        )
    async with TopicReader(bootstrap, f"{prefix}metrics.sms") as windows:

        def nonzero() -> dict[bytes, Any]:
            return {k: v for k, v in windows.latest.items() if v is not None and not _is_zero(v)}

        await windows.until(
            lambda: nonzero() == expected_windows, timeout=90, what="metrics.sms == batch_metrics"
        )
    async with TopicReader(bootstrap, f"{prefix}sms.optouts") as optout_topic:
        expected_optouts = {}
        for o in sorted(optouts, key=lambda o: o.event_id):
            expected_optouts.setdefault(o.phone_number.encode(), set()).add(o)
        await optout_topic.until(
            lambda: all(optout_topic.latest.get(k) in v for k, v in expected_optouts.items()),
            timeout=60,
            what="every opt-out published",
        )

    base = f"http://127.0.0.1:{worker.web_port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        text = (await client.get("/metrics")).text
        assert 'ardary_agent_events_processed_total{agent="correlate"}' in text
        deadline = time.monotonic() + 30  # the lag gauges are refreshed every LAG_INTERVAL_S
        while 'ardary_consumer_lag{agent="correlate"' not in text:
            assert time.monotonic() < deadline, "no consumer-lag gauge for correlate"
            await asyncio.sleep(0.5)
            text = (await client.get("/metrics")).text
        hour_keys = {k for k in expected_windows if k.startswith(b"1h|") and k.endswith(b"|*")}
        # the page answers from every worker's windows on metrics.sms, read by a follower that
        # trails the topic a little: wait until it holds what the topic holds
        deadline = time.monotonic() + 30
        while True:
            sms = (await client.get("/metrics/sms", params={"window": "1h", "login": "*"})).json()
            total = sum(w["requested"] for w in sms["windows"])
            if (len(sms["windows"]), total) == (len(hour_keys), N_MESSAGES):
                break
            assert time.monotonic() < deadline, f"/metrics/sms answered {sms}"
            await asyncio.sleep(0.2)
        bad = await client.get("/metrics/sms", params={"window": "5m"})
        assert bad.status_code == 400


async def test_a_replayed_callback_re_emits_its_lifecycle(stack: Any) -> None:
    # After a SIGKILL the restarted worker's RocksDB can already hold what the lost batch wrote
    # (the store is written before the changelog and the lifecycle are acknowledged), and the
    # replayed events change nothing in it: the agent must produce the lifecycle again anyway.
    bootstrap, prefix, _worker = stack
    base = recent_base()
    mid = f"replay-{time.monotonic_ns()}"
    request = SendRequest(mid, "alice", "+33612345678", "hi", base)
    received = StatusCallback(
        f"{mid}-received", "+33612345678", "received", base, "{}", mid, "alice", date_status=base
    )
    key = mid.encode()
    await produce(bootstrap, prefix, [request, received])
    async with TopicReader(bootstrap, f"{prefix}sms.lifecycle") as lifecycles:
        await lifecycles.until(
            lambda: getattr(lifecycles.latest.get(key), "state", None) == "DELIVERED",
            timeout=60,
            what="the message DELIVERED",
        )
        seen = lifecycles.counts[key]
        await produce(bootstrap, prefix, [received])  # the same event, read again
        await lifecycles.until(
            lambda: lifecycles.counts[key] > seen, timeout=60, what="the lifecycle produced again"
        )
        assert lifecycles.latest[key].state == "DELIVERED"
