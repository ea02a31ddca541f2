"""The tracing facade: off, nothing of OpenTelemetry is imported; on, the W3C context survives a
trip through Kafka headers, and log lines written inside a span name it."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys

import pytest
from opentelemetry.trace import SpanKind

from pipeline import tracing
from pipeline.logs import JsonFormatter
from tests.tracing_support import trace_id_of, traced

# Every runtime module whose hot path asks `tracing.active()`; importing them and asking must
# not import OpenTelemetry.
_RUNTIME = (
    "pipeline.tracing",
    "pipeline.logs",
    "pipeline.ingress.app",
    "pipeline.agents.app",
    "pipeline.agents.correlate",
    "pipeline.agents.outbound",
    "pipeline.sinks.runner",
    "pipeline.kafka.publisher",
    "pipeline.cli",
)
_OFF_SCRIPT = f"""
import importlib, sys
for name in {_RUNTIME!r}:
    importlib.import_module(name)
from pipeline.tracing import active, extract, inject, instrument_httpx, log_ids, start_tracing
assert start_tracing("test") is False
assert active() is None and log_ids() is None
parent = b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"
assert inject(object()) is None and extract([("traceparent", parent)]) is None
instrument_httpx(object())
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry")
print("LOADED", loaded)
"""


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(extra)
    return env


def _run(script: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_off_imports_nothing_of_opentelemetry() -> None:
    out = _run(_OFF_SCRIPT, _clean_env())
    assert "LOADED []" in out, out


def test_an_exporter_set_to_none_keeps_tracing_off() -> None:
    env = _clean_env(OTEL_TRACES_EXPORTER="none", OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert "LOADED []" in _run(_OFF_SCRIPT, env)


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_SERVICE_NAME": "worker"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_the_otel_variables_decide(environ: dict[str, str], wanted: bool) -> None:
    assert tracing.wanted(environ) is wanted


def test_on_the_sdk_reads_its_own_variables() -> None:
    # No span is made, so nothing is sent to the (closed) port.
    script = """
import sys
from pipeline import tracing
assert tracing.start_tracing("ardary-test") is True
assert tracing.start_tracing("again") is True
on = tracing.active()
resource = on.provider.resource.attributes
print("SERVICE", resource["service.name"])
print("SAMPLER", type(on.provider.sampler).__name__)
tracing.stop_tracing()
assert tracing.active() is None
"""
    env = _clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9",
        OTEL_TRACES_SAMPLER="traceidratio",
        OTEL_TRACES_SAMPLER_ARG="0.5",
    )
    out = _run(script, env)
    assert "SERVICE ardary-test" in out and "SAMPLER TraceIdRatioBased" in out
    out = _run(script, {**env, "OTEL_SERVICE_NAME": "from-env"})
    assert "SERVICE from-env" in out


def test_grpc_without_its_exporter_turns_tracing_off_with_a_warning() -> None:
    script = """
from pipeline import tracing
print("ON", tracing.start_tracing("x"))
"""
    env = _clean_env(
        OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_EXPORTER_OTLP_PROTOCOL="grpc"
    )
    assert "ON False" in _run(script, env)


def test_the_context_survives_kafka_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    with traced(monkeypatch) as t:
        on = t.tracing
        span = on.span("produce", kind="producer")
        headers = tracing.inject(span)
        assert headers is not None
        assert all(isinstance(k, str) and isinstance(v, bytes) for k, v in headers)
        context = tracing.extract(headers)
        sent = span.get_span_context()
        assert context is not None and context.is_remote
        assert (context.trace_id, context.span_id) == (sent.trace_id, sent.span_id)
        assert trace_id_of(headers) == f"{sent.trace_id:032x}"
        # a child under the extracted context, linked to another trace
        other = on.span("other")
        child = on.span(
            "consume",
            parent=context,
            links=[other.get_span_context()],
            kind="consumer",
            attributes={"ardary.id_sms_api": "m1"},
        )
        for s in (child, other, span):
            s.end()
        consume = t.one("consume")
        assert consume.kind is SpanKind.CONSUMER
        assert consume.context.trace_id == sent.trace_id
        assert consume.parent is not None and consume.parent.span_id == sent.span_id
        assert [link.context.span_id for link in consume.links] == [
            other.get_span_context().span_id
        ]
        assert t.one("produce").parent is None  # no parent given: a new trace's root


def test_tracestate_travels_and_bad_headers_carry_no_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with traced(monkeypatch) as t:
        on = t.tracing
        context = on.context([("traceparent", parent.encode()), ("tracestate", b"vendor=x")])
        assert context is not None and context.trace_state.get("vendor") == "x"
        assert on.traceparent(context) == parent
        parsed = on.parse(parent)  # a `traceparent` text keeps no `tracestate`
        assert parsed is not None
        assert (parsed.trace_id, parsed.span_id) == (context.trace_id, context.span_id)
        span = on.span("child", parent=context)
        headers = dict(on.headers(span))
        assert headers["tracestate"] == b"vendor=x"
        span.end()
        assert on.context({"traceparent": parent}) is not None  # a mapping of headers too
        for bad in (None, [], [("other", b"x")], [("traceparent", b"garbage")]):
            assert on.context(bad) is None
        assert on.parse(None) is None and on.parse("00-zz") is None


def test_log_lines_written_inside_a_span_carry_its_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("tests.tracing")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("off")
        with traced(monkeypatch) as t:
            logger.info("on, outside a span")
            span = t.tracing.span("work")
            with t.tracing.use(span):
                logger.info("inside")
        off, outside, inside = (json.loads(line) for line in stream.getvalue().splitlines())
    finally:
        logger.removeHandler(handler)
    assert "trace_id" not in off and "trace_id" not in outside
    context = span.get_span_context()
    assert inside["trace_id"] == f"{context.trace_id:032x}"
    assert inside["span_id"] == f"{context.span_id:016x}"


def test_an_exception_inside_use_marks_the_span(monkeypatch: pytest.MonkeyPatch) -> None:
    with traced(monkeypatch) as t:
        with pytest.raises(RuntimeError), t.tracing.use(t.tracing.span("fails")):
            raise RuntimeError("boom")
        failed = t.one("fails")
        assert not failed.status.is_ok
        assert [e.name for e in failed.events] == ["exception"]


async def test_an_instrumented_client_makes_a_client_span_under_the_current_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import httpx

    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("traceparent"))
        return httpx.Response(200, json={})

    with traced(monkeypatch) as t:
        async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
            tracing.instrument_httpx(client)
            call = t.tracing.span("ardary.send")
            with t.tracing.use(call):
                await client.post("http://ardary.test/api/sendSms", json={"k": "secret"})
        (http,) = [s for s in t.spans() if s.kind is SpanKind.CLIENT]
        made = t.one("ardary.send")
    assert http.parent is not None and http.parent.span_id == made.context.span_id
    assert http.name == "POST"
    assert seen and seen[0] is not None and f"{made.context.trace_id:032x}" in seen[0]
    assert "secret" not in str(dict(http.attributes or {}))
