"""A request as the ingress needs it, whatever the server interface (ASGI or RSGI) delivered."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

__all__ = ["Answer", "BodyChunks", "ClientGone", "RequestHead"]


@dataclass(slots=True)
class RequestHead:
    """What arrives before the body: method, path, the raw query bytes, and the headers the
    ingress reads (a malformed Content-Length is kept as such, to be answered 400; a W3C
    `traceparent` is the parent of the request's span while tracing is on)."""

    method: str
    path: str
    query: bytes
    content_type: str | None = None
    content_length: int | None = None
    chunked: bool = False
    bad_length: bool = False
    traceparent: str | None = None

    def expects_body(self) -> bool:
        return bool(self.content_length) or self.chunked


class ClientGone(Exception):
    """The client disconnected before its body arrived."""


BodyChunks = Callable[[], AsyncIterator[bytes]]
"""The body's chunks as they arrive (raises ClientGone if the client disconnects)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A response: status, JSON (or Prometheus text) body, its content type."""

    status: int
    body: bytes
    content_type: str = "application/json"
