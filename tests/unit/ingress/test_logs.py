"""The JSON log formatter, and that the ingress never logs secrets, bodies or phone numbers."""

from __future__ import annotations

import io
import json
import logging
from urllib.parse import quote

import httpx
import pytest

from pipeline.logs import JsonFormatter, configure_logging

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
