"""OpenTelemetry tracing, optional: the `otel` extra, configured by the standard OTEL_* variables.

Tracing is on in a process that called `start_tracing` when the extra is installed and the
environment asks for traces: OTEL_TRACES_EXPORTER is set to something other than `none`, or
OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (OTEL_SDK_DISABLED=true
turns it off). Otherwise nothing of opentelemetry is imported, `active()` is None, and the
callers pay one `is None` check per batch they handle.

This module is the only one that imports opentelemetry (import-linter holds every other module
to that), and only inside `start_tracing`. The SDK reads its own variables: the sampler
(OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG), the batch span processor (OTEL_BSP_*), the OTLP
exporter's endpoint, headers, timeout, compression and certificates (OTEL_EXPORTER_OTLP_*), the
resource (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES); the process's own name stands in for a
service name the environment does not give.

The trace context travels in Kafka record headers as W3C `traceparent` (and `tracestate`): the
producers put `Tracing.headers(span)` on a record, the consumers read `Tracing.context(headers)`.
docs/operations.md#tracing lists the spans and what links to what.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, SpanContext

__all__ = [
    "TRACEPARENT",
    "TRACESTATE",
    "Headers",
    "SpanKindName",
    "Tracing",
    "active",
    "extract",
    "inject",
    "instrument_httpx",
    "log_ids",
    "start_tracing",
    "stop_tracing",
    "wanted",
]

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
Headers = list[tuple[str, bytes]]
"""Kafka record headers, as aiokafka and kafka-python take and give them."""
SpanKindName = Literal["internal", "server", "client", "producer", "consumer"]

_active: Tracing | None = None


def wanted(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces (the extra may still be missing)."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    )


def active() -> Tracing | None:
    """The process's tracing, None while it is off: read it once per batch, not per record."""
    return _active


def start_tracing(service: str) -> bool:
    """Turn tracing on for this process if the environment asks for it; True if it is on.

    `service` is the service name unless OTEL_SERVICE_NAME (or `service.name` in
    OTEL_RESOURCE_ATTRIBUTES) gives one. Calling it again changes nothing. Exporter names of
    OTEL_TRACES_EXPORTER (comma-separated, default `otlp`): `otlp` (OTLP over HTTP/protobuf;
    `grpc` in OTEL_EXPORTER_OTLP[_TRACES]_PROTOCOL needs opentelemetry-exporter-otlp-proto-grpc
    installed beside the extra), `console` (stdout), `none`.
    """
    global _active
    if _active is not None:
        return True
    if not wanted():
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("OTEL_* variables ask for traces but the otel extra is not installed")
        return False
    exporters = _exporters()
    if not exporters:
        log.warning("tracing off: no usable exporter in OTEL_TRACES_EXPORTER")
        return False
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": service}))
    provider = TracerProvider(resource=resource)  # the sampler: OTEL_TRACES_SAMPLER
    for _, exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_*
    _active = Tracing(provider)
    log.info(
        "tracing on",
        extra={
            "service": resource.attributes.get("service.name"),
            "exporters": [name for name, _ in exporters],
            "sampler": os.environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on"),
        },
    )
    return True


def stop_tracing() -> None:
    """Export what is buffered and turn tracing off (also done at exit by the SDK)."""
    global _active
    tracing, _active = _active, None
    if tracing is not None:
        tracing.provider.shutdown()


def _exporters() -> list[tuple[str, SpanExporter]]:
    """The span exporters OTEL_TRACES_EXPORTER names (their own variables configure them)."""
    names = [
        name.strip().lower()
        for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",")
        if name.strip()
    ]
    found: list[tuple[str, SpanExporter]] = []
    for name in names:
        if name == "none":
            continue
        if name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            found.append((name, ConsoleSpanExporter()))
        elif name in ("otlp", "otlp_proto_http", "otlp_proto_grpc"):
            exporter = _otlp(name)
            if exporter is not None:
                found.append(exporter)
        else:
            log.warning("unknown trace exporter ignored", extra={"exporter": name})
    return found


def _otlp(name: str) -> tuple[str, SpanExporter] | None:
    """The OTLP exporter of the protocol the environment names (HTTP/protobuf by default)."""
    env = os.environ
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or ("grpc" if name == "otlp_proto_grpc" else "http/protobuf")
    ).strip()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return "otlp http/protobuf", OTLPSpanExporter()
    if protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found,unused-ignore]
                OTLPSpanExporter as GrpcSpanExporter,
            )
        except ImportError:
            log.warning("OTLP over gRPC needs opentelemetry-exporter-otlp-proto-grpc: not used")
            return None
        exporter: SpanExporter = GrpcSpanExporter()
        return "otlp grpc", exporter
    log.warning("unsupported OTLP protocol: exporter not used", extra={"protocol": protocol})
    return None


