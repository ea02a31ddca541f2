"""The callback ingress: verify, parse, keep, answer — nothing else.

No framework in the hot path (measured: the server sets the ceiling, and a router costs ~40 %).
`IngressApp.answer` works on a protocol-neutral `RequestHead`; granian serves it through RSGI
(`pipeline.ingress.rsgi`), uvicorn and the tests through ASGI (`pipeline.ingress.asgi`).
Every answer about a callback is given only once what it promises is durable — the records for
a 200, the dead letter for a 400 — acknowledged by the broker or fsync'd to the local spool
(`pipeline.ingress.durable`); otherwise 503. While tracing is on (`pipeline.tracing`) each
callback request is a server span (under the request's `traceparent`, if it has one), and its
records (the dead letter too) carry that span's `traceparent` header.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

import orjson

from pipeline.ardary.callbacks import CallbackRecord, kind_of, parse_callbacks
from pipeline.errors import BrokerError, CallbackError, ConfigError, DecodeError
from pipeline.ingress import asgi, rsgi
from pipeline.ingress.decode import MAX_REQUEST_BYTES, RawRequest, dead_letter_for, decode_params
from pipeline.ingress.durable import DurableDoor, Publisher
from pipeline.ingress.metrics import CONTENT_TYPE_LATEST, IngressMetrics
from pipeline.ingress.request import Answer, BodyChunks, ClientGone, RequestHead
from pipeline.ingress.spool import SegmentSpool, SpoolFull, SpoolItem
from pipeline.kafka.config import KafkaClientConfig
from pipeline.kafka.produce import Headers
from pipeline.kafka.publisher import KafkaPublisher
from pipeline.records import DeadLetter
from pipeline.serde import Codec, codec_for
from pipeline.settings import Settings
from pipeline.topics import record_key, spec_for, topic_for_record
from pipeline.tracing import Tracing, active

__all__ = [
    "CALLBACKS_PATH",
    "IngressApp",
    "ManagedPublisher",
    "Parser",
    "app_from_env",
    "create_app",
]

log = logging.getLogger("pipeline.ingress")

Parser = Callable[..., list[CallbackRecord]]

CALLBACKS_PATH = "/callbacks"
_NOT_FOUND = orjson.dumps({"error": "not_found"})
_TOO_LARGE = orjson.dumps({"error": "too_large", "detail": f"limit {MAX_REQUEST_BYTES} bytes"})
_UNAVAILABLE = orjson.dumps({"error": "broker_unavailable"})
_SPOOL_FULL = orjson.dumps({"error": "spool_full"})
_SHUTTING_DOWN = orjson.dumps({"error": "shutting_down"})
_NOT_ALLOWED = orjson.dumps({"error": "method_not_allowed"})
_INTERNAL = orjson.dumps({"error": "internal"})
BODY_TIMEOUT_S = 10.0
"""How long a body may take to arrive once its headers have: a client that announces a body and
never sends it would otherwise hold its connection and a request slot until it goes away."""
_BODY_TIMEOUT = orjson.dumps(
    {"error": "body_timeout", "detail": f"body not received within {BODY_TIMEOUT_S:g} s"}
)
_READY = b'{"status":"ready"}'
_NOT_READY = b'{"status":"unavailable"}'


class ManagedPublisher(Publisher, Protocol):
    """A publisher the app owns: started in the ASGI lifespan, stopped (flushed) at shutdown."""

    async def start(self, *, wait_for_broker: bool = True) -> None: ...

    async def stop(self) -> None: ...


class _Outcome(Exception):
    """Internal: short-circuits a request with a ready answer."""

    def __init__(self, status: int, body: bytes, kind: str) -> None:
        self.status = status
        self.body = body
        self.kind = kind


class IngressApp:
    """The callback ingress, one instance per process shared by all requests; an ASGI 3 app
    and an RSGI app at once (the server picks its interface)."""

    def __init__(
        self,
        *,
        codec: Codec,
        prefix: str,
        tz: ZoneInfo,
        token: str | None,
        publisher: Publisher | None = None,
        publisher_factory: Callable[[], ManagedPublisher] | None = None,
        spool: SegmentSpool | None = None,
        spool_factory: Callable[[], SegmentSpool] | None = None,
        parser: Parser = parse_callbacks,
        publish_timeout: float = 2.0,
        drain_timeout: float = 10.0,
        max_bytes: int = MAX_REQUEST_BYTES,
        body_timeout: float = BODY_TIMEOUT_S,
    ) -> None:
        if publisher is None and publisher_factory is None:
            raise ValueError("give a publisher or a publisher_factory")
        self._publisher = publisher
        self._factory = publisher_factory
        self._body_timeout = body_timeout
        self._managed: ManagedPublisher | None = None
        self.spool = spool
        self._spool_factory = spool_factory
        self._door: DurableDoor | None = None
        self._codec = codec
        self._prefix = prefix
        self._tz = tz
        self._token = token.encode() if token else None
        self._parser = parser
        self._publish_timeout = publish_timeout
        self._drain_timeout = drain_timeout
        self._max_bytes = max_bytes
        self._topics: dict[type, str] = {}
        self._dead_letter_topic = spec_for("callbacks.dead-letter").full_name(prefix)
        self._in_flight = 0
        self.metrics = IngressMetrics(
            in_flight=lambda: self._in_flight,
            broker_up=lambda: self.publisher is not None and self.publisher.broker_up,
            spool=lambda: self.spool,
        )
        if publisher is not None:
            self._door = DurableDoor(
                publisher, spool, timeout=publish_timeout, metrics=self.metrics
            )
        self._idle = asyncio.Event()
        self._idle.set()
        self._draining = False

    @property
    def publisher(self) -> Publisher | None:
        """The publisher in use (the owned one once started)."""
        return self._publisher

    @publisher.setter
    def publisher(self, publisher: Publisher | None) -> None:
        self._publisher = publisher
        if self._door is not None and publisher is not None:
            self._door.publisher = publisher

    # ---- server interfaces -------------------------------------------------------------------

    async def __call__(self, scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
        await asgi.serve(self, scope, receive, send)

    async def __rsgi__(self, scope: Any, protocol: Any) -> None:
        await rsgi.serve(self, scope, protocol)

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.startup())

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(self.shutdown())

    # ---- routing ---------------------------------------------------------------------------

    async def answer(self, head: RequestHead, chunks: BodyChunks) -> Answer:
        """The response to one request (a bug costs one 500, never the process)."""
        path = head.path
        if self._is_callback_path(path):
            return await self._callback(head, chunks)
        if path == "/healthz":
            return Answer(200, b'{"status":"ok"}')
        if path == "/readyz":
            ok = await self._ready()
            return Answer(200 if ok else 503, _READY if ok else _NOT_READY)
        if path == "/metrics":
            return Answer(200, self.metrics.render(), CONTENT_TYPE_LATEST)
        self.metrics.request("other", 404)
        return Answer(404, _NOT_FOUND)

    async def _ready(self) -> bool:
        """Ready while callbacks can be kept: the broker answers, or the spool has room."""
        if self._draining or self.publisher is None or self._door is None:
            return False
        return self._door.accepting() or await self.publisher.ready()

    def _is_callback_path(self, path: str) -> bool:
        if self._token is None:
            return path == CALLBACKS_PATH
        if not path.startswith("/callbacks/"):
            return False
        # Constant-time: a wrong token must not be guessable byte by byte from timings.
        return hmac.compare_digest(path[11:].encode(), self._token)

    # ---- callbacks --------------------------------------------------------------------------

    async def _callback(self, head: RequestHead, chunks: BodyChunks) -> Answer:
        tracing = active()
        if tracing is not None:
            return await self._traced(tracing, head, chunks)
        status, body, kind = await self._counted(self._handle(head, chunks, None))
        self.metrics.request(kind, status)
        return Answer(status, body)

    async def _counted(self, handling: Awaitable[tuple[int, bytes, str]]) -> tuple[int, bytes, str]:
        """Await one request's handling, counted in flight (stop() waits for none); a bug
        costs that request a 500, never the process."""
        self._in_flight += 1
        self._idle.clear()
        try:
            return await handling
        except Exception as exc:
            log.error("callback failed", extra={"error": type(exc).__name__})
            return 500, _INTERNAL, "error"
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _traced(self, tracing: Tracing, head: RequestHead, chunks: BodyChunks) -> Answer:
        """`_callback` in a server span; its records carry the span's `traceparent`. The route,
        never the path, names it: the path holds the callback token."""
        span = tracing.span(
            f"{head.method} {CALLBACKS_PATH}",
            parent=tracing.parse(head.traceparent),
            kind="server",
            attributes={"http.request.method": head.method, "http.route": CALLBACKS_PATH},
        )
        with tracing.use(span, end=False):
            handling = self._handle(head, chunks, tracing.headers(span))
            status, body, kind = await self._counted(handling)
        self.metrics.request(kind, status)
        tracing.end(
            span,
            attributes={"http.response.status_code": status, "ardary.callback.kind": kind},
            error=f"HTTP {status}" if status >= 500 else None,
        )
        return Answer(status, body)

    async def _handle(
        self, head: RequestHead, chunks: BodyChunks, headers: Headers
    ) -> tuple[int, bytes, str]:
        if head.method not in ("GET", "POST"):
            return 405, _NOT_ALLOWED, "invalid"
        if self._draining:
            return 503, _SHUTTING_DOWN, "unavailable"
        try:
            request = await self._read(head, chunks)
        except _Outcome as outcome:
            return outcome.status, outcome.body, outcome.kind
        received_at = datetime.now(UTC)
        try:
            params = decode_params(request)
            records = self._parser(params, received_at=received_at, tz=self._tz)
            items = [self._encode(record) for record in records]
        except CallbackError as exc:
            return await self._reject(request, exc.reason, exc.detail, received_at, headers)
        except DecodeError as exc:  # a record our schema cannot hold: keep the input
            return await self._reject(request, "unencodable", str(exc), received_at, headers)
        except Exception as exc:  # a parser bug: keep the input so it can be replayed
            log.error("parser crashed", extra={"error": type(exc).__name__})
            reason = type(exc).__name__
            return await self._reject(request, "parser_error", reason, received_at, headers)
        if not items:
            return await self._reject(request, "no_callback", "no records", received_at, headers)
        started = time.perf_counter()
        try:
            spooled = await self._keep(
                [(topic, key, value) for topic, key, value, _, _ in items], headers
            )
        except SpoolFull:
            return 503, _SPOOL_FULL, "unavailable"
        except (BrokerError, TimeoutError):
            log.debug("publish failed: 503")
            return 503, _UNAVAILABLE, "unavailable"
        self.metrics.observe_publish(time.perf_counter() - started)
        accepted = []
        kinds = set()
        for topic, _, _, kind, event_id in items:
            self.metrics.record(kind)
            kinds.add(kind)
            accepted.append({"kind": kind, "topic": topic, "event_id": event_id})
        label = kinds.pop() if len(kinds) == 1 else "mixed"
        answer: dict[str, Any] = {"accepted": accepted}
        if spooled:
            answer["spooled"] = True
        return 200, orjson.dumps(answer), label

    async def _read(self, head: RequestHead, chunks: BodyChunks) -> RawRequest:
        query = head.query
        size = len(query)
        if size > self._max_bytes:
            raise _Outcome(413, _TOO_LARGE, "too_large")
        if head.bad_length:
            raise _Outcome(400, _bad_request("bad_request", "bad Content-Length"), "invalid")
        length = head.content_length
        if length is not None and size + length > self._max_bytes:
            raise _Outcome(413, _TOO_LARGE, "too_large")
        body = b""
        if head.expects_body():
            parts: list[bytes] = []
            try:
                async with asyncio.timeout(self._body_timeout):
                    async for chunk in chunks():
                        size += len(chunk)
                        if size > self._max_bytes:  # Content-Length may lie or be absent
                            raise _Outcome(413, _TOO_LARGE, "too_large")
                        parts.append(chunk)
            except ClientGone:
                gone = _bad_request("bad_request", "client went away")
                raise _Outcome(400, gone, "invalid") from None
            except TimeoutError:
                raise _Outcome(408, _BODY_TIMEOUT, "invalid") from None
            body = b"".join(parts)
        return RawRequest(
            method=head.method, query=query, body=body, content_type=head.content_type
        )

    def _encode(self, record: CallbackRecord) -> tuple[str, bytes | None, bytes, str, str]:
        cls = type(record)
        topic = self._topics.get(cls)
        if topic is None:
            topic = self._topics[cls] = topic_for_record(cls).full_name(self._prefix)
        value = self._codec.encode(record)
        return topic, record_key(record), value, kind_of(record), record.event_id

    async def _keep(self, items: list[SpoolItem], headers: Headers = None) -> bool:
        """Make the records durable (Kafka or the spool); True when spooled."""
        door = self._door
        if door is None:
            raise BrokerError("ingress is not started")
        return await door.keep(items, headers)

    async def _reject(
        self,
        request: RawRequest,
        reason: str,
        detail: str,
        received_at: datetime,
        headers: Headers = None,
    ) -> tuple[int, bytes, str]:
        """Dead-letter the raw request, then answer 400 — or 503 if it could not be kept."""
        letter: DeadLetter = dead_letter_for(request, reason, detail, received_at)
        try:
            value = self._codec.encode(letter)
            await self._keep([(self._dead_letter_topic, None, value)], headers)
        except (BrokerError, TimeoutError, SpoolFull):
            return 503, _UNAVAILABLE, "unavailable"
        self.metrics.dead_letter(reason)
        log.warning("dead-lettered", extra={"reason": reason, "event_id": letter.event_id})
        return 400, _bad_request(reason, detail), "invalid"

    # ---- life cycle -------------------------------------------------------------------------

    async def startup(self) -> None:
        """Open the spool, start the owned publisher and the forwarder (before serving).

        With a spool the ingress starts even while the broker is unreachable (it spools and
        connects in the background); without one an unreachable broker fails the start.
        """
        if self.spool is None and self._spool_factory is not None:
            spool = self._spool_factory()
            report = spool.open()
            if report.entries:
                log.info("spool holds records of an earlier run", extra={"entries": report.entries})
            self.spool = spool
        if self._factory is not None and self._managed is None:
            managed = self._factory()
            await managed.start(wait_for_broker=self.spool is None)
            self._managed = managed
            self.publisher = managed
        if self._door is None and self.publisher is not None:
            self._door = DurableDoor(
                self.publisher, self.spool, timeout=self._publish_timeout, metrics=self.metrics
            )
        elif self._door is not None:
            self._door.spool = self.spool
        if self._door is not None:
            self._door.start()
        log.info(
            "ingress started",
            extra={"token_configured": self._token is not None, "spool": self.spool is not None},
        )

    async def shutdown(self) -> None:
        """Refuse new callbacks, wait for those in flight, then flush and stop the producer."""
        self._draining = True
        try:
            await asyncio.wait_for(self._idle.wait(), self._drain_timeout)
        except TimeoutError:
            log.warning("drain timed out", extra={"in_flight": self._in_flight})
        if self._door is not None:
            await self._door.stop()
        if self._managed is not None:
            await self._managed.stop()
            self._managed = None
        if self.spool is not None and self._spool_factory is not None:
            self.spool.close()  # an owned spool; records still in it wait for the next start
        log.info("ingress stopped")


def _bad_request(reason: str, detail: str) -> bytes:
    return orjson.dumps({"error": reason, "detail": detail})


def create_app(
    settings: Settings,
    *,
    publisher: Publisher | None = None,
    codec: Codec | None = None,
    publish_timeout: float | None = None,
    spool: SegmentSpool | None = None,
    body_timeout: float = BODY_TIMEOUT_S,
) -> IngressApp:
    """The ingress app for these settings; without `publisher`, it owns a KafkaPublisher, and
    without `spool`, the spool of INGRESS_SPOOL_DIR (none when that is empty).

    Nothing connects or opens here: the owned producer and spool start in the ASGI lifespan,
    in the process (and event loop) that serves requests — granian imports the app in a worker
    process.
    """
    factory: Callable[[], ManagedPublisher] | None = None
    spool_factory: Callable[[], SegmentSpool] | None = None
    if publisher is None:
        if not settings.kafka_bootstrap_servers:
            raise ConfigError("KAFKA_BOOTSTRAP_SERVERS: required by the ingress")
        client = KafkaClientConfig.from_settings(settings)

        def factory() -> ManagedPublisher:  # called at startup, once `ingress` exists
            return KafkaPublisher(client, ack_observer=ingress.metrics.observe_ack)

        directory = settings.ingress_spool_dir
        if spool is None and directory is not None:
            limit = settings.ingress_spool_max_bytes

            def spool_factory() -> SegmentSpool:
                return SegmentSpool(directory, limit)

    token = settings.pipeline_callback_token
    ingress = IngressApp(
        codec=codec or codec_for(settings),
        prefix=settings.pipeline_topic_prefix,
        tz=settings.timezone,
        token=token.get_secret_value() if token is not None else None,
        publisher=publisher,
        publisher_factory=factory,
        spool=spool,
        spool_factory=spool_factory,
        publish_timeout=(
            settings.ingress_publish_timeout_seconds if publish_timeout is None else publish_timeout
        ),
        body_timeout=body_timeout,
    )
    return ingress


def app_from_env() -> IngressApp:
    """Factory for servers that import the app by name (granian workers): settings from env."""
    from pipeline.logs import configure_logging
    from pipeline.settings import load_settings
    from pipeline.tracing import start_tracing

    configure_logging()
    start_tracing("ardary-ingress")  # in the serving process: the exporter's thread is its own
    return create_app(load_settings())
