"""The ingress behind granian's RSGI: no per-request dicts, one call to answer.

RSGI hands the query string over as text decoded byte for byte (latin-1), so encoding it back
to latin-1 gives the exact bytes the client sent: a dead letter keeps them byte-exact, as
with ASGI's `query_string` bytes. (Raw bytes that are not valid in a request line never reach
the app: granian answers 400 itself, under either interface.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from pipeline.ingress.request import ClientGone, RequestHead

if TYPE_CHECKING:
    from pipeline.ingress.app import IngressApp

__all__ = ["head_of", "serve"]


def head_of(scope: Any) -> RequestHead:
    """The request head of an RSGI HTTP scope."""
    headers = scope.headers
    head = RequestHead(scope.method, scope.path, scope.query_string.encode("latin-1"))
    length = headers.get("content-length")
    if length is not None:
        try:
            head.content_length = int(length)
        except ValueError:
            head.bad_length = True
    head.content_type = headers.get("content-type")
    head.chunked = "transfer-encoding" in headers
    head.traceparent = headers.get("traceparent")
    return head


async def serve(app: IngressApp, scope: Any, protocol: Any) -> None:
    """One RSGI call (HTTP only: the ingress speaks no websocket)."""

    async def chunks() -> AsyncIterator[bytes]:
        try:
            async for chunk in protocol:
                yield chunk
        except RuntimeError as exc:  # RSGIProtocolClosed: the client went away
            raise ClientGone from exc

    answer = await app.answer(head_of(scope), chunks)
    protocol.response_bytes(
        answer.status,
        [("content-type", answer.content_type), ("content-length", str(len(answer.body)))],
        answer.body,
    )
