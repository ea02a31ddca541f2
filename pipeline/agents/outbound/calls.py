"""The Ardary call for one batch: each message's verdict, retried as far as that is safe.

- **Sending windows, again.** Just before the call each marketing message's send time is
  checked once more (`SendTimes`: it may have waited in the buffer past its window's closing);
  every answer Ardary gives carries the `date_to_send` it was given as `scheduled_for`.
- **Transient failures** (timeouts, 429, 5xx): bounded retries with jittered backoff inside the
  client (tenacity); a 429 or 5xx pauses this worker's `SendGate` (every login) for the
  Retry-After or backoff delay, so every batch slows down, not just this one. Once the budget
  is spent the messages are FAILED `RETRIES_EXHAUSTED`. Per-message `#009` answers get up to
  `message_rounds` rounds here (never a message missing from Ardary's answer).
- **An outcome Ardary may have acted on** (read timeout, cut connection) is never retried:
  FAILED `OUTCOME_UNKNOWN`.
- **Account errors** (#001/#002) open a per-login circuit breaker: that login's messages are
  answered FAILED with the same codes without calling Ardary until the cool-down's probe
  succeeds; an ALERT line is logged (never the key).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import httpx

from pipeline.agents.liveness import Telemetry
from pipeline.agents.outbound.options import OutboundOptions
from pipeline.agents.outbound.sendtime import SendTimes
from pipeline.ardary.api import MessageOutcome
from pipeline.ardary.codes import MISSING_IN_ANSWER, CodeCategory
from pipeline.clients.ardary_api import ArdaryClient, ArdaryOutcomeUnknown
from pipeline.core.breaker import LoginCircuitBreaker
from pipeline.core.ratelimit import SendGate
from pipeline.core.sending import (
    NO_ACCESS_KEY,
    OUTCOME_UNKNOWN,
    PROTOCOL_ERROR,
    RETRIES_EXHAUSTED,
    BatchKey,
    Prepared,
    Refusal,
    backoff_delay,
    make_result,
)
from pipeline.errors import (
    ArdaryAuthError,
    ArdaryError,
    ArdaryProtocolError,
    ArdaryTransientError,
)
from pipeline.records import SendResult
from pipeline.settings import Settings
from pipeline.tracing import instrument_httpx

__all__ = ["ArdaryCalls", "retriable"]

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(UTC)


def retriable(outcome: MessageOutcome) -> bool:
    """A per-message answer worth another round: #009-like codes, never a missing entry."""
    return (
        outcome.category is CodeCategory.TRANSIENT and MISSING_IN_ANSWER not in outcome.error_codes
    )