class Tracing:
    """The process's tracer and the W3C trace-context propagator (exists only while on).

    Spans are started explicitly with their parent (a `SpanContext`, e.g. read from a
    record's headers) and links; `use` makes one current for the code it wraps (the httpx
    instrumentation and `log_ids` read the current span).
    """

    def __init__(self, provider: TracerProvider) -> None:
        from opentelemetry import trace
        from opentelemetry.context import Context
        from opentelemetry.trace import Link, NonRecordingSpan, SpanKind, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self._error = StatusCode.ERROR
        self._tracer = provider.get_tracer("ardary-pipeline")
        self._propagator = TraceContextTextMapPropagator()
        self._trace = trace
        self._root: Context = Context()
        self._link = Link
        self._remote = NonRecordingSpan
        self._kinds = {
            "internal": SpanKind.INTERNAL,
            "server": SpanKind.SERVER,
            "client": SpanKind.CLIENT,
            "producer": SpanKind.PRODUCER,
            "consumer": SpanKind.CONSUMER,
        }

    def span(
        self,
        name: str,
        *,
        parent: SpanContext | None = None,
        links: Iterable[SpanContext] = (),
        kind: SpanKindName = "internal",
        attributes: Mapping[str, str | int | float | bool] | None = None,
    ) -> Span:
        """Start a span under `parent` (a new trace's root without one), linked to `links`.
        The caller ends it (`span.end()`, or `use`)."""
        context = (
            self._root
            if parent is None
            else self._trace.set_span_in_context(self._remote(parent), self._root)
        )
        return self._tracer.start_span(
            name,
            context=context,
            kind=self._kinds[kind],
            links=[self._link(link) for link in links],
            attributes=attributes,
        )

    @contextmanager
    def use(self, span: Span, *, end: bool = True) -> Iterator[Span]:
        """Make `span` current inside the block (an exception is recorded on it); end it
        after, unless `end` is False."""
        with self._trace.use_span(
            span, end_on_exit=end, record_exception=True, set_status_on_exception=True
        ):
            yield span

    def end(
        self,
        span: Span,
        *,
        attributes: Mapping[str, str | int | float | bool] | None = None,
        error: str | None = None,
    ) -> None:
        """End `span`, with `attributes` added and, for an `error`, an error status."""
        if attributes:
            span.set_attributes(attributes)
        if error is not None:
            span.set_status(self._error, error)
        span.end()

    def headers(self, span: Span) -> Headers:
        """`traceparent` (and `tracestate`) of `span`, as Kafka record headers."""
        carrier: dict[str, str] = {}
        self._propagator.inject(carrier, self._trace.set_span_in_context(span, self._root))
        return [(name, value.encode()) for name, value in carrier.items()]

    def context(
        self, headers: Iterable[tuple[str, bytes | str]] | Mapping[str, bytes | str] | None
    ) -> SpanContext | None:
        """The trace context a record's headers carry (None without a valid `traceparent`).
        `headers`: (name, value) pairs, as the Kafka clients give them, or a mapping."""
        if not headers:
            return None
        if isinstance(headers, Mapping):
            headers = headers.items()
        carrier: dict[str, str] = {}
        for name, value in headers:
            if name in (TRACEPARENT, TRACESTATE):
                text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
                carrier[name] = text
        if TRACEPARENT not in carrier:
            return None
        found = self._trace.get_current_span(self._propagator.extract(carrier, self._root))
        span_context = found.get_span_context()
        return span_context if span_context.is_valid else None

    def traceparent(self, span_context: SpanContext) -> str:
        """The W3C `traceparent` text of `span_context` (what a table keeps of a trace)."""
        return (
            f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}"
            f"-{int(span_context.trace_flags):02x}"
        )

    def parse(self, traceparent: str | None) -> SpanContext | None:
        """Inverse of `traceparent` (None for None or a malformed text)."""
        if not traceparent:
            return None
        return self.context([(TRACEPARENT, traceparent)])

    def current_ids(self) -> tuple[str, str] | None:
        """(trace id, span id) in hex of the span current in this task or thread, if any."""
        span_context = self._trace.get_current_span().get_span_context()
        if not span_context.is_valid:
            return None
        return f"{span_context.trace_id:032x}", f"{span_context.span_id:016x}"


def inject(span: Span | None) -> Headers | None:
    """Kafka headers carrying `span`'s context; None while tracing is off (or no span)."""
    tracing = _active
    if tracing is None or span is None:
        return None
    return tracing.headers(span)


def extract(headers: Sequence[tuple[str, bytes]] | None) -> SpanContext | None:
    """The trace context of a record's headers; None while tracing is off."""
    tracing = _active
    return None if tracing is None else tracing.context(headers)


def log_ids() -> tuple[str, str] | None:
    """(trace id, span id) for a log line written inside a span; None while tracing is off."""
    tracing = _active
    return None if tracing is None else tracing.current_ids()


def instrument_httpx(client: Any) -> None:
    """Give each request of `client` (an httpx client) a client span, under the current span,
    and send its `traceparent` along; nothing while tracing is off."""
    tracing = _active
    if tracing is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=tracing.provider)
