"""JSON log lines (one object per event) for the pipeline's long-running processes.

Log calls pass facts as `extra={...}`; the formatter writes them next to the message. Callers
never put secrets, message bodies or phone numbers into a log record: the formatter cannot
know what is sensitive, so the rule is kept at the call site (and checked by tests). While
tracing is on (`pipeline.tracing`), a line written inside a span carries its `trace_id` and
`span_id`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from pipeline.tracing import log_ids

__all__ = ["JsonFormatter", "RepeatFilter", "configure_logging"]

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
) | {"message", "asctime", "taskName"}

# Third-party loggers that log payloads at DEBUG (aiokafka logs record values) or are noisy.
_HANDLER_NAME = "ardary-json"
_QUIET_LOGGERS = ("aiokafka", "kafka", "granian", "uvicorn", "uvicorn.access", "httpx")
# The Kafka clients log every failed reconnect and metadata retry: with the broker down that is
# hundreds of identical lines a second (measured: ~500/s from aiokafka at 1,000 callbacks/s).
_REPEATING_LOGGERS = ("aiokafka", "kafka")
REPEAT_WINDOW_S = 10.0


class RepeatFilter(logging.Filter):
    """Lets a Kafka client's (logger, level, message template) through once per window; the next one
    after the window carries `repeated`: how many were held back. Keeps an outage's logs
    readable, and cheap: formatting thousands of lines a second costs the event loop."""

    def __init__(
        self,
        loggers: tuple[str, ...] = _REPEATING_LOGGERS,
        window: float = REPEAT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.prefixes = tuple(loggers) + tuple(f"{name}." for name in loggers)
        self.window = window
        self.clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.repeated = last[1]
        if len(self._seen) > 1000:  # distinct templates are few; never grow without bound
            self._seen.clear()
        self._seen[key] = (now, 0)
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, event, then `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        ids = log_ids()  # None while tracing is off
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        if record.exc_info and record.exc_info[0] is not None:
            # The type only: exception messages may quote the input that caused them.
            entry["exc_type"] = record.exc_info[0].__name__
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: int | str = logging.INFO, stream: TextIO | None = None) -> None:
    """Send every log record of the process to `stream` (stderr) as one JSON line.

    Idempotent: calling it again replaces the handler instead of adding a second one.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(RepeatFilter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
