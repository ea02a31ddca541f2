"""The project's exception hierarchy: one root, one class per failure mode.

    PipelineError
    ├── ConfigError            bad setting or flag (exit code 2)
    ├── EnvironmentMissing     Java/Maven absent and no KAFKA_BOOTSTRAP_SERVERS (exit code 2)
    ├── BrokerError            Kafka unreachable or failed to start          (retriable)
    ├── DecodeError            bytes that are not one of our Avro records
    ├── CallbackError          a callback that cannot be understood (HTTP 400 + dead letter)
    ├── ArdaryError            the Ardary API refused or failed
    │   ├── ArdaryAuthError        #001 / #002: stop sending for that login
    │   ├── ArdaryTransientError   timeouts, 429, 5xx, #009                  (retriable)
    │   └── ArdaryProtocolError    an answer we cannot read
    ├── SinkError              the warehouse failed
    │   └── SinkBackpressure   a batch is full; pause the partition          (retriable)
    └── InputError             a bad publish line or request (exit code 2)

Retry logic switches on the `retriable` class attribute, never on the message text.
"""

from __future__ import annotations

__all__ = [
    "ArdaryAuthError",
    "ArdaryError",
    "ArdaryProtocolError",
    "ArdaryTransientError",
    "BrokerError",
    "CallbackError",
    "ConfigError",
    "DecodeError",
    "EnvironmentMissing",
    "InputError",
    "PipelineError",
    "SinkBackpressure",
    "SinkError",
]


class PipelineError(Exception):
    """Root of every error this project raises on purpose."""

    retriable: bool = False
    exit_code: int = 1


class ConfigError(PipelineError):
    """A setting or command-line flag has a value we cannot use; the message names it."""

    exit_code = 2


class EnvironmentMissing(PipelineError):
    """A tool the local stack needs (Java, Maven) is missing."""

    exit_code = 2


class BrokerError(PipelineError):
    """Kafka could not be reached, or the local broker failed to start."""

    retriable = True


class DecodeError(PipelineError):
    """Bytes that are not a record we can decode (corrupt, truncated, foreign)."""


class CallbackError(PipelineError):
    """An Ardary callback we cannot understand; `reason` is a short machine-readable tag."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ArdaryError(PipelineError):
    """The Ardary API refused a request or failed to answer it."""


class ArdaryAuthError(ArdaryError):
    """Account-level refusal (#001 auth, #002 not activated); `codes` as Ardary gave them."""

    def __init__(self, message: str, codes: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.codes = codes


class ArdaryTransientError(ArdaryError):
    """A failure worth retrying later (timeout, connection error, 429, 5xx, #009)."""

    retriable = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ArdaryProtocolError(ArdaryError):
    """An answer from Ardary we cannot read."""


class SinkError(PipelineError):
    """The warehouse rejected or failed a write."""


class SinkBackpressure(SinkError):
    """A sink batch is full: the consumer should pause that partition and retry."""

    retriable = True


class InputError(PipelineError):
    """Bad user input (a publish line, a flag value)."""

    exit_code = 2
