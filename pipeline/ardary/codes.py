"""Ardary's documented error codes: per-message codes of sendSms and the contact API's own codes.

The two tables reuse the same strings (`#001` is "authentication failed" for sendSms and
"invalid phone number" for /contact), so they are kept apart and looked up by API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "AUTH_FAILED",
    "CONTACT_CODES",
    "CONTACT_EMPTY_PHONE",
    "CONTACT_INVALID_EMAIL",
    "CONTACT_INVALID_PHONE",
    "CONTACT_NO_PHONE",
    "EMPTY_MESSAGE",
    "FORBIDDEN_WORDS",
    "INVALID_NUMBER",
    "MISSING_IN_ANSWER",
    "NOT_ACTIVATED",
    "SEND_CODES",
    "STOP_REQUESTED",
    "UNKNOWN_ERROR",
    "CodeCategory",
    "ErrorCode",
    "contact_code",
    "send_code",
]


class CodeCategory(StrEnum):
    """What the sender should do about a code."""

    ACCOUNT = "ACCOUNT"  # the whole login is refused: stop sending for it (circuit breaker)
    COMPLIANCE = "COMPLIANCE"  # the recipient or the text is not allowed: never resend as is
    PERMANENT = "PERMANENT"  # the message itself is unusable: never resend as is
    TRANSIENT = "TRANSIENT"  # may work later


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """One documented code with its meaning and category."""

    code: str
    meaning: str
    category: CodeCategory


AUTH_FAILED = "#001"
NOT_ACTIVATED = "#002"
STOP_REQUESTED = "#003"
FORBIDDEN_WORDS = "#004"
EMPTY_MESSAGE = "#006"
INVALID_NUMBER = "#007"
UNKNOWN_ERROR = "#009"

# Not an Ardary code: our own marker for a requested message the answer did not mention.
MISSING_IN_ANSWER = "MISSING_IN_ANSWER"

SEND_CODES: Mapping[str, ErrorCode] = MappingProxyType(
    {
        c.code: c
        for c in (
            ErrorCode(AUTH_FAILED, "Authentication failed", CodeCategory.ACCOUNT),
            ErrorCode(NOT_ACTIVATED, "Account not activated yet", CodeCategory.ACCOUNT),
            ErrorCode(STOP_REQUESTED, "This phone number asked for stop", CodeCategory.COMPLIANCE),
            ErrorCode(
                FORBIDDEN_WORDS, "SMS text contains forbidden words", CodeCategory.COMPLIANCE
            ),
            ErrorCode(EMPTY_MESSAGE, "SMS has an empty content", CodeCategory.PERMANENT),
            ErrorCode(INVALID_NUMBER, "The phone number is invalid", CodeCategory.PERMANENT),
            ErrorCode(UNKNOWN_ERROR, "Unknown error", CodeCategory.TRANSIENT),
        )
    }
)

CONTACT_INVALID_PHONE = "#001"
CONTACT_EMPTY_PHONE = "#002"
CONTACT_NO_PHONE = "#003"
CONTACT_INVALID_EMAIL = "#004"

CONTACT_CODES: Mapping[str, ErrorCode] = MappingProxyType(
    {
        c.code: c
        for c in (
            ErrorCode(CONTACT_INVALID_PHONE, "Invalid phone number", CodeCategory.PERMANENT),
            ErrorCode(CONTACT_EMPTY_PHONE, "Empty phone number", CodeCategory.PERMANENT),
            ErrorCode(CONTACT_NO_PHONE, "No phone number", CodeCategory.PERMANENT),
            ErrorCode(CONTACT_INVALID_EMAIL, "Invalid e-mail", CodeCategory.PERMANENT),
        )
    }
)


def send_code(code: str) -> ErrorCode:
    """The sendSms code `code`; an undocumented one is treated like #009 (unknown, transient)."""
    known = SEND_CODES.get(code)
    if known is not None:
        return known
    return ErrorCode(code, "Undocumented error code", CodeCategory.TRANSIENT)


def contact_code(code: str) -> ErrorCode:
    """The /contact code `code`; an undocumented one is treated as permanent."""
    known = CONTACT_CODES.get(code)
    if known is not None:
        return known
    return ErrorCode(code, "Undocumented error code", CodeCategory.PERMANENT)
