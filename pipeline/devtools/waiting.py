"""Wait for a condition with a deadline: the developer tools' one polling loop."""

from __future__ import annotations

import time
from collections.abc import Callable

from pipeline.errors import PipelineError
from pipeline.kafka.errors import is_retriable

__all__ = ["wait_until"]


def wait_until(
    condition: Callable[[], object], timeout: float, what: str, *, interval: float = 0.1
) -> None:
    """Call `condition` until it returns something truthy; raise after `timeout` seconds.

    The condition is always tried once more after the deadline passed, so a slow last poll
    still counts. The error names `what` was awaited: it is the line a benchmark or the demo
    ends with when a piece of the stack never comes up. A retriable Kafka error raised by the
    condition (`is_retriable`: a coordinator moved, a leader being elected) is "not yet".
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            if condition():
                return
        except Exception as exc:
            if not is_retriable(exc):
                raise
            last = exc
        if time.monotonic() > deadline:
            cause = f" (last: {last})" if last is not None else ""
            raise PipelineError(f"timed out after {timeout:g}s waiting for {what}{cause}")
        time.sleep(interval)