class ArdaryCalls:
    """Sends batches to Ardary through one HTTP client, with a circuit breaker per login."""

    def __init__(
        self,
        settings: Settings,
        options: OutboundOptions,
        gate: SendGate,
        telemetry: Telemetry,
        send_times: SendTimes,
    ) -> None:
        self.settings = settings
        self.options = options
        self.gate = gate
        self.telemetry = telemetry
        self.send_times = send_times
        self.breaker = LoginCircuitBreaker(cooldown=options.breaker_cooldown)
        self._account_codes: dict[str, tuple[str, ...]] = {}
        self._rng = random.Random()
        self._client: ArdaryClient | None = None

    @contextlib.asynccontextmanager
    async def session(
        self, transport: httpx.AsyncBaseTransport | None = None
    ) -> AsyncIterator[None]:
        """Hold the HTTP client (its connection pool) while the agent runs; `transport`: tests.
        While tracing is on each HTTP request is a client span (under the `ardary.send` span)."""
        async with httpx.AsyncClient(
            base_url=self.settings.ardary_base_url,
            limits=httpx.Limits(max_connections=self.options.max_concurrent * 2),
            transport=transport,
        ) as http:
            instrument_httpx(http)
            self._client = ArdaryClient(
                http,
                self.settings.access_key_for,
                mode=self.settings.ardary_mode,
                timeout=self.options.http_timeout,
                timezone=self.settings.ardary_timezone,
                observe=self.telemetry.observe_api,
            )
            try:
                yield
            finally:
                self._client = None

    async def call(self, key: BatchKey, batch: Sequence[Prepared]) -> list[SendResult]:
        """Ardary's verdict per message of `batch` (one login, routing, sender), in order."""
        results: dict[str, SendResult] = {}
        attempts: dict[str, int] = {p.request.id_sms_api: 0 for p in batch}
        login = key.login

        def fail(items: Sequence[Prepared], codes: tuple[str, ...]) -> None:
            for p in items:
                results[p.request.id_sms_api] = make_result(
                    p.request,
                    "FAILED",
                    completed_at=_now(),
                    error_codes=codes,
                    attempts=attempts[p.request.id_sms_api],
                )

        todo = self._planned(batch, results)
        if self.settings.access_key_for(login) is None:
            fail(todo, (NO_ACCESS_KEY,))
            todo = []
        for round_no in range(1, self.options.message_rounds + 1):
            if not todo:
                break
            if not self.breaker.allow(login):
                fail(todo, self._account_codes.get(login, ("#001",)))
                break
            self.telemetry.outbound_batches.inc()
            try:
                outcomes, used = await self._send(key, todo)
            except (ArdaryAuthError, ArdaryTransientError, ArdaryProtocolError) as exc:
                codes, spent = self._failure(login, exc)
                for p in todo:
                    attempts[p.request.id_sms_api] += spent
                fail(todo, codes)
                break
            retry: list[Prepared] = []
            for p, outcome in zip(todo, outcomes, strict=True):
                attempts[p.request.id_sms_api] += used
                if retriable(outcome) and round_no < self.options.message_rounds:
                    retry.append(p)
                    continue
                results[p.request.id_sms_api] = self._result(p, outcome, attempts)
            todo = retry
            if todo:
                await self._next_round(login, round_no, len(todo))
        return [results[p.request.id_sms_api] for p in batch]

    def breakers_open(self) -> dict[str, float]:
        """1 per login whose breaker is open (`ardary_outbound_breaker_open`, read at scrape)."""
        return dict.fromkeys(self.breaker.open_logins(), 1.0)

    def _planned(self, batch: Sequence[Prepared], results: dict[str, SendResult]) -> list[Prepared]:
        """The messages to send, their send time checked again; a refusal goes to `results`."""
        now = _now()
        todo: list[Prepared] = []
        for p in batch:
            planned = self.send_times.plan(p, now)
            if isinstance(planned, Refusal):
                results[p.request.id_sms_api] = make_result(
                    p.request,
                    planned.outcome,
                    completed_at=now,
                    error_codes=planned.error_codes,
                )
            else:
                todo.append(planned)
        return todo

    async def _send(
        self, key: BatchKey, todo: Sequence[Prepared]
    ) -> tuple[list[MessageOutcome], int]:
        """One send (with the client's retries): the outcomes and the attempts it took."""
        assert self._client is not None, "call() outside session()"
        sent = await self._client.send_with_retries(
            key.login,
            [p.request for p in todo],
            key.routing,
            max_attempts=self.options.max_attempts,
            base_delay=self.options.retry_base_delay,
            max_delay=self.options.retry_max_delay,
            sleep=self._retry_sleep,
        )
        self.breaker.record_success(key.login)
        return list(sent.outcomes), sent.attempts

    def _failure(self, login: str, exc: ArdaryError) -> tuple[tuple[str, ...], int]:
        """The codes a failed send gives its messages, and the attempts it counts for each."""
        if isinstance(exc, ArdaryAuthError):
            codes = exc.codes or ("#001",)
            self._account_error(login, codes)
            return codes, 1
        self.breaker.release_probe(login)
        if isinstance(exc, ArdaryOutcomeUnknown):  # before its base class: never retried
            return (OUTCOME_UNKNOWN,), 1
        if isinstance(exc, ArdaryTransientError):
            return (RETRIES_EXHAUSTED,), self.options.max_attempts
        return (PROTOCOL_ERROR,), 1

    async def _next_round(self, login: str, round_no: int, messages: int) -> None:
        """Back off, then take the tokens for the messages that go again."""
        delay = backoff_delay(
            round_no,
            base=self.options.retry_base_delay,
            cap=self.options.retry_max_delay,
            draw=self._rng.random(),
        )
        await asyncio.sleep(delay)
        await self._tokens(login, messages)

    def _result(self, p: Prepared, outcome: MessageOutcome, attempts: dict[str, int]) -> SendResult:
        segments = outcome.sms_per_message
        if outcome.outcome == "SUBMITTED" and segments is None:
            segments = p.segments.segments
        return make_result(
            p.request,
            outcome.outcome,
            completed_at=_now(),
            error_codes=outcome.error_codes,
            sms_per_message=segments,
            sent_time=outcome.sent_time,
            attempts=attempts[p.request.id_sms_api],
            scheduled_for=p.request.date_to_send,
        )

    def _account_error(self, login: str, codes: tuple[str, ...]) -> None:
        self.breaker.record_account_error(login)
        self._account_codes[login] = codes
        log.error(
            "ALERT Ardary refused the account; sending paused for this login",
            extra={
                "login": login,
                "codes": list(codes),
                "retry_in_s": self.breaker.retry_in(login),
            },
        )

    async def _retry_sleep(self, delay: float) -> None:
        self.gate.pause(delay)  # a 429/5xx slows every batch of this worker, not just this one
        await asyncio.sleep(delay)

    async def _tokens(self, login: str, n: int) -> None:
        """Wait until `login` may make a call, then spend `n` (a debt later calls wait off)."""
        wait = self.gate.delay(login)
        while wait > 0:
            await asyncio.sleep(min(wait, 1.0))
            wait = self.gate.delay(login)
        self.gate.take(login, n)
