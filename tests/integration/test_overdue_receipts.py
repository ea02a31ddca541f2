"""Receipts that never came, end to end with a 5 s DELIVERY_RECEIPT_TIMEOUT_SECONDS: a real
broker, one worker (outbound and correlate), the simulator over HTTP (no callbacks of its own:
the test produces the status callbacks, so it decides which receipt comes, and when).

A message whose receipt comes in time is never overdue; one without a receipt is emitted by the
correlate timer with `overdue_since` = submitted + 5 s; a late receipt moves it to DELIVERED and
keeps the field. The latest `sms.lifecycle` records equal `batch_lifecycles` over the input
topics with the same timeout and a "now" after the timer's last run.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from pipeline.core.lifecycle import batch_lifecycles
from pipeline.kafka.admin import ensure_topics
from pipeline.records import SendResult, SmsLifecycle, StatusCallback
from pipeline.serde import make_codec
from tests.integration.test_outbound_support import (
    LOGIN,
    SimulatorProcess,
    publish,
    request,
    worker_env,
)
from tests.kafka_read import TopicReader, read_topic
from tests.polling import wait_until as wait_for
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration

TIMEOUT = 5
PHONE = "+33612345678"


@pytest.fixture(scope="module")
def rig(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    prefix = f"t{uuid4().hex[:8]}."
    ensure_topics(kafka_bootstrap, prefix, 3)
    base = tmp_path_factory.mktemp("overdue")
    sim = SimulatorProcess(base, "--latency-ms", "5")
    env = worker_env(
        kafka_bootstrap,
        prefix,
        sim,
        PIPELINE_PARTITIONS="3",
        DELIVERY_RECEIPT_TIMEOUT_SECONDS=str(TIMEOUT),
    )
    worker = WorkerProcess(env, "outbound,correlate", base / "w1")
    try:
        worker.start()
        yield kafka_bootstrap, prefix
    finally:
        worker.stop()
        sim.stop()


def receipt(id_sms_api: str, at: datetime) -> StatusCallback:
    return StatusCallback(
        event_id=f"st-{id_sms_api}",
        phone_number=PHONE,
        status="received",
        received_at=at,
        raw="{}",
        id_sms_api=id_sms_api,
        login=LOGIN,
        date_status=at,
    )


def test_receipts_that_never_came_become_overdue_and_a_late_one_keeps_the_field(
    rig: Any,
) -> None:
    bootstrap, prefix = rig
    ids = [f"od-{uuid4().hex[:8]}-{i}" for i in range(12)]
    in_time, late, never = ids[:4], ids[4:6], ids[6:]
    publish(bootstrap, f"{prefix}sms.send-requests", [request(i, phone=PHONE) for i in ids])
    with TopicReader(bootstrap, f"{prefix}sms.send-results") as results:
        by_id = results.wait_ids(ids, 30)
    submitted = {}
    for i in ids:
        [result] = by_id[i]
        assert isinstance(result, SendResult) and result.outcome == "SUBMITTED"
        submitted[i] = result.sent_time or result.completed_at
    statuses = f"{prefix}callbacks.status"
    publish(bootstrap, statuses, [receipt(i, datetime.now(UTC)) for i in in_time])

    with TopicReader(bootstrap, f"{prefix}sms.lifecycle") as lifecycles:

        def latest() -> dict[str, SmsLifecycle]:
            lifecycles.poll()
            return {i: records[-1] for i, records in lifecycles.by_id().items()}

        def overdue_emitted() -> bool:
            now = latest()
            return all(i in now and now[i].overdue_since is not None for i in late + never)

        wait_for(overdue_emitted, TIMEOUT + 30, "overdue records from the correlate timer")
        first = latest()
        for i in late + never:
            assert first[i].state == "SUBMITTED", first[i]
            assert first[i].overdue_since == submitted[i] + timedelta(seconds=TIMEOUT)
            assert first[i].updated_at == first[i].overdue_since
        for i in in_time:
            assert (first[i].state, first[i].overdue_since) == ("DELIVERED", None)

        publish(bootstrap, statuses, [receipt(i, datetime.now(UTC)) for i in late])
        wait_for(
            lambda: all(latest()[i].state == "DELIVERED" for i in late), 30, "the late receipts"
        )
        final = latest()
    for i in late:  # moved on, the field kept
        assert final[i].overdue_since == submitted[i] + timedelta(seconds=TIMEOUT)
    for i in never:
        assert final[i] == first[i]

    codec = make_codec(None)
    events = [
        codec.decode(r.value)
        for name in ("sms.send-requests", "sms.send-results", "callbacks.status")
        for r in read_topic(bootstrap, f"{prefix}{name}")
    ]
    batch = batch_lifecycles(events, now=datetime.now(UTC), receipt_timeout_seconds=TIMEOUT)
    assert {i: final[i] for i in ids} == {i: batch[i] for i in ids}
