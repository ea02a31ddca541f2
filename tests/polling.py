"""The tests' one way to wait: poll a condition until it holds, fail after a deadline.

Never sleep and hope: a test that waits for something names it, so a timeout says what did
not happen. `wait_until` is for synchronous tests (and for `asyncio.to_thread`); tests running
inside an event loop use `wait_until_async`, which yields to the loop between polls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

from pipeline.kafka.errors import is_retriable

__all__ = ["wait_until", "wait_until_async"]

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], timeout: float = 30.0, what: str = "", *, interval: float = 0.1
) -> T:
    """Call `condition` until it returns something truthy, and return that.

    Raises AssertionError naming `what` (or the condition) after `timeout` seconds. The
    condition may raise to fail at once (a process it watches died, say); a retriable Kafka
    error (`is_retriable`: a group coordinator moved, a leader being elected) is "not yet".
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = condition()
        except Exception as exc:
            if not is_retriable(exc):
                raise
            last, result = exc, None  # type: ignore[assignment]
        if result:
            return result
        if time.monotonic() >= deadline:
            cause = f" (last: {last!r})" if last is not None else ""
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for {what or condition!r}{cause}"
            )
        time.sleep(interval)


async def wait_until_async(
    condition: Callable[[], T], timeout: float = 30.0, what: str = "", *, interval: float = 0.01
) -> T:
    """`wait_until` for a test inside an event loop: polls without blocking the loop."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            result = condition()
        except Exception as exc:
            if not is_retriable(exc):
                raise
            result = None  # type: ignore[assignment]
        if result:
            return result
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what or condition!r}")
        await asyncio.sleep(interval)
