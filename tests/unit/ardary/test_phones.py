"""Phone normalisation: the shapes Ardary and upstream apps send, to E.164."""

from __future__ import annotations

import pytest

from pipeline.ardary.phones import PhoneResult, normalize_phone

FR_MOBILE = "+33612345678"


@pytest.mark.parametrize(
    "raw",
    [
        "+33612345678",
        "+33 6 12 34 56 78",
        "+33.6.12.34.56.78",
        "+33-6-12-34-56-78",
        "0033612345678",
        "00 33 6 12 34 56 78",
        " 33612345678",  # `+` turned into a space by URL-decoding
        "  +33612345678\n",
    ],
)
def test_international_spellings_give_e164(raw: str) -> None:
    assert normalize_phone(raw) == PhoneResult(FR_MOBILE, valid=True, parsed=True)


def test_us_number() -> None:
    result = normalize_phone("+1 202 555 0123")
    assert result.e164 == "+12025550123"
    assert result.valid


def test_national_number_without_region_is_kept_as_given() -> None:
    result = normalize_phone(" 06 12 34 56 78 ")
    assert result == PhoneResult("06 12 34 56 78", valid=False, parsed=False)


def test_national_number_with_region() -> None:
    assert normalize_phone("06 12 34 56 78", "FR") == PhoneResult(FR_MOBILE, True, True)


def test_bare_digits_without_plus_are_not_guessed() -> None:
    # Without the `+` (and no leading space), 33612345678 could be national anywhere.
    result = normalize_phone("33612345678")
    assert not result.parsed
    assert result.e164 == "33612345678"


@pytest.mark.parametrize(
    "raw", ["+1XXXXXXXXXX", "", "   ", "+", "abc", "+33 6 12 34 5x 78", "+٣٣٦"]
)
def test_unparseable_is_kept_stripped(raw: str) -> None:
    result = normalize_phone(raw)
    assert result.e164 == raw.strip()
    assert not result.valid
    assert not result.parsed


def test_parseable_but_unassigned_range_is_not_valid() -> None:
    # +33 0… is not a French range: parsed into E.164 form but marked invalid.
    result = normalize_phone("+33 0 12 34 56 78")
    assert result.parsed
    assert not result.valid
    assert result.e164.startswith("+33")


def test_repeated_calls_are_served_from_cache() -> None:
    assert normalize_phone("+33698765432") is normalize_phone("+33698765432")


def test_overlong_input_is_unparsed_without_parsing() -> None:
    raw = "+33612345678" + " " * 100 + "0"
    result = normalize_phone(raw)
    assert result == PhoneResult(raw.strip(), valid=False, parsed=False)
