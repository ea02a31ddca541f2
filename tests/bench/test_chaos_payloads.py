"""The chaos load generator's callbacks: each one is a valid callback the ingress accepts as one
record of its kind, in both dialects, and no two are alike (the warehouse tells them apart)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pipeline.ardary.callbacks import kind_of, parse_callbacks
from pipeline.devtools.chaos.payloads import generated_callback

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def test_generated_callbacks_parse_unflagged_in_both_dialects_and_are_unique() -> None:
    kinds: Counter[str] = Counter()
    dialects: Counter[str] = Counter()
    raws = set()
    for seq in range(600):
        cb = generated_callback(7, seq, NOW)
        (record,) = parse_callbacks(
            [(cb.param, cb.raw)], received_at=NOW, tz=ZoneInfo("Europe/Paris")
        )
        assert record.raw == cb.raw
        assert not (set(record.flags) - {"BAD_DURATION"}), (cb, record.flags)
        kinds[kind_of(record)] += 1
        dialects[record.dialect] += 1
        raws.add(cb.raw)
    assert set(kinds) == {"incoming_sms", "call", "qualification"}
    assert set(dialects) == {"v1", "v2"}
    assert len(raws) == 600


def test_the_same_seed_and_sequence_give_the_same_callback() -> None:
    assert generated_callback(3, 10, NOW) == generated_callback(3, 10, NOW)
    assert generated_callback(3, 10, NOW) != generated_callback(4, 10, NOW)
