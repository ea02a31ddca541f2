"""What the warehouse stores of personal data: raw, or phone numbers hashed and bodies dropped.

`WAREHOUSE_PII=hash` replaces every phone number column (`phone_number`, `from_number`) with
`hmac-sha256(WAREHOUSE_PII_KEY, e164)` as 32 hex characters: the same number always gives the
same value, so joins, counts of distinct recipients and opt-out lookups still work, but the
number cannot be read back without the key (and a dictionary attack needs the key too).
Message bodies (`body`, `message`) and the raw callback payloads (`raw`, and a dead letter's
`raw`/`body`, which hold the phone number and the text) are stored as NULL.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["BODY_COLUMNS", "PHONE_COLUMNS", "PiiPolicy", "hash_phone"]

PHONE_COLUMNS = frozenset({"phone_number", "from_number"})
BODY_COLUMNS = frozenset({"body", "message", "raw"})
HASH_HEX_CHARS = 32


def hash_phone(key: bytes, phone: str) -> str:
    """The keyed hash of a phone number, as stored in hash mode."""
    return hmac.new(key, phone.encode("utf-8"), hashlib.sha256).hexdigest()[:HASH_HEX_CHARS]


@dataclass(frozen=True, slots=True)
class PiiPolicy:
    """How personal data is written; `key` is secret and never shown in repr."""

    mode: Literal["raw", "hash"] = "raw"
    key: bytes = field(default=b"", repr=False)

    def __post_init__(self) -> None:
        if self.mode == "hash" and not self.key:
            raise ValueError("hash mode needs a key")

    def apply(self, columns: MutableMapping[str, list[Any]]) -> None:
        """Transform a batch's columns in place (no-op in raw mode)."""
        if self.mode == "raw":
            return
        for name, values in columns.items():
            if name in PHONE_COLUMNS:
                key = self.key
                columns[name] = [None if v is None else hash_phone(key, v) for v in values]
            elif name in BODY_COLUMNS:
                columns[name] = [None] * len(values)
