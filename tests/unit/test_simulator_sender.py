"""The simulator's callback sender against a real HTTP server on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from pipeline.devtools.simulator.sender import CallbackSender, NotDelivered


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.raw_path)
        return web.Response(status=503 if "refuse" in request.raw_path else 200)

    app = web.Application()
    app.router.add_get("/cb", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}", seen
    await runner.cleanup()


async def test_the_url_goes_out_byte_for_byte_and_the_status_comes_back(
    receiver: tuple[str, list[str]],
) -> None:
    base, seen = receiver
    sender = CallbackSender(4)
    # what encodeURIComponent leaves alone ('()!*~) and what it encodes (%22, %2C, %20)
    path = "/cb?status=%7B%22id%22%3A%22a'(b)!*~%22%2C%22t%22%3A%22x%20y%22%7D"
    try:
        assert await sender.get(base + path) == 200
        assert await sender.get(base + "/cb?refuse=1") == 503
    finally:
        await sender.aclose()
    assert seen == [path, "/cb?refuse=1"]


async def test_nobody_listening_is_a_connect_error_nothing_was_sent() -> None:
    with socket.socket() as s:  # a port that was free a moment ago, now closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sender = CallbackSender(1, timeout_s=2.0)
    try:
        with pytest.raises(NotDelivered) as caught:
            await sender.get(f"http://127.0.0.1:{port}/cb?status=1")
    finally:
        await sender.aclose()
    assert caught.value.outcome == "ConnectError"
