"""The facts a message's lifecycle keeps of its request and of its send result, and their times.

`pipeline.core.lifecycle` merges them (and re-exports both classes). Each fact has a total
order, so the merge picks the same one whatever order events come in, and a JSON form with times
as integer microseconds since the epoch (UTC) for the correlate table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pipeline.records import SendOutcome

__all__ = ["RequestFact", "ResultFact", "from_us", "opt_dt", "opt_us", "to_us"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def to_us(ts: datetime) -> int:
    """Microseconds since the epoch."""
    return (ts - _EPOCH) // _US


def from_us(us: int) -> datetime:
    """The UTC time `us` microseconds after the epoch."""
    return _EPOCH + timedelta(microseconds=us)


def opt_us(ts: datetime | None) -> int | None:
    """`to_us`, None staying None."""
    return None if ts is None else to_us(ts)


def opt_dt(us: int | None) -> datetime | None:
    """`from_us`, None staying None."""
    return None if us is None else from_us(int(us))


@dataclass(frozen=True, slots=True)
class RequestFact:
    """What the lifecycle keeps of a `SendRequest`."""

    login: str
    phone_number: str
    requested_at: datetime
    metadata: tuple[tuple[str, str], ...] = ()

    def order_key(self) -> tuple[int, str, str, tuple[tuple[str, str], ...]]:
        """Total order; the smallest request wins (the first time it was asked for)."""
        return (to_us(self.requested_at), self.login, self.phone_number, self.metadata)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (part of `LifecycleState.to_dict`)."""
        return {
            "login": self.login,
            "phone_number": self.phone_number,
            "requested_at": to_us(self.requested_at),
            "metadata": [list(kv) for kv in self.metadata],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RequestFact:
        """Inverse of `to_dict`."""
        return cls(
            login=d["login"],
            phone_number=d["phone_number"],
            requested_at=from_us(int(d["requested_at"])),
            metadata=tuple((str(k), str(v)) for k, v in d.get("metadata", ())),
        )


_OUTCOME_RANK: dict[str, int] = {"FAILED": 0, "SUPPRESSED": 1, "REJECTED": 2, "SUBMITTED": 3}


@dataclass(frozen=True, slots=True)
class ResultFact:
    """What the lifecycle keeps of a `SendResult`."""

    outcome: SendOutcome
    completed_at: datetime
    login: str
    phone_number: str
    sent_time: datetime | None = None
    error_codes: tuple[str, ...] = ()
    sms_per_message: int | None = None
    scheduled_for: datetime | None = None

    def order_key(self) -> tuple[Any, ...]:
        """Total order; the largest result wins (SUBMITTED first, then the latest)."""
        return (
            self.outcome == "SUBMITTED",
            to_us(self.completed_at),
            _OUTCOME_RANK.get(self.outcome, -1),
            -1 if self.sent_time is None else to_us(self.sent_time),
            self.error_codes,
            -1 if self.sms_per_message is None else self.sms_per_message,
            self.login,
            self.phone_number,
            -1 if self.scheduled_for is None else to_us(self.scheduled_for),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (part of `LifecycleState.to_dict`)."""
        return {
            "outcome": self.outcome,
            "completed_at": to_us(self.completed_at),
            "login": self.login,
            "phone_number": self.phone_number,
            "sent_time": opt_us(self.sent_time),
            "error_codes": list(self.error_codes),
            "sms_per_message": self.sms_per_message,
            "scheduled_for": opt_us(self.scheduled_for),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ResultFact:
        """Inverse of `to_dict`."""
        return cls(
            outcome=d["outcome"],
            completed_at=from_us(int(d["completed_at"])),
            login=d["login"],
            phone_number=d["phone_number"],
            sent_time=opt_dt(d.get("sent_time")),
            error_codes=tuple(d.get("error_codes", ())),
            sms_per_message=d.get("sms_per_message"),
            scheduled_for=opt_dt(d.get("scheduled_for")),
        )
