"""The ingress with its spool (a real directory) and an in-memory broker: 200 once durable."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import pytest

from pipeline.ingress.app import IngressApp, create_app
from pipeline.ingress.spool import SegmentSpool
from pipeline.serde import AvroCodec
from pipeline.settings import Settings
from pipeline.topics import spec_for

from .conftest import PREFIX, TOKEN, FakePublisher, call_raw
from .samples import incoming_json, status_json

CB = f"/callbacks/{TOKEN}"
STATUS = spec_for("callbacks.status").full_name(PREFIX)
DEAD = spec_for("callbacks.dead-letter").full_name(PREFIX)


def _query(id_sms_api: str) -> bytes:
    return f"status={quote(status_json(id_sms_api), safe='')}".encode()


async def _wait(condition: object, timeout: float = 5.0) -> None:
    """Poll a condition on the event loop until it holds (or fail after `timeout` s)."""
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def spooled_app(
    settings: Settings, publisher: FakePublisher, codec: AvroCodec, tmp_path: Path
) -> AsyncIterator[tuple[IngressApp, SegmentSpool]]:
    spool = SegmentSpool(tmp_path / "spool", 1 << 20)
    spool.open()
    app = create_app(settings, publisher=publisher, codec=codec, publish_timeout=0.2, spool=spool)
    await app.startup()
    yield app, spool
    await app.shutdown()
    spool.close()


async def test_broker_known_down_spools_then_forwards_oldest_first(
    spooled_app: tuple[IngressApp, SegmentSpool], publisher: FakePublisher
) -> None:
    app, spool = spooled_app
    publisher.broker_up = False
    answers = [await call_raw(app, "GET", CB, query=_query(f"m-{n}")) for n in range(5)]
    assert [a.status for a in answers] == [200] * 5
    assert all(a.json["spooled"] is True for a in answers)
    assert spool.records == 5 and publisher.sent == []
    publisher.broker_up = True
    await _wait(lambda: spool.records == 0)
    keys = [key for _, key, _ in publisher.sent]
    assert keys == [f"m-{n}".encode() for n in range(5)]  # the order they arrived in


async def test_a_failed_publish_is_spooled_and_forwarded_later(
    spooled_app: tuple[IngressApp, SegmentSpool], publisher: FakePublisher
) -> None:
    app, spool = spooled_app
    publisher.fail = True  # the broker answers with errors (the forwarder's tries fail too)
    failed = await call_raw(app, "GET", CB, query=_query("f-1"))
    assert failed.status == 200 and failed.json["spooled"] is True
    assert spool.records == 1 and publisher.sent == []
    publisher.fail = False
    await _wait(lambda: spool.records == 0)
    assert [key for _, key, _ in publisher.sent] == [b"f-1"]


async def test_hanging_broker_spools_within_the_timeout(
    spooled_app: tuple[IngressApp, SegmentSpool], publisher: FakePublisher
) -> None:
    app, spool = spooled_app
    publisher.gate = asyncio.Event()  # never acknowledges
    answer = await asyncio.wait_for(call_raw(app, "GET", CB, query=_query("h-1")), 2.0)
    assert answer.status == 200 and answer.json["spooled"] is True
    assert spool.records == 1


async def test_while_the_spool_holds_records_new_ones_queue_behind_them(
    spooled_app: tuple[IngressApp, SegmentSpool], publisher: FakePublisher
) -> None:
    app, spool = spooled_app
    publisher.broker_up = False
    await call_raw(app, "GET", CB, query=_query("first"))
    publisher.gate = asyncio.Event()  # the forwarder's publish will wait here
    publisher.broker_up = True
    second = await call_raw(app, "GET", CB, query=_query("second"))
    assert second.status == 200 and second.json["spooled"] is True  # behind "first"
    publisher.gate.set()
    await _wait(lambda: spool.records == 0)
    assert [key for _, key, _ in publisher.sent] == [b"first", b"second"]


async def test_a_full_spool_answers_503_and_logs_once_a_minute(
    settings: Settings,
    publisher: FakePublisher,
    codec: AvroCodec,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spool = SegmentSpool(tmp_path / "spool", 1 << 20)
    spool.open()
    app = create_app(settings, publisher=publisher, codec=codec, spool=spool)
    publisher.broker_up = False
    await app.startup()
    try:
        assert (await call_raw(app, "GET", CB, query=_query("a"))).status == 200
        spool.max_bytes = spool.bytes  # full now
        with caplog.at_level(logging.ERROR, logger="pipeline.ingress"):
            full = [await call_raw(app, "GET", CB, query=_query(f"b{n}")) for n in range(3)]
        assert [r.status for r in full] == [503] * 3
        assert full[0].json == {"error": "spool_full"}
        assert caplog.text.count("spool full") == 1
        assert spool.records == 1
        publisher.up = False
        ready = await call_raw(app, "GET", "/readyz")
        assert ready.status == 503  # neither the broker nor the spool can take a callback
    finally:
        await app.shutdown()
        spool.close()


async def test_a_dead_letter_is_spooled_too_and_answered_400(
    spooled_app: tuple[IngressApp, SegmentSpool], publisher: FakePublisher
) -> None:
    app, spool = spooled_app
    publisher.broker_up = False
    answer = await call_raw(app, "GET", CB, query=b"status=%7Bnot-json")
    assert answer.status == 400
    assert spool.records == 1
    publisher.broker_up = True
    await _wait(lambda: spool.records == 0)
    assert [topic for topic, _, _ in publisher.sent] == [DEAD]


async def test_readyz_stays_ready_while_the_spool_accepts(
    spooled_app: tuple[IngressApp, SegmentSpool], publisher: FakePublisher
) -> None:
    app, _ = spooled_app
    publisher.up = False
    publisher.broker_up = False
    assert (await call_raw(app, "GET", "/readyz")).status == 200


async def test_metrics_show_the_spool_and_the_broker(
    spooled_app: tuple[IngressApp, SegmentSpool], publisher: FakePublisher
) -> None:
    app, spool = spooled_app
    publisher.broker_up = False
    await call_raw(app, "GET", CB, query=f"message={quote(incoming_json('hi'), safe='')}".encode())
    text = (await call_raw(app, "GET", "/metrics")).body.decode()
    assert "ardary_ingress_spool_records 1.0" in text
    assert "ardary_ingress_broker_up 0.0" in text
    assert f"ardary_ingress_spool_bytes {float(spool.bytes)}" in text
    publisher.broker_up = True
    await _wait(lambda: spool.records == 0)
    text = (await call_raw(app, "GET", "/metrics")).body.decode()
    assert "ardary_ingress_spool_forwarded_records_total 1.0" in text
    assert "ardary_ingress_spool_records 0.0" in text
