"""How the simulator reads a send request (both dialects) and which codes a message earns.

Accepted spellings: `accessKey`/`accesskey`, `phone_number`/`phonenumber`,
`priority`/`priorite`, and `header` as an object or a one-element list.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import phonenumbers

from pipeline.ardary.codes import (
    AUTH_FAILED,
    EMPTY_MESSAGE,
    FORBIDDEN_WORDS,
    INVALID_NUMBER,
    NOT_ACTIVATED,
    STOP_REQUESTED,
)
from pipeline.devtools.simulator.config import Account

__all__ = [
    "BadRequest",
    "Header",
    "account_codes",
    "first",
    "forbidden_pattern",
    "message_codes",
    "normalize_number",
    "read_header",
]


class BadRequest(ValueError):
    """A request body the simulator answers with HTTP 400."""


@dataclass(frozen=True, slots=True)
class Header:
    """The parts of a request header the simulator uses."""

    login: str
    access_key: str
    mode: str
    priority: Any
    date_to_send: Any


def first(item: Mapping[str, Any], *names: str) -> Any:
    """The value of the first of `names` present in `item` (None if none is)."""
    for name in names:
        if name in item:
            return item[name]
    return None


def read_header(body: Any) -> Header:
    """The header of a request, object or one-element list; raises BadRequest otherwise."""
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    header = body.get("header")
    if isinstance(header, list) and len(header) == 1:
        header = header[0]
    if not isinstance(header, dict):
        raise BadRequest("header must be an object (or a one-element list)")
    login = header.get("login")
    key = first(header, "accessKey", "accesskey")
    mode = header.get("mode", "prod")
    return Header(
        login=login if isinstance(login, str) else "",
        access_key=key if isinstance(key, str) else "",
        mode=mode if mode in ("test", "prod") else "prod",
        priority=first(header, "priority", "priorite"),
        date_to_send=header.get("date_to_send"),
    )


def account_codes(header: Header, accounts: Mapping[str, Account] | None) -> tuple[str, ...]:
    """#001 for an unknown login or wrong key, #002 for an inactive account, else nothing."""
    if not header.login or not header.access_key:
        return (AUTH_FAILED,)
    if accounts is None:
        return ()
    account = accounts.get(header.login)
    if account is None or account.access_key != header.access_key:
        return (AUTH_FAILED,)
    if not account.active:
        return (NOT_ACTIVATED,)
    return ()


@lru_cache(maxsize=65536)
def normalize_number(phone: str) -> str | None:
    """`phone` in E.164 if it is a valid international number, else None (cached)."""
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def forbidden_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    """One case-insensitive whole-word pattern for the forbidden words (None if there are none)."""
    if not words:
        return None
    return re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\b", re.IGNORECASE)


def message_codes(
    phone: Any, text: Any, stop_list: set[str] | frozenset[str], forbidden: re.Pattern[str] | None
) -> list[str]:
    """The per-message codes (#003, #004, #006, #007) a message earns; empty means accepted.

    `stop_list` holds E.164 numbers; `phone` is compared after normalisation.
    """
    codes: list[str] = []
    normalized = normalize_number(phone) if isinstance(phone, str) else None
    if normalized is None:
        codes.append(INVALID_NUMBER)
    elif normalized in stop_list:
        codes.append(STOP_REQUESTED)
    if not isinstance(text, str) or not text.strip():
        codes.append(EMPTY_MESSAGE)
    elif forbidden is not None and forbidden.search(text):
        codes.append(FORBIDDEN_WORDS)
    return codes
