"""The outbound agent's tuning knobs: defaults for production, shorter waits for tests."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.settings import Settings

__all__ = ["OutboundOptions"]


@dataclass(frozen=True, slots=True)
class OutboundOptions:
    """Tuning knobs (defaults suit production; tests shorten the waits)."""

    linger: float = 0.02
    max_concurrent: int = 16
    max_pending: int = 4000
    http_timeout: float = 10.0
    max_attempts: int = 4
    retry_base_delay: float = 0.2
    retry_max_delay: float = 10.0
    message_rounds: int = 3  # rounds for per-message #009 answers
    breaker_cooldown: float = 60.0
    revoke_wait: float = 20.0
    produce_timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: Settings) -> OutboundOptions:
        """The knobs an operator sets through the environment; the rest keep their defaults."""
        return cls(
            http_timeout=settings.outbound_http_timeout_seconds,
            max_attempts=settings.outbound_max_attempts,
            max_concurrent=settings.outbound_max_concurrent,
            breaker_cooldown=settings.outbound_breaker_cooldown_seconds,
        )
