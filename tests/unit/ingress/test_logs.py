"""The JSON log formatter, and that the ingress never logs secrets, bodies or phone numbers."""

from __future__ import annotations

import io
import json
import logging
from urllib.parse import quote

import httpx
import pytest

from pipeline.logs import JsonFormatter, RepeatFilter, configure_logging

from .conftest import TOKEN, FakePublisher
from .samples import incoming_json, status_json


def test_formatter_writes_one_json_object_with_extras() -> None:
    record = logging.LogRecord("x.y", logging.WARNING, __file__, 1, "hello %s", ("w",), None)
    record.reason = "invalid_json"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["event"] == "hello w"
    assert entry["level"] == "warning"
    assert entry["logger"] == "x.y"
    assert entry["reason"] == "invalid_json"


def test_formatter_keeps_exception_type_not_message() -> None:
    try:
        raise ValueError("secret-input-123")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "boom", None, sys.exc_info())
    entry = json.loads(JsonFormatter().format(record))
    assert entry["exc_type"] == "ValueError"
    assert "secret-input-123" not in json.dumps(entry)


def test_configure_logging_is_idempotent() -> None:
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    stream = io.StringIO()
    try:
        configure_logging(logging.INFO, stream)
        configure_logging(logging.INFO, stream)
        added = [h for h in root.handlers if h not in before]
        assert len(added) == 1
        logging.getLogger("pipeline.test").info("one", extra={"k": 1})
        assert json.loads(stream.getvalue().strip())["k"] == 1
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
        root.setLevel(level)


async def test_ingress_logs_hold_no_token_body_or_phone(
    client: httpx.AsyncClient, publisher: FakePublisher, caplog: pytest.LogCaptureFixture
) -> None:
    secret_body = "TopSecretSmsBody"
    caplog.set_level(logging.DEBUG)
    await client.get(f"/callbacks/{TOKEN}?message={quote(incoming_json(secret_body), safe='')}")
    await client.get(f"/callbacks/{TOKEN}?status={quote(status_json(), safe='')}")
    await client.get(f"/callbacks/{TOKEN}?message=%7B%22body%22%3A%22{secret_body}")  # 400
    await client.get(f"/callbacks/{TOKEN}zz?status=x")  # 404
    publisher.fail = True
    await client.get(f"/callbacks/{TOKEN}?status={quote(status_json(), safe='')}")  # 503
    assert caplog.records, "the ingress logged nothing at all"
    formatter = JsonFormatter()
    text = "\n".join(formatter.format(r) for r in caplog.records)
    assert any(getattr(r, "reason", None) == "invalid_json" for r in caplog.records)
    for forbidden in (TOKEN, secret_body, "+33612345678", "33698765432", "612345678"):
        assert forbidden not in text


def test_a_kafka_client_line_repeated_in_a_storm_is_kept_once_per_window() -> None:
    now = [0.0]
    kept = RepeatFilter(window=10.0, clock=lambda: now[0])

    def line(name: str, msg: str = "Unable connect to node with id %s") -> logging.LogRecord:
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (1,), None)

    assert kept.filter(line("aiokafka.conn"))
    assert [kept.filter(line("aiokafka.conn")) for _ in range(500)] == [False] * 500
    assert kept.filter(line("aiokafka.conn", "another message"))  # another template passes
    assert kept.filter(line("pipeline.ingress"))  # the pipeline's own lines are never held
    assert kept.filter(line("pipeline.ingress"))
    now[0] = 10.5
    after = line("aiokafka.conn")
    assert kept.filter(after)
    assert after.repeated == 500  # the count of what was held back travels with the next line


def test_configured_logging_holds_back_a_storm_of_client_lines() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    for _ in range(100):
        logging.getLogger("aiokafka.client").error("Unable to update metadata from %s", [1])
    assert stream.getvalue().count("Unable to update metadata") == 1
