"""Wait for a condition with a deadline: the developer tools' one polling loop."""

from __future__ import annotations

import time
from collections.abc import Callable

from pipeline.errors import PipelineError

__all__ = ["wait_until"]


def wait_until(
    condition: Callable[[], object], timeout: float, what: str, *, interval: float = 0.1
) -> None:
    """Call `condition` until it returns something truthy; raise after `timeout` seconds.

    The condition is always tried once more after the deadline passed, so a slow last poll
    still counts. The error names `what` was awaited: it is the line a benchmark or the demo
    ends with when a piece of the stack never comes up.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise PipelineError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)
