"""The chaos run's load generator: send requests into Kafka and callbacks into the ingress, at
steady rates, never retried, every attempt and its answer written to its own log.

It plays two clients the pipeline does not control: an upstream app publishing send requests
(acks=all, idempotent; a request whose publish fails is logged as failed and never published
again, and the next one goes through a new producer: after batches failed during a cluster stop,
aiokafka 0.14's producer went on failing with OutOfOrderSequenceNumber) and Ardary's phone line
reporting incoming SMS, calls and qualifications (one GET per callback on a fresh connection,
as a webhook sender does; an error or a 5xx is logged, never retried). Its log — one JSON
object per line — is one of the independent ledgers the run reconciles the warehouse with.

It runs on its own thread and event loop, open-loop (a slow answer does not slow the schedule
down), until `stop()`: the chaos run stops it once the planned length has passed and every
fault has been carried out, so a fault that ran late (a broker start blocks) still happens
under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote

import httpx
import orjson

from pipeline.devtools.chaos.payloads import generated_callback
from pipeline.devtools.stack.traffic import demo_requests
from pipeline.kafka import idempotence
from pipeline.kafka.config import KafkaClientConfig
from pipeline.serde import Codec
from pipeline.topics import record_key, spec_for

__all__ = ["LoadGenerator", "LoadPlan"]

_URI_COMPONENT_SAFE = "-_.!~*'()"  # what JavaScript's encodeURIComponent leaves alone
_MAX_OPEN_CALLBACKS = 512


@dataclass(frozen=True, slots=True)
class LoadPlan:
    """Rates and length of the load; `seed` names the requests and draws the callbacks."""

    requests_per_second: float
    callbacks_per_second: float
    seconds: float  # the planned length; the load runs until stop()
    seed: int


class LoadGenerator:
    """Runs the load on a thread of its own; `stop()` ends it and waits for every answer."""

    def __init__(
        self,
        client: KafkaClientConfig,
        prefix: str,
        codec: Codec,
        callback_url: str,
        plan: LoadPlan,
        log_path: Path,
    ) -> None:
        self._client = client
        self._topic = spec_for("sms.send-requests").full_name(prefix)
        self._codec = codec
        self._callback_url = callback_url
        self.plan = plan
        self.log_path = log_path
        self.counts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._log: IO[bytes] | None = None
        self._renew = False  # a publish failed: the next one goes through a new producer
        self.producers = 0

    # -- control (any thread) ---------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="chaos-load", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 90.0) -> None:
        """Stop issuing, wait for what is in flight (answers, acks), close the log."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._error is not None:
            raise self._error

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- the load (its own thread) ----------------------------------------------------------

    def _main(self) -> None:
        try:
            with self.log_path.open("ab") as log:
                self._log = log
                asyncio.run(self._run())
        except BaseException as exc:  # reported by stop(), in the caller's thread
            self._error = exc
        finally:
            self._log = None

    def _write(self, entry: dict[str, Any]) -> None:
        assert self._log is not None
        self._log.write(orjson.dumps(entry) + b"\n")

    async def _producer(self) -> Any:
        from aiokafka import AIOKafkaProducer

        idempotence.install()
        producer = AIOKafkaProducer(
            **self._client.aiokafka(),
            client_id="chaos-upstream-app",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=30_000,
        )
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self.producers += 1
        return producer

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=_MAX_OPEN_CALLBACKS, max_keepalive_connections=0)
        timeout = httpx.Timeout(10.0, connect=3.0)
        producers: list[Any] = []
        try:
            async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
                pending: set[asyncio.Future[Any]] = set()
                await asyncio.gather(
                    self._requests(producers, pending), self._callbacks(http, pending)
                )
                if pending:
                    await asyncio.wait(pending, timeout=60)
        finally:
            for producer in producers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), 30)

    async def _paced(self, rate: float) -> AsyncIterator[int]:
        """Yield 0, 1, 2, … at `rate` per second until stop()."""
        if rate <= 0:
            return
        started = time.monotonic()
        n = 0
        while not self._stop.is_set():
            due = started + n / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            yield n
            n += 1

    async def _requests(self, producers: list[Any], pending: set[asyncio.Future[Any]]) -> None:
        """Publish at the plan's rate; after a failure, through a new producer (the old one
        finishes what it holds and is stopped at the end)."""
        requests = demo_requests(10**9, seed=self.plan.seed, clock=lambda: datetime.now(UTC))
        async for _ in self._paced(self.plan.requests_per_second):
            request = next(requests)
            at = time.time()
            try:
                if not producers or self._renew:
                    self._renew = False
                    producers.append(await self._producer())
                producer = producers[-1]
                future = await producer.send(
                    self._topic, self._codec.encode(request), key=record_key(request)
                )
            except Exception as exc:  # not even queued: logged, never retried
                self._renew = True
                self._request_done(request.id_sms_api, at, type(exc).__name__)
                continue
            pending.add(future)
            future.add_done_callback(
                lambda f, i=request.id_sms_api, t=at: self._request_acked(f, i, t, pending)
            )

    def _request_acked(
        self, future: asyncio.Future[Any], id_sms_api: str, at: float, pending: set[Any]
    ) -> None:
        pending.discard(future)
        error = None if future.cancelled() else future.exception()
        outcome = "ok" if error is None and not future.cancelled() else type(error).__name__
        if outcome != "ok":
            self._renew = True
        self._request_done(id_sms_api, at, outcome)

    def _request_done(self, id_sms_api: str, at: float, outcome: str) -> None:
        self.counts[f"request:{outcome}"] += 1
        self._write({"type": "request", "id": id_sms_api, "at": at, "outcome": outcome})

    async def _callbacks(self, http: httpx.AsyncClient, pending: set[asyncio.Future[Any]]) -> None:
        async for seq in self._paced(self.plan.callbacks_per_second):
            task = asyncio.ensure_future(self._callback(http, seq))
            pending.add(task)
            task.add_done_callback(pending.discard)

    async def _callback(self, http: httpx.AsyncClient, seq: int) -> None:
        cb = generated_callback(self.plan.seed, seq, datetime.now(UTC))
        url = f"{self._callback_url}?{cb.param}={quote(cb.raw, safe=_URI_COMPONENT_SAFE)}"
        at = time.time()
        status: int | None = None
        answer: dict[str, Any] = {}
        try:
            response = await http.get(url)
            status = response.status_code
            outcome = "ok" if status < 300 else f"http {status}"
            with contextlib.suppress(orjson.JSONDecodeError):
                answer = orjson.loads(response.content)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        self.counts[f"callback:{outcome}"] += 1
        self._write(
            {
                "type": "callback",
                "seq": seq,
                "param": cb.param,
                "raw": cb.raw,
                "at": at,
                "ms": round((time.time() - at) * 1000, 1),
                "status": status,
                "outcome": outcome,
                "spooled": bool(answer.get("spooled")) if isinstance(answer, dict) else False,
                "event_ids": [
                    a.get("event_id") for a in answer.get("accepted", ()) if isinstance(a, dict)
                ]
                if isinstance(answer, dict)
                else [],
            }
        )
