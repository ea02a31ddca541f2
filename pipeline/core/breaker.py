"""A circuit breaker per Ardary login: stop sending for a login Ardary refuses (#001/#002).

Pure and clock-injected. CLOSED lets everything through; an account error opens it; after
`cooldown` seconds it is HALF_OPEN and lets exactly one probe through; the probe's success
closes it, another account error re-opens it for a fresh cool-down.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["BreakerState", "LoginCircuitBreaker"]


class BreakerState(StrEnum):
    """Where one login's breaker stands."""

    CLOSED = "CLOSED"
    OPEN = "OPEN"
    HALF_OPEN = "HALF_OPEN"


@dataclass(slots=True)
class _Login:
    opened_at: float
    probing: bool = False


class LoginCircuitBreaker:
    """Per-login breaker; `clock` returns monotonic seconds (injected for tests)."""

    def __init__(self, cooldown: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if cooldown <= 0:
            raise ValueError("cooldown must be positive")
        self._cooldown = cooldown
        self._clock = clock
        self._open: dict[str, _Login] = {}

    def state(self, login: str) -> BreakerState:
        """The current state of `login` (CLOSED for a login never refused)."""
        entry = self._open.get(login)
        if entry is None:
            return BreakerState.CLOSED
        if self._clock() - entry.opened_at >= self._cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self, login: str) -> bool:
        """Whether a request for `login` may go now; in HALF_OPEN only one probe at a time."""
        entry = self._open.get(login)
        if entry is None:
            return True
        if self._clock() - entry.opened_at < self._cooldown or entry.probing:
            return False
        entry.probing = True
        return True

    def open_logins(self) -> frozenset[str]:
        """The logins whose breaker is not CLOSED (OPEN, or HALF_OPEN until its probe succeeds)."""
        return frozenset(self._open)

    def retry_in(self, login: str) -> float:
        """Seconds until `login` may be probed again (0 when it may go now)."""
        entry = self._open.get(login)
        if entry is None:
            return 0.0
        return max(0.0, self._cooldown - (self._clock() - entry.opened_at))

    def record_success(self, login: str) -> None:
        """Ardary accepted the login: close its breaker."""
        self._open.pop(login, None)

    def record_account_error(self, login: str) -> None:
        """Ardary refused the login: open (or re-open) its breaker for a full cool-down."""
        self._open[login] = _Login(opened_at=self._clock())

    def release_probe(self, login: str) -> None:
        """A probe ended without a verdict on the account (e.g. a timeout): allow another."""
        entry = self._open.get(login)
        if entry is not None:
            entry.probing = False
