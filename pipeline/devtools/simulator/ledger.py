"""The simulator's ledger: every message it accepted, by id_sms_api, duplicates made visible,
and every callback it fired with the answer it got (what a test reconciles the warehouse with)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["FiredCallback", "Ledger", "LedgerEntry"]


@dataclass(slots=True)
class LedgerEntry:
    """One accepted id_sms_api; `submissions` > 1 means it was sent more than once.

    `date_to_send`, `marketing` and `add_stop` are kept as received (None: not sent);
    `add_stop` is `addStop`'s value, else `add_stop`'s, and `add_stop_keys` says which of the
    two spellings came. `receipt_dropped`: its delivery receipt will never be sent.
    """

    id_sms_api: str
    login: str
    phone_number: str
    routing: str
    mode: str
    segments: int
    message: str
    url: str | None
    priority: Any
    date_to_send: Any
    first_accepted_at: float
    last_accepted_at: float
    submissions: int = 1
    marketing: Any = None
    add_stop: Any = None
    add_stop_keys: tuple[str, ...] = ()
    receipt_dropped: bool = False

    def as_json(self) -> dict[str, Any]:
        """The entry as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FiredCallback:
    """One attempt to deliver a callback: what was sent and what came back.

    `raw` is the JSON text sent as the value of `?{param}=` (before URL encoding), so it can be
    matched byte for byte with what a receiver stored; `outcome` is `ok` (a 2xx), `http <code>`
    or the name of the transport error (no answer).
    """

    kind: str
    param: str
    raw: str
    id_sms_api: str
    attempt: int
    fired_at: float
    outcome: str
    status: int | None

    def as_json(self) -> dict[str, Any]:
        """The attempt as a JSON-ready dict."""
        return asdict(self)


class Ledger:
    """Accepted messages and per-second acceptance counts (test-mode messages included)."""

    def __init__(self) -> None:
        self.entries: dict[str, LedgerEntry] = {}
        self.per_second: Counter[int] = Counter()
        self.accepted = 0
        self.accepted_by_mode: Counter[str] = Counter()
        self.rejected_by_code: Counter[str] = Counter()
        self.callbacks: list[FiredCallback] = []

    def accept(self, entry: LedgerEntry) -> int:
        """Record an accepted message; returns how many times its id was submitted so far."""
        self.accepted += 1
        self.accepted_by_mode[entry.mode] += 1
        self.per_second[int(entry.last_accepted_at)] += 1
        known = self.entries.get(entry.id_sms_api)
        if known is None:
            self.entries[entry.id_sms_api] = entry
            return 1
        known.submissions += 1
        known.last_accepted_at = entry.last_accepted_at
        return known.submissions

    def fired(self, attempt: FiredCallback) -> None:
        """Record one callback delivery attempt and its answer."""
        self.callbacks.append(attempt)

    def reject(self, codes: list[str]) -> None:
        """Count a refused message by its codes."""
        self.rejected_by_code.update(codes)

    def stats(self) -> dict[str, Any]:
        """Totals for /_sim/stats: duplicates are ids submitted more than once."""
        duplicated = [e for e in self.entries.values() if e.submissions > 1]
        return {
            "accepted": self.accepted,
            "accepted_by_mode": dict(self.accepted_by_mode),
            "unique_ids": len(self.entries),
            "duplicate_ids": len(duplicated),
            "duplicate_submissions": sum(e.submissions - 1 for e in duplicated),
            "receipts_dropped": sum(e.receipt_dropped for e in self.entries.values()),
            "rejected_by_code": dict(self.rejected_by_code),
            "accepted_per_second": {str(k): v for k, v in sorted(self.per_second.items())},
            "max_accepted_per_second": max(self.per_second.values(), default=0),
        }
