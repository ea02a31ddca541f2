"""Fires planned callbacks at the callback URL as Ardary does: GET ?param=<encoded JSON>.

Background tasks, bounded concurrency, a few retries with exponential backoff on failure
(`callback_attempts=1`: none, as Ardary documents no retry). Every attempt and its answer is
told to `on_fired` (the ledger). The GET itself is `get` (by default `sender.CallbackSender`,
aiohttp; tests pass their own). The callback URL may carry the ingress token, so it is never
logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import orjson

from pipeline.devtools.simulator.config import SimulatorConfig
from pipeline.devtools.simulator.ledger import FiredCallback
from pipeline.devtools.simulator.plan import AcceptedMessage, PlannedCallback, plan_callbacks
from pipeline.devtools.simulator.sender import CallbackSender, NotDelivered

__all__ = ["CallbackDispatcher", "callback_raw", "callback_url_for"]

log = logging.getLogger(__name__)

_URI_COMPONENT_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves alone


def callback_raw(cb: PlannedCallback) -> str:
    """The JSON text a callback carries (what the receiver decodes from the query)."""
    return orjson.dumps(dict(cb.payload)).decode()


def callback_url_for(base: str, cb: PlannedCallback, raw: str | None = None) -> str:
    """`base` with `?{param}={encodeURIComponent(json)}` appended (or `&…` if it has a query)."""
    encoded = quote(callback_raw(cb) if raw is None else raw, safe=_URI_COMPONENT_SAFE)
    return f"{base}{'&' if '?' in base else '?'}{cb.param}={encoded}"


class CallbackDispatcher:
    """Schedules each accepted message's plan; `on_stop` is told about STOP replies."""

    def __init__(
        self,
        config: Callable[[], SimulatorConfig],
        on_stop: Callable[[str], None],
        get: Callable[[str], Awaitable[int]] | None = None,
        on_fired: Callable[[FiredCallback], None] = lambda attempt: None,
    ) -> None:
        self._config = config
        self._on_stop = on_stop
        self._on_fired = on_fired
        self._get = get
        self._sender: CallbackSender | None = None  # made here when no `get` was given
        self._tasks: set[asyncio.Task[None]] = set()
        self._sem: asyncio.Semaphore | None = None
        self.stats: Counter[str] = Counter()

    def _getter(self) -> Callable[[str], Awaitable[int]]:
        if self._get is None:
            self._sender = CallbackSender(self._config().callback_concurrency)
            self._get = self._sender.get
        return self._get

    def schedule(self, message: AcceptedMessage) -> None:
        """Plan `message`'s callbacks and start firing them in the background."""
        config = self._config()
        if config.callback_url is None:
            return
        if self._sem is None:
            self._sem = asyncio.Semaphore(config.callback_concurrency)
        for cb in plan_callbacks(config, message):
            self.stats["planned"] += 1
            task = asyncio.create_task(self._fire(config.callback_url, cb, message.id_sms_api))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        """Callbacks planned and not yet delivered or given up."""
        return len(self._tasks)

    async def _fire(self, base: str, cb: PlannedCallback, id_sms_api: str) -> None:
        await asyncio.sleep(cb.delay)
        if cb.joins_stop_list:
            self._on_stop(cb.phone_number)
        raw = callback_raw(cb)
        url = callback_url_for(base, cb, raw)
        assert self._sem is not None
        config = self._config()
        attempts = max(1, config.callback_attempts)
        for attempt in range(1, attempts + 1):
            problem: str
            status: int | None = None
            async with self._sem:
                fired_at = time.time()
                try:
                    status = await self._getter()(url)
                    problem = "ok" if status < 300 else f"http {status}"
                except NotDelivered as exc:
                    problem = exc.outcome
            self._on_fired(
                FiredCallback(
                    cb.kind, cb.param, raw, id_sms_api, attempt, fired_at, problem, status
                )
            )
            if problem == "ok":
                self.stats["delivered"] += 1
                self.stats[f"delivered:{cb.param}"] += 1
                return
            self.stats["attempt_failed"] += 1
            if attempt < attempts:
                await asyncio.sleep(config.callback_backoff_ms / 1000.0 * 2 ** (attempt - 1))
        self.stats["gave_up"] += 1
        log.warning("simulator gave up on a %s callback (%s): %s", cb.kind, cb.param, problem)

    async def cancel_pending(self) -> None:
        """Drop every callback not yet delivered (reset, shutdown)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel pending callbacks and close the HTTP sender if this dispatcher made it."""
        await self.cancel_pending()
        if self._sender is not None:
            await self._sender.aclose()
            self._sender = None
            self._get = None
