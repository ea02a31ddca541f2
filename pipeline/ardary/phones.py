"""Phone numbers from Ardary (and from upstream apps) normalised to E.164."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

__all__ = ["PhoneResult", "normalize_phone"]

# Separators people and forms put inside numbers; anything else (letters above all: phonenumbers
# would read "+1XXXXXXXXXX" as a vanity number) makes the input unparseable.
_SEPARATORS = str.maketrans("", "", " .-()/\t\u00a0")
_E164 = phonenumbers.PhoneNumberFormat.E164


@dataclass(frozen=True, slots=True)
class PhoneResult:
    """A normalised number.

    `e164` is the E.164 form, or the input as given (stripped) when it could not be parsed;
    `parsed` says which; `valid` is phonenumbers' verdict on the number's range.
    """

    e164: str
    valid: bool
    parsed: bool = True


# Longer than any number with separators: not worth parsing, and not worth a cache slot.
_MAX_PHONE_LENGTH = 48


def normalize_phone(raw: str, default_region: str | None = None) -> PhoneResult:
    """Return the E.164 form of `raw`; never raises.

    Ardary documents its numbers as international. URL-decoding turns the `+` of an unencoded
    number into a space, so a number that *starts* with whitespace followed by a non-zero digit
    is read as `+digits`; a `00` prefix is the international prefix. A national number parses
    only with `default_region`; without it, it is kept as given and marked unparsed. Cached,
    because the ingress calls it on every request and the same numbers recur.
    """
    stripped = raw.strip()
    if len(stripped) > _MAX_PHONE_LENGTH:
        return PhoneResult(stripped, valid=False, parsed=False)
    return _normalize(stripped, raw[:1].isspace(), default_region)


@lru_cache(maxsize=65_536)
def _normalize(stripped: str, leading_space: bool, default_region: str | None) -> PhoneResult:
    digits = stripped.translate(_SEPARATORS)
    if digits.startswith("+"):
        body = digits[1:]
    elif digits.startswith("00"):
        body = digits[2:]
        digits = "+" + body
    elif leading_space and digits[:1] in "123456789" and digits:
        body = digits
        digits = "+" + body
    else:
        body = digits
    if not body or not body.isascii() or not body.isdigit():
        return PhoneResult(stripped, valid=False, parsed=False)
    if not digits.startswith("+") and default_region is None:
        return PhoneResult(stripped, valid=False, parsed=False)
    try:
        number = phonenumbers.parse(digits, default_region)
    except phonenumbers.NumberParseException:
        return PhoneResult(stripped, valid=False, parsed=False)
    return PhoneResult(
        phonenumbers.format_number(number, _E164),
        valid=phonenumbers.is_valid_number(number),
    )
