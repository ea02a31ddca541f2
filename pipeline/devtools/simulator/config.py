"""The simulator's configuration: accounts, behaviour probabilities and failure injection."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from types import MappingProxyType
from typing import Any, Literal

__all__ = [
    "RUNTIME_FIELDS",
    "Account",
    "Dialect",
    "DialectChoice",
    "SimulatorConfig",
    "parse_accounts",
]

Dialect = Literal["v1", "v2"]
# "mixed": each message's callbacks in one dialect or the other, drawn from its own seed
DialectChoice = Literal["v1", "v2", "mixed"]


@dataclass(frozen=True, slots=True)
class Account:
    """One Ardary account the simulator knows: its key and whether it is activated."""

    access_key: str
    active: bool = True

    def __repr__(self) -> str:  # the key is a secret even in the simulator's logs
        return f"Account(active={self.active})"


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything the simulator does; `accounts=None` accepts any login with a non-empty key."""

    callback_url: str | None = None
    dialect: DialectChoice = "v2"
    seed: int = 0
    accounts: Mapping[str, Account] | None = None
    forbidden_words: tuple[str, ...] = ("forbiddenword",)
    stop_list: frozenset[str] = frozenset()
    timezone: str = "Europe/Paris"
    # failure injection (changeable at runtime through POST /_sim/config)
    latency_ms: float = 0.0
    fail_rate: float = 0.0  # share of requests answered 503
    throttle_rate: float = 0.0  # share of requests answered 429 + Retry-After
    timeout_rate: float = 0.0  # share of requests held `hold_seconds` before being processed
    hold_seconds: float = 30.0
    unknown_error_rate: float = 0.0  # share of messages answered #009
    rate_limit: float | None = None  # messages/s over a sliding 1-s window, then 429
    retry_after_seconds: int = 1
    # callbacks (prod mode only, and only with a callback_url)
    click_probability: float = 0.3
    reply_probability: float = 0.1
    stop_probability: float = 0.02
    missed_call_probability: float = 0.02
    delivery_delay_ms: float = 200.0
    duplicate_probability: float = 0.0  # each callback also delivered a second time
    # share of messages whose delivery receipt (the final status callback) never comes, as in
    # a carrier outage: with a short DELIVERY_RECEIPT_TIMEOUT_SECONDS they show up as overdue
    drop_status_rate: float = 0.0
    shuffle: bool = False  # add a random extra delay so callbacks arrive out of order
    shuffle_max_ms: float = 500.0
    callback_concurrency: int = 16
    callback_attempts: int = 4
    callback_backoff_ms: float = 100.0

    def with_runtime(self, changes: Mapping[str, Any]) -> SimulatorConfig:
        """A copy with some runtime fields changed; unknown or typed-wrong fields raise."""
        unknown = set(changes) - RUNTIME_FIELDS
        if unknown:
            raise ValueError(f"not changeable at runtime: {', '.join(sorted(unknown))}")
        clean: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "shuffle":
                if not isinstance(value, bool):
                    raise ValueError("shuffle must be a boolean")
                clean[name] = value
            elif name == "rate_limit" and value is None:
                clean[name] = None
            elif name in ("retry_after_seconds", "callback_attempts"):
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{name} must be a non-negative integer")
                clean[name] = value
            else:
                if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{name} must be a non-negative number")
                if name.endswith(("_rate", "_probability")) and value > 1:
                    raise ValueError(f"{name} must be between 0 and 1")
                clean[name] = float(value)
        return replace(self, **clean)


RUNTIME_FIELDS: frozenset[str] = frozenset(
    f.name
    for f in fields(SimulatorConfig)
    if f.name
    not in {
        "callback_url",
        "dialect",
        "seed",
        "accounts",
        "forbidden_words",
        "stop_list",
        "timezone",
        "callback_concurrency",
    }
)


def parse_accounts(text: str) -> Mapping[str, Account]:
    """`{"login": "key"}` or `{"login": {"key": "…", "active": false}}` as accounts."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ValueError("accounts must be a JSON object") from exc
    if not isinstance(raw, dict):
        raise ValueError("accounts must be a JSON object")
    accounts: dict[str, Account] = {}
    for login, spec in raw.items():
        if isinstance(spec, str):
            accounts[login] = Account(spec)
        elif isinstance(spec, dict) and isinstance(spec.get("key"), str):
            accounts[login] = Account(spec["key"], bool(spec.get("active", True)))
        else:
            raise ValueError(f"account {login!r} needs a key string")
    return MappingProxyType(accounts)
