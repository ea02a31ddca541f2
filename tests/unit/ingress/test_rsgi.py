"""The RSGI adapter: the same answers as through ASGI, with the query's exact bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from pipeline.ingress.app import IngressApp, create_app
from pipeline.ingress.rsgi import head_of
from pipeline.serde import AvroCodec
from pipeline.topics import spec_for

from .conftest import PREFIX, TOKEN, FakePublisher, call_raw
from .samples import status_json

CB = f"/callbacks/{TOKEN}"


class Headers:
    """granian's RSGIHeaders as far as the adapter uses it (lower-cased names)."""

    def __init__(self, pairs: dict[str, str]) -> None:
        self.pairs = pairs

    def get(self, key: str, default: Any = None) -> Any:
        return self.pairs.get(key, default)

    def __contains__(self, key: str) -> bool:
        return key in self.pairs


class Scope:
    proto = "http"

    def __init__(self, method: str, path: str, query: str, headers: dict[str, str]) -> None:
        self.method, self.path, self.query_string = method, path, query
        self.headers = Headers(headers)


class Protocol:
    """An RSGI HTTP protocol: body chunks in, one `response_bytes` out."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.response: tuple[int, list[tuple[str, str]], bytes] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            for chunk in self.chunks:
                yield chunk

        return gen()

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.response = (status, headers, body)


async def _rsgi(app: IngressApp, scope: Scope, chunks: list[bytes] | None = None) -> Protocol:
    protocol = Protocol(chunks or [])
    await app.__rsgi__(scope, protocol)
    assert protocol.response is not None
    return protocol


async def test_a_callback_is_kept_and_answered_as_through_asgi(
    app: IngressApp, publisher: FakePublisher
) -> None:
    query = f"status={quote(status_json('rsgi-1'), safe='')}"
    answer = await _rsgi(app, Scope("GET", CB, query, {}))
    assert answer.response is not None
    status, headers, body = answer.response
    via_asgi = await call_raw(app, "GET", CB, query=query.encode())
    assert status == via_asgi.status == 200
    assert body == via_asgi.body
    assert dict(headers)["content-type"] == "application/json"
    assert dict(headers)["content-length"] == str(len(body))
    assert [key for _, key, _ in publisher.sent] == [b"rsgi-1", b"rsgi-1"]


async def test_the_query_string_reaches_a_dead_letter_byte_for_byte(
    app: IngressApp, publisher: FakePublisher, codec: AvroCodec
) -> None:
    raw = b"status=caf\xc3\xa9%FF&x=%zz"  # UTF-8 bytes as sent, and broken escapes
    answer = await _rsgi(app, Scope("GET", CB, raw.decode("latin-1"), {}))
    assert answer.response is not None and answer.response[0] == 400
    dead = spec_for("callbacks.dead-letter").full_name(PREFIX)
    (letter,) = [codec.decode(value) for topic, _, value in publisher.sent if topic == dead]
    assert letter.raw == raw  # type: ignore[attr-defined]


async def test_a_posted_body_arrives_in_chunks(app: IngressApp, publisher: FakePublisher) -> None:
    form = f"status={quote(status_json('rsgi-post'), safe='')}".encode()
    headers = {
        "content-type": "application/x-www-form-urlencoded",
        "content-length": str(len(form)),
    }
    answer = await _rsgi(app, Scope("POST", CB, "", headers), [form[:10], form[10:]])
    assert answer.response is not None and answer.response[0] == 200
    assert [key for _, key, _ in publisher.sent] == [b"rsgi-post"]


def test_a_malformed_content_length_is_kept_for_a_400() -> None:
    head = head_of(Scope("POST", CB, "", {"content-length": "ten"}))
    assert head.bad_length and head.content_length is None
    chunked = head_of(Scope("POST", CB, "a=1", {"transfer-encoding": "chunked"}))
    assert chunked.chunked and chunked.expects_body() and chunked.query == b"a=1"


class StalledProtocol(Protocol):
    """A client that announced a body and never sends it."""

    def __aiter__(self) -> AsyncIterator[bytes]:
        async def gen() -> AsyncIterator[bytes]:
            await asyncio.Event().wait()  # never set
            yield b""

        return gen()


async def test_a_body_that_never_comes_is_answered_408_in_time(
    settings: Any, publisher: FakePublisher, codec: AvroCodec
) -> None:
    app = create_app(settings, publisher=publisher, codec=codec, body_timeout=0.2)
    protocol = StalledProtocol([])
    scope = Scope("POST", CB, "", {"content-length": "500", "content-type": "text/plain"})
    await asyncio.wait_for(app.__rsgi__(scope, protocol), 5)
    assert protocol.response is not None
    status, _, body = protocol.response
    assert status == 408
    assert b"body_timeout" in body
    assert publisher.sent == []
