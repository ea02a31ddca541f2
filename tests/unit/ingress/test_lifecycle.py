"""ASGI lifespan: the owned publisher starts at startup; shutdown drains, then flushes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from pipeline.ingress.app import IngressApp
from pipeline.kafka.publisher import PublishItem
from pipeline.serde import AvroCodec
from pipeline.settings import Settings
from tests.polling import wait_until_async

from .conftest import PREFIX, TOKEN, FakePublisher, call_raw
from .samples import status_json


class ManagedFake(FakePublisher):
    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    async def start(self, *, wait_for_broker: bool = True) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")

    async def publish(
        self, items: Sequence[PublishItem], within: float, headers: Any = None
    ) -> None:
        await super().publish(items, within, headers)
        self.events.append("published")


def make_app(settings: Settings, codec: AvroCodec, events: list[str]) -> IngressApp:
    return IngressApp(
        codec=codec,
        prefix=PREFIX,
        tz=settings.timezone,
        token=TOKEN,
        publisher_factory=lambda: ManagedFake(events),
    )


async def run_lifespan(app: IngressApp) -> tuple[asyncio.Queue[Any], list[str], asyncio.Task[None]]:
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    outbox: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        outbox.append(message["type"])

    task = asyncio.create_task(app({"type": "lifespan"}, inbox.get, send))
    return inbox, outbox, task


async def test_lifespan_starts_and_stops_the_publisher(
    settings: Settings, codec: AvroCodec
) -> None:
    events: list[str] = []
    app = make_app(settings, codec, events)
    inbox, outbox, task = await run_lifespan(app)
    await inbox.put({"type": "lifespan.startup"})
    await wait_until_async(lambda: "lifespan.startup.complete" in outbox, 5, "startup complete")
    assert events == ["start"]
    query = f"status={quote(status_json(), safe='')}".encode()
    assert (await call_raw(app, "GET", f"/callbacks/{TOKEN}", query=query)).status == 200
    await inbox.put({"type": "lifespan.shutdown"})
    async with asyncio.timeout(5):
        await task
    assert outbox == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert events == ["start", "published", "stop"]


async def test_shutdown_drains_in_flight_requests_before_stopping(
    settings: Settings, codec: AvroCodec
) -> None:
    events: list[str] = []
    app = make_app(settings, codec, events)
    await app.startup()
    publisher = app.publisher
    assert isinstance(publisher, ManagedFake)
    publisher.gate = asyncio.Event()
    query = f"status={quote(status_json(), safe='')}".encode()
    request = asyncio.create_task(call_raw(app, "GET", f"/callbacks/{TOKEN}", query=query))
    await wait_until_async(lambda: publisher.waiting > 0, 5, "the request to be in flight")
    shutdown = asyncio.create_task(app.shutdown())
    # The signal that shutdown has begun: /readyz turns 503 once the app drains. From then on
    # shutdown can only wait for the held request; had it not waited, it would have stopped
    # the publisher in the same step in which it began draining (the fake's stop never yields).
    async with asyncio.timeout(5):
        while (await call_raw(app, "GET", "/readyz")).status != 503:
            await asyncio.sleep(0)
    assert not shutdown.done(), "shutdown must wait for the in-flight request"
    assert "stop" not in events
    late = await call_raw(app, "GET", f"/callbacks/{TOKEN}", query=query)
    assert late.status == 503  # no new callbacks while draining
    publisher.gate.set()
    async with asyncio.timeout(5):
        answered = await request
        await shutdown
    assert answered.status == 200
    assert events == ["start", "published", "stop"]


async def test_readyz_is_503_before_startup(settings: Settings, codec: AvroCodec) -> None:
    app = make_app(settings, codec, [])
    assert (await call_raw(app, "GET", "/readyz")).status == 503
    await app.startup()
    assert (await call_raw(app, "GET", "/readyz")).status == 200
    await app.shutdown()
    assert (await call_raw(app, "GET", "/readyz")).status == 503
