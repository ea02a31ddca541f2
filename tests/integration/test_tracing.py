"""One trace per SMS, on the real broker: a worker with the OTEL_* variables set exports its spans
to an OTLP/HTTP receiver on loopback, and its records carry the SMS's trace context.

A send request published with a `traceparent` header → the outbound agent's `sms.send` span under
it, the `ardary.send` span and the HTTP client span of the call to the simulator under that; the
SendResult and the SmsLifecycle records carry headers of the same trace. A status callback
published later (with an ingress span's context of its own) is correlated in a span of the SMS's
trace, linked to that ingress span.
"""

from __future__ import annotations

import gzip
import secrets
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from pipeline.kafka.admin import ensure_topics
from pipeline.records import Record, SendResult, SmsLifecycle, StatusCallback
from pipeline.topics import record_key
from tests.integration.test_outbound_support import CODEC, SimulatorProcess, request, worker_env
from tests.kafka_read import read_topic
from tests.polling import wait_until
from tests.worker_process import WorkerProcess

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaProducer

pytestmark = pytest.mark.integration


class OtlpReceiver:
    """A minimal OTLP/HTTP trace receiver: POST /v1/traces, protobuf; keeps every span."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, Span]] = []  # (service.name, span)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # the stdlib names it
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                receiver.take(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def take(self, export: ExportTraceServiceRequest) -> None:
        with self.lock:
            for resource_spans in export.resource_spans:
                service = next(
                    (
                        a.value.string_value
                        for a in resource_spans.resource.attributes
                        if a.key == "service.name"
                    ),
                    "",
                )
                for scope_spans in resource_spans.scope_spans:
                    self.spans.extend((service, span) for span in scope_spans.spans)

    def of_trace(self, trace_id: str) -> list[Span]:
        with self.lock:
            return [span for _, span in self.spans if span.trace_id.hex() == trace_id]

    def services(self) -> set[str]:
        with self.lock:
            return {service for service, _ in self.spans}

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Rig:
    def __init__(self, bootstrap: str, prefix: str, receiver: OtlpReceiver) -> None:
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.receiver = receiver

    def publish(self, topic: str, record: Record, traceparent: str) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        try:
            producer.send(
                f"{self.prefix}{topic}",
                key=record_key(record),
                value=CODEC.encode(record),
                headers=[("traceparent", traceparent.encode())],
            )
            producer.flush(30)
        finally:
            producer.close()

    def records(self, topic: str, mid: str) -> list[tuple[Any, str | None]]:
        """The records of `mid` on `topic` so far, each with the trace id of its headers."""
        found = []
        for message in read_topic(self.bootstrap, f"{self.prefix}{topic}"):
            if message.value is None or message.key != mid.encode():
                continue
            found.append((CODEC.decode(message.value), _trace_id(message.headers)))
        return found


def _trace_id(headers: list[tuple[str, bytes]] | None) -> str | None:
    for name, value in headers or ():
        if name == "traceparent":
            return value.decode().split("-")[1]
    return None


@pytest.fixture(scope="module")
def rig(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    prefix = f"t{uuid4().hex[:8]}."
    ensure_topics(kafka_bootstrap, prefix, 2)
    base: Path = tmp_path_factory.mktemp("tracing")
    receiver = OtlpReceiver()
    sim = SimulatorProcess(base, "--latency-ms", "5")
    env = worker_env(
        kafka_bootstrap,
        prefix,
        sim,
        PIPELINE_PARTITIONS="2",
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_SERVICE_NAME="ardary-worker-traced",
        OTEL_BSP_SCHEDULE_DELAY="100",  # ms: the default 5 s would only slow the test down
        NO_PROXY="127.0.0.1,localhost",
    )
    worker = WorkerProcess(env, "outbound,correlate", base / "w1")
    try:
        worker.start()
        yield Rig(kafka_bootstrap, prefix, receiver)
    finally:
        worker.stop()
        sim.stop()
        receiver.stop()


def test_a_send_request_is_one_trace_from_its_header_to_the_lifecycle(rig: Rig) -> None:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    mid = f"traced-{uuid4().hex[:10]}"
    rig.publish("sms.send-requests", request(mid), f"00-{trace_id}-{parent_id}-01")

    def result() -> tuple[Any, str | None] | None:
        return next(iter(rig.records("sms.send-results", mid)), None)

    sent, result_trace = wait_until(result, 60, f"the SendResult of {mid}")
    assert isinstance(sent, SendResult) and sent.outcome == "SUBMITTED"
    assert result_trace == trace_id

    def spans() -> dict[str, list[Span]]:
        by_name: dict[str, list[Span]] = {}
        for span in rig.receiver.of_trace(trace_id):
            by_name.setdefault(span.name, []).append(span)
        names = set(by_name)
        return by_name if {"sms.send", "ardary.send", "sms.correlate"} <= names else {}

    by_name = wait_until(spans, 30, f"the worker's spans of trace {trace_id}")
    assert rig.receiver.services() == {"ardary-worker-traced"}
    (send,) = by_name["sms.send"]
    assert send.parent_span_id.hex() == parent_id  # the request's header is its parent
    assert send.kind == Span.SPAN_KIND_CONSUMER
    (call,) = by_name["ardary.send"]
    assert call.parent_span_id == send.span_id
    http = [
        s
        for s in rig.receiver.of_trace(trace_id)
        if s.kind == Span.SPAN_KIND_CLIENT and s.parent_span_id == call.span_id
    ]
    assert http, f"no HTTP client span under the Ardary call: {sorted(by_name)}"

    def lifecycles() -> list[tuple[Any, str | None]]:
        return rig.records("sms.lifecycle", mid)

    records = wait_until(lifecycles, 30, f"the lifecycle of {mid}")
    assert all(isinstance(r, SmsLifecycle) for r, _ in records)
    assert {trace for _, trace in records} == {trace_id}

    # A callback from Ardary: the ingress gives it a server span of another trace; it is
    # correlated in the SMS's trace, linked to that span.
    ingress_trace, ingress_span = secrets.token_hex(16), secrets.token_hex(8)
    now = datetime.now(UTC)
    status = StatusCallback(
        event_id=f"e-{uuid4().hex}",
        phone_number=sent.phone_number,
        status="delivered",
        received_at=now,
        raw="{}",
        id_sms_api=mid,
        login=sent.login,
        date_status=now,
    )
    rig.publish("callbacks.status", status, f"00-{ingress_trace}-{ingress_span}-01")

    def delivered() -> tuple[Any, str | None] | None:
        return next(
            ((r, t) for r, t in lifecycles() if r.state == "DELIVERED"),
            None,
        )

    _, delivered_trace = wait_until(delivered, 30, f"the DELIVERED lifecycle of {mid}")
    assert delivered_trace == trace_id

    def linked() -> list[Span]:
        return [
            s
            for s in rig.receiver.of_trace(trace_id)
            if s.name == "sms.correlate"
            and any(link.trace_id.hex() == ingress_trace for link in s.links)
        ]

    (correlated,) = wait_until(linked, 30, "a correlate span linked to the callback's span")
    (link,) = correlated.links
    assert link.span_id.hex() == ingress_span
