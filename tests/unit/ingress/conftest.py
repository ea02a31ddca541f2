"""Fixtures of the ingress unit tests: the ASGI app with an in-memory publisher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from pipeline.errors import BrokerError
from pipeline.ingress.app import IngressApp, create_app
from pipeline.serde import AvroCodec, SchemaStore
from pipeline.settings import Settings, load_settings

TOKEN = "s3cr3t-T0ken_value"
PREFIX = "unit."


class FakePublisher:
    """In-memory Publisher: records what it was given; can fail, or hang until released."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.fail = False
        self.up = True
        self.broker_up = True
        self.gate: asyncio.Event | None = None
        self.waiting = 0
        self.headers: list[Sequence[tuple[str, bytes]] | None] = []  # per publish

    async def publish(
        self,
        items: Sequence[tuple[str, bytes | None, bytes]],
        timeout: float,
        headers: Sequence[tuple[str, bytes]] | None = None,
    ) -> None:
        self.headers.append(headers)
        async with asyncio.timeout(timeout):
            if self.gate is not None:
                self.waiting += 1
                await self.gate.wait()
        if self.fail:
            raise BrokerError("fake broker down")
        self.sent.extend(items)

    async def ready(self) -> bool:
        return self.up

    def topics(self) -> list[str]:
        return [t for t, _, _ in self.sent]


@pytest.fixture(scope="session")
def codec() -> AvroCodec:
    return AvroCodec(SchemaStore.load())


@pytest.fixture
def settings() -> Settings:
    return load_settings(pipeline_callback_token=TOKEN, pipeline_topic_prefix=PREFIX)


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def app(settings: Settings, publisher: FakePublisher, codec: AvroCodec) -> IngressApp:
    return create_app(settings, publisher=publisher, codec=codec, publish_timeout=0.5)


@pytest.fixture
async def client(app: IngressApp) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingress.test") as c:
        yield c


@dataclass
class RawResponse:
    status: int
    headers: dict[bytes, bytes]
    body: bytes = b""
    json: Any = field(default=None)


async def call_raw(
    app: IngressApp,
    method: str,
    path: str,
    query: bytes = b"",
    body_chunks: list[bytes] | None = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> RawResponse:
    """Drive the ASGI app directly, with byte-exact query strings and chunked bodies."""
    import orjson

    chunks = list(body_chunks or [])
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers or [],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    pending = chunks or [b""]

    async def receive() -> dict[str, Any]:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        await asyncio.Event().wait()  # pragma: no cover - the app never reads past the end
        return {}

    out: dict[str, Any] = {"body": b""}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
            out["headers"] = dict(message["headers"])
        else:
            out["body"] += message.get("body", b"")

    await app(scope, receive, send)
    parsed = None
    if out["headers"].get(b"content-type") == b"application/json":
        parsed = orjson.loads(out["body"])
    return RawResponse(out["status"], out["headers"], out["body"], parsed)
