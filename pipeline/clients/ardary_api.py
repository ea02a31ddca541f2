"""The Ardary HTTP client: sends SMS and syncs contacts, mapping every failure to an ArdaryError.

The `httpx.AsyncClient` is injected (its base_url is ARDARY_BASE_URL, e.g.
"https://www.ardary-sms.com/api"), so tests use a MockTransport and the demo the simulator.
The access key only ever travels in the request body: it is never put in an exception, a log
line or a repr. Every HTTP call is timed and classified for `ardary_api_request_seconds`
through an injected `ApiObserver` (this layer does not import Prometheus).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeAlias, TypeVar
from zoneinfo import ZoneInfo

import httpx
import orjson
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
)

from pipeline.ardary.api import (
    ContactSyncOutcome,
    MessageOutcome,
    Mode,
    build_contact_payload,
    build_send_payload,
    endpoint_for,
    parse_contact_answer,
    parse_send_answer,
)
from pipeline.ardary.codes import CodeCategory
from pipeline.core.breaker import LoginCircuitBreaker
from pipeline.errors import (
    ArdaryAuthError,
    ArdaryError,
    ArdaryProtocolError,
    ArdaryTransientError,
)
from pipeline.records import ContactSyncRequest, Routing, SendRequest

__all__ = [
    "ApiObserver",
    "ApiOutcome",
    "ArdaryClient",
    "ArdaryOutcomeUnknown",
    "SendAttempt",
    "parse_retry_after",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
ApiOutcome: TypeAlias = Literal[
    "ok",
    "rejected",
    "throttled",
    "server_error",
    "timeout",
    "connect_error",
    "auth_error",
    "protocol_error",
]
"""How one HTTP call ended: `ok` (an answer accepting at least one message/contact),
`rejected` (an answer accepting none, for reasons other than the account), `throttled` (429),
`server_error` (5xx), `timeout` (connect, write, read or pool timeout), `connect_error` (refused,
reset or cut connection), `auth_error` (401/403, or #001/#002 for every message),
`protocol_error` (another HTTP status, or an answer that cannot be read)."""
ApiObserver = Callable[[str, ApiOutcome, float], None]
"""Told `(endpoint, outcome, seconds)` after every HTTP call (e.g. "sendSms", "ok", 0.21)."""


class ArdaryOutcomeUnknown(ArdaryTransientError):
    """The request may have reached Ardary but no answer came back (read timeout, cut
    connection): the SMS may or may not have been sent, so it is not retried blindly."""


@dataclass(frozen=True, slots=True)
class SendAttempt:
    """The outcomes of a send and how many HTTP attempts it took."""

    outcomes: tuple[MessageOutcome, ...]
    attempts: int


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header (delta-seconds or HTTP-date) as seconds ≥ 0; None if unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now if now is not None else datetime.now(UTC)
    return max(0.0, (when - current).total_seconds())


_UNKNOWN_OUTCOME_ERRORS = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)


def _decode(path: str, response: httpx.Response) -> Any:
    """The decoded JSON answer of a 2xx response; any other status raises an ArdaryError."""
    what = f"POST {path}"
    status = response.status_code
    if status == 429 or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        raise ArdaryTransientError(f"{what}: HTTP {status}", retry_after=retry_after)
    if status in (401, 403):
        raise ArdaryAuthError(f"{what}: HTTP {status} (access refused)")
    if status >= 300:
        raise ArdaryProtocolError(f"{what}: unexpected HTTP {status}")
    try:
        return orjson.loads(response.content)
    except orjson.JSONDecodeError as exc:
        kind = response.headers.get("Content-Type", "no content type")
        raise ArdaryProtocolError(
            f"{what}: answer is not JSON ({len(response.content)} bytes, {kind})"
        ) from exc


def _status_outcome(status: int) -> ApiOutcome | None:
    """The outcome an HTTP status gives a call; None for a 2xx (its answer decides)."""
    if status == 429:
        return "throttled"
    if status >= 500:
        return "server_error"
    if status in (401, 403):
        return "auth_error"
    return "protocol_error" if status >= 300 else None


def _no_answer_outcome(exc: ArdaryError) -> ApiOutcome:
    """The outcome of a call that got no HTTP answer (`_exchange` raised `exc`)."""
    if isinstance(exc.__cause__, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc.__cause__, httpx.TransportError):
        return "connect_error"
    return "protocol_error"


def _verdict(accepted: int, total: int) -> ApiOutcome:
    """`ok` when Ardary accepted at least one item of the call (or it had none), else `rejected`."""
    return "ok" if accepted or not total else "rejected"


class ArdaryClient:
    """Ardary's sendSms, sendSmsSolo and contact endpoints over an injected httpx client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        access_key_for: Callable[[str], str | None],
        *,
        mode: Mode = "test",
        timeout: float = 10.0,
        timezone: ZoneInfo | str = "Europe/Paris",
        breaker: LoginCircuitBreaker | None = None,
        observe: ApiObserver | None = None,
    ) -> None:
        self._http = http
        self._observe = observe
        self._access_key_for = access_key_for
        self._mode: Mode = mode
        self._timeout = timeout
        self._zone = timezone if isinstance(timezone, ZoneInfo) else ZoneInfo(timezone)
        self.breaker = breaker

    def __repr__(self) -> str:
        return f"ArdaryClient(base_url={str(self._http.base_url)!r}, mode={self._mode!r})"

    def _key(self, login: str) -> str:
        key = self._access_key_for(login)
        if not key:
            raise ArdaryAuthError(f"no Ardary access key configured for login {login!r}")
        return key

    async def _post(
        self,
        endpoint: str,
        payload: dict[str, Any],
        judge: Callable[[Any], tuple[T, ApiOutcome]],
    ) -> T:
        """POST JSON to `endpoint`, return what `judge` makes of the decoded answer (it may raise
        an ArdaryError too); every failure becomes an ArdaryError. The call's duration and
        outcome go to the observer (a cancelled call is not observed)."""
        path = f"/{endpoint}"
        started = time.monotonic()
        outcome: ApiOutcome | None = None  # None: no answer (yet), e.g. a cancelled call
        try:
            response = await self._exchange(path, payload)
            # a 2xx is a protocol error until `judge` has read it
            outcome = _status_outcome(response.status_code) or "protocol_error"
            answer, outcome = judge(_decode(path, response))
            return answer
        except ArdaryAuthError:
            outcome = "auth_error"
            raise
        except ArdaryError as exc:
            if outcome is None:
                outcome = _no_answer_outcome(exc)
            raise
        finally:
            if outcome is not None and self._observe is not None:
                self._observe(endpoint, outcome, time.monotonic() - started)

    async def _exchange(self, path: str, payload: dict[str, Any]) -> httpx.Response:
        """POST JSON, return the response; a request that got none raises an ArdaryError."""
        what = f"POST {path}"
        try:
            response = await self._http.post(
                path,
                content=orjson.dumps(payload),
                headers={"Content-Type": "application/json"},
                timeout=self._timeout,
            )
        except _UNKNOWN_OUTCOME_ERRORS as exc:
            raise ArdaryOutcomeUnknown(
                f"{what}: no answer from Ardary ({type(exc).__name__}); the request may have "
                "been processed"
            ) from exc
        except httpx.TimeoutException as exc:
            raise ArdaryTransientError(f"{what}: {type(exc).__name__}") from exc
        except httpx.TransportError as exc:
            raise ArdaryTransientError(
                f"{what}: cannot reach Ardary ({type(exc).__name__})"
            ) from exc
        return response

    def _check_breaker(self, login: str) -> None:
        if self.breaker is not None and not self.breaker.allow(login):
            wait = self.breaker.retry_in(login)
            raise ArdaryAuthError(
                f"login {login!r} is paused after an account error; next try in {wait:.0f} s"
            )

    async def send_sms(
        self, login: str, messages: Sequence[SendRequest], routing: Routing = "SERVER"
    ) -> list[MessageOutcome]:
        """Send one batch; one outcome per message, in order.

        Raises ArdaryAuthError when Ardary refuses the login for every message (#001/#002)
        or its breaker is open, ArdaryTransientError for timeouts/429/5xx, and
        ArdaryProtocolError for an answer it cannot read.
        """
        self._check_breaker(login)
        try:
            payload = build_send_payload(
                login,
                self._key(login),
                messages,
                mode=self._mode,
                routing=routing,
                timezone=self._zone,
            )
            ids = [m.id_sms_api for m in messages]

            def judge(body: Any) -> tuple[list[MessageOutcome], ApiOutcome]:
                outcomes = parse_send_answer(body, ids, timezone=self._zone)
                if outcomes and all(o.category is CodeCategory.ACCOUNT for o in outcomes):
                    codes = sorted({c for o in outcomes for c in o.error_codes})
                    raise ArdaryAuthError(
                        f"Ardary refused login {login!r}: {', '.join(codes)}", codes=tuple(codes)
                    )
                accepted = sum(o.outcome == "SUBMITTED" for o in outcomes)
                return outcomes, _verdict(accepted, len(outcomes))

            outcomes = await self._post(endpoint_for(routing), payload, judge)
        except ArdaryAuthError:
            if self.breaker is not None:
                self.breaker.record_account_error(login)
            raise
        except ArdaryError:
            if self.breaker is not None:
                self.breaker.release_probe(login)
            raise
        if self.breaker is not None:
            self.breaker.record_success(login)
        return outcomes

    async def sync_contacts(
        self, login: str, contacts: Sequence[ContactSyncRequest]
    ) -> list[ContactSyncOutcome]:
        """Create/update contacts in the Ardary box of `login`; one outcome per contact."""
        payload = build_contact_payload(login, self._key(login), contacts)
        phones = [c.phone_number for c in contacts]

        def judge(body: Any) -> tuple[list[ContactSyncOutcome], ApiOutcome]:
            outcomes = parse_contact_answer(body, phones)
            accepted = sum(o.outcome == "SUCCESS" for o in outcomes)
            return outcomes, _verdict(accepted, len(outcomes))

        return await self._post("contact", payload, judge)

    async def send_with_retries(
        self,
        login: str,
        messages: Sequence[SendRequest],
        routing: Routing = "SERVER",
        *,
        max_attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        retry_unknown_outcome: bool = False,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> SendAttempt:
        """`send_sms` retried on retriable errors with jittered exponential backoff.

        The wait before attempt n+1 is random in [0, base_delay·2ⁿ] (capped at max_delay) but
        never shorter than the server's Retry-After. ArdaryOutcomeUnknown is not retried unless
        `retry_unknown_outcome` (a blind retry may send the SMS twice). The last error is
        re-raised when attempts run out.
        """
        rng = random.Random()

        def should_retry(exc: BaseException) -> bool:
            if isinstance(exc, ArdaryOutcomeUnknown) and not retry_unknown_outcome:
                return False
            return bool(getattr(exc, "retriable", False))

        def wait(state: RetryCallState) -> float:
            ceiling = min(max_delay, base_delay * (2 ** (state.attempt_number - 1)))
            delay = rng.uniform(0, ceiling)
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            retry_after = getattr(exc, "retry_after", None)
            if isinstance(retry_after, int | float):
                delay = max(delay, min(float(retry_after), max_delay))
            return delay

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "Ardary send for %s failed (attempt %d/%d): %s; retrying",
                login,
                state.attempt_number,
                max_attempts,
                exc,
            )

        kwargs: dict[str, Any] = {}
        if sleep is not None:
            kwargs["sleep"] = sleep
        attempts = 0
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(max_attempts),
            wait=wait,
            retry=retry_if_exception(should_retry),
            before_sleep=before_sleep,
            reraise=True,
            **kwargs,
        ):
            with attempt:
                attempts = attempt.retry_state.attempt_number
                outcomes = await self.send_sms(login, messages, routing)
        return SendAttempt(tuple(outcomes), attempts)
