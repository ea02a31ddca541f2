"""The ingress behind ASGI 3 (uvicorn, the tests): scope → `RequestHead`, `Answer` → two sends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from pipeline.ingress.request import ClientGone, RequestHead

if TYPE_CHECKING:
    from pipeline.ingress.app import IngressApp

__all__ = ["Receive", "Scope", "Send", "head_of", "serve"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def head_of(scope: Scope) -> RequestHead:
    """The request head of an ASGI HTTP scope (header names arrive lower-cased)."""
    head = RequestHead(scope["method"], scope["path"], scope.get("query_string", b""))
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                head.content_length = int(value)
            except ValueError:
                head.bad_length = True
        elif name == b"content-type":
            head.content_type = value.decode("latin-1")
        elif name == b"transfer-encoding":
            head.chunked = True
        elif name == b"traceparent":
            head.traceparent = value.decode("latin-1")
    return head


async def serve(app: IngressApp, scope: Scope, receive: Receive, send: Send) -> None:
    """One ASGI call: an HTTP request, or the lifespan of the process."""
    if scope["type"] == "http":
        await _http(app, scope, receive, send)
    elif scope["type"] == "lifespan":
        await _lifespan(app, receive, send)


async def _http(app: IngressApp, scope: Scope, receive: Receive, send: Send) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            yield message.get("body", b"")
            if not message.get("more_body", False):
                return

    answer = await app.answer(head_of(scope), chunks)
    await send(
        {
            "type": "http.response.start",
            "status": answer.status,
            "headers": [
                (b"content-type", answer.content_type.encode()),
                (b"content-length", str(len(answer.body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer.body})


async def _lifespan(app: IngressApp, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await app.startup()
            except Exception as exc:
                failure = type(exc).__name__ + ": " + str(exc)
                await send({"type": "lifespan.startup.failed", "message": failure})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await app.shutdown()
            await send({"type": "lifespan.shutdown.complete"})
            return
