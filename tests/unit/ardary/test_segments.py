"""SMS segment counting: GSM-7 160/153, UCS-2 70/67, no split escapes or surrogate pairs."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.ardary.segments import GSM7_BASIC, GSM7_EXTENSION, SegmentInfo, count_segments

BASIC = "".join(sorted(GSM7_BASIC))
basic_text = st.text(alphabet=BASIC)
gsm_text = st.text(alphabet=BASIC + "".join(sorted(GSM7_EXTENSION)))


def test_empty_text_is_zero_segments() -> None:
    assert count_segments("") == SegmentInfo("GSM-7", 0, 0)


@pytest.mark.parametrize(
    ("length", "segments"), [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)]
)
def test_gsm7_boundaries(length: int, segments: int) -> None:
    assert count_segments("a" * length) == SegmentInfo("GSM-7", length, segments)


@pytest.mark.parametrize(
    ("length", "segments"), [(1, 1), (70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (202, 4)]
)
def test_ucs2_boundaries(length: int, segments: int) -> None:
    text = "ж" * length
    assert count_segments(text) == SegmentInfo("UCS-2", length, segments)


def test_french_accents_in_the_alphabet_stay_gsm7() -> None:
    assert count_segments("Ça été très à la mode, où ?").encoding == "GSM-7"


@pytest.mark.parametrize("text", ["ça va", "fête", "naïf", "Œuvre"])
def test_french_accents_outside_the_alphabet_need_ucs2(text: str) -> None:
    assert count_segments(text).encoding == "UCS-2"


@pytest.mark.parametrize("char", sorted(GSM7_EXTENSION))
def test_extension_characters_cost_two_septets(char: str) -> None:
    assert count_segments(char) == SegmentInfo("GSM-7", 2, 1)


def test_80_euro_signs_fill_one_sms_81_need_two() -> None:
    assert count_segments("€" * 80) == SegmentInfo("GSM-7", 160, 1)
    assert count_segments("€" * 81).segments == 2


def test_escape_sequence_is_not_split_across_parts() -> None:
    # 152 + 2 + 152 = 306 septets would fit 2 x 153, but the € cannot straddle parts 1 and 2.
    text = "a" * 152 + "€" + "a" * 152
    info = count_segments(text)
    assert info.units == 306
    assert info.segments == 3


def test_emoji_counts_two_utf16_units() -> None:
    assert count_segments("😀") == SegmentInfo("UCS-2", 2, 1)
    assert count_segments("😀" * 35) == SegmentInfo("UCS-2", 70, 1)
    assert count_segments("😀" * 36).segments == 2


def test_surrogate_pair_is_not_split_across_parts() -> None:
    # 66 + 2 + 66 = 134 units would fit 2 x 67, but the emoji cannot straddle the parts.
    info = count_segments("ж" * 66 + "😀" + "ж" * 66)
    assert info.units == 134
    assert info.segments == 3


def test_esc_control_character_forces_ucs2() -> None:
    assert count_segments("a\x1bb").encoding == "UCS-2"


@given(basic_text)
def test_basic_gsm7_matches_the_formula(text: str) -> None:
    n = len(text)
    expected = 0 if n == 0 else 1 if n <= 160 else math.ceil(n / 153)
    assert count_segments(text) == SegmentInfo("GSM-7", n, expected)


@given(gsm_text)
def test_gsm7_units_and_bounds(text: str) -> None:
    info = count_segments(text)
    units = len(text) + sum(c in GSM7_EXTENSION for c in text)
    assert info.encoding == "GSM-7"
    assert info.units == units
    if units > 160:
        # Never fewer parts than the room allows; at most one unit lost per part boundary.
        assert math.ceil(units / 153) <= info.segments <= math.ceil(units / 152)


@given(st.text(min_size=1))
def test_encoding_is_ucs2_iff_some_char_is_outside_gsm7(text: str) -> None:
    info = count_segments(text)
    outside = any(c not in GSM7_BASIC and c not in GSM7_EXTENSION for c in text)
    assert info.encoding == ("UCS-2" if outside else "GSM-7")
    if outside:
        assert info.units == len(text.encode("utf-16-le", "surrogatepass")) // 2
        if info.units > 70:
            assert math.ceil(info.units / 67) <= info.segments <= math.ceil(info.units / 66)
        else:
            assert info.segments == 1


@given(st.text(), st.characters())
def test_appending_never_decreases_segments(text: str, char: str) -> None:
    before = count_segments(text)
    after = count_segments(text + char)
    if after.encoding == before.encoding:
        assert after.segments >= before.segments
        assert after.units > before.units
