"""How many SMS a text costs: GSM-7 (160/153) or UCS-2 (70/67) segment counting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["GSM7_BASIC", "GSM7_EXTENSION", "SegmentInfo", "count_segments"]

# GSM 03.38 default alphabet (ESC excluded: it is not a character a text can contain).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each costs an escape septet plus itself.
GSM7_EXTENSION = frozenset("\f^{}\\[]~|€")

_GSM7_SINGLE, _GSM7_PART = 160, 153
_UCS2_SINGLE, _UCS2_PART = 70, 67

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """A text's encoding, its length in encoding units (septets or UTF-16 units), and SMS count."""

    encoding: Encoding
    units: int
    segments: int


def _gsm7_costs(text: str) -> list[int] | None:
    """Septets per character, or None when a character needs UCS-2."""
    costs: list[int] = []
    for char in text:
        if char in GSM7_BASIC:
            costs.append(1)
        elif char in GSM7_EXTENSION:
            costs.append(2)
        else:
            return None
    return costs


def _pack(costs: list[int], units: int, single: int, part: int) -> int:
    """Segments needed: one if it fits, else greedy parts that never split a character."""
    if units == 0:
        return 0
    if units <= single:
        return 1
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments += 1
            used = 0
        used += cost
    return segments


def count_segments(text: str) -> SegmentInfo:
    """Count what sending `text` costs, as a handset would split it.

    GSM-7 when every character is in the default alphabet or its extension table (extension
    characters take two septets), else UCS-2 (characters outside the BMP take a surrogate
    pair). A multipart message loses room to its UDH, and an escape sequence or surrogate pair
    is never split across parts, so a part may end one unit short.
    """
    gsm_costs = _gsm7_costs(text)
    if gsm_costs is not None:
        units = sum(gsm_costs)
        return SegmentInfo("GSM-7", units, _pack(gsm_costs, units, _GSM7_SINGLE, _GSM7_PART))
    costs = [2 if ord(c) > 0xFFFF else 1 for c in text]
    units = sum(costs)
    return SegmentInfo("UCS-2", units, _pack(costs, units, _UCS2_SINGLE, _UCS2_PART))
