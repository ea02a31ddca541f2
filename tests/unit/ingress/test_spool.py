"""The ingress spool on a real directory: durable appends, oldest-first reads, recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.errors import ConfigError
from pipeline.ingress.spool import (
    RecoveryReport,
    SegmentSpool,
    SpoolFull,
    decode_payload,
    encode_payload,
)


def _items(n: int) -> list[tuple[str, bytes | None, bytes]]:
    return [("t.callbacks.status", f"id-{n}".encode(), f"value-{n}".encode() * 10)]


def _open(directory: Path, **kwargs: int) -> tuple[SegmentSpool, RecoveryReport]:
    spool = SegmentSpool(directory, kwargs.pop("max_bytes", 1 << 30), **kwargs)
    return spool, spool.open()


@given(
    st.lists(
        st.tuples(
            st.text(min_size=1, max_size=40),
            st.one_of(st.none(), st.binary(max_size=50)),
            st.binary(max_size=200),
        ),
        max_size=5,
    )
)
def test_payload_round_trip(items: list[tuple[str, bytes | None, bytes]]) -> None:
    assert decode_payload(encode_payload(items)) == tuple(items)


async def test_appended_entries_are_read_oldest_first_and_forwarded_once(tmp_path: Path) -> None:
    spool, report = _open(tmp_path)
    assert report.entries == 0
    for n in range(5):
        await spool.append(_items(n))
    assert spool.records == 5 and spool.bytes > 0 and spool.oldest_at is not None
    entries = await spool.read(3)
    assert [e.items for e in entries] == [tuple(_items(n)) for n in range(3)]
    await spool.forwarded(entries)
    assert spool.records == 2
    rest = await spool.read(10)
    assert [e.items for e in rest] == [tuple(_items(n)) for n in (3, 4)]
    spool.close()
    # a new process sees only what was not forwarded
    again, report = _open(tmp_path)
    assert report.entries == 2 and report.damaged == []
    assert [e.items for e in await again.read(10)] == [tuple(_items(n)) for n in (3, 4)]
    await again.forwarded(await again.read(10))
    assert again.records == 0 and again.bytes == 0 and again.oldest_at is None
    again.close()


async def test_concurrent_appends_share_fsyncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool, _ = _open(tmp_path)
    writes: list[int] = []
    original = spool._write

    def counting(first: int, entries: list[bytes]) -> None:
        writes.append(len(entries))
        original(first, entries)

    monkeypatch.setattr(spool, "_write", counting)
    await asyncio.gather(*(spool.append(_items(n)) for n in range(200)))
    assert sum(writes) == 200
    assert len(writes) < 200  # group commit: one write+fsync carries several requests
    assert [e.items[0][1] for e in await spool.read(200)] == [
        f"id-{n}".encode() for n in range(200)
    ]
    spool.close()


async def test_a_full_spool_refuses_and_keeps_nothing(tmp_path: Path) -> None:
    spool, _ = _open(tmp_path, max_bytes=200)  # one entry is ~150 bytes
    await spool.append(_items(1))
    with pytest.raises(SpoolFull):
        await spool.append(_items(2))
    assert spool.records == 1
    assert len(await spool.read(10)) == 1
    spool.close()


async def test_a_truncated_last_entry_is_moved_aside_and_the_rest_forwarded(tmp_path: Path) -> None:
    spool, _ = _open(tmp_path)
    for n in range(10):
        await spool.append(_items(n))
    spool.close()
    (segment,) = tmp_path.glob("segment-*.log")
    data = segment.read_bytes()
    segment.write_bytes(data[:-5])  # a crash in the middle of the last write
    again, report = _open(tmp_path)
    assert report.entries == 9
    ((aside, size),) = report.damaged
    assert aside.exists() and aside.read_bytes() == data[:-5][-size:]
    assert [e.items for e in await again.read(20)] == [tuple(_items(n)) for n in range(9)]
    # appends after the recovery still come after the intact entries
    await again.append(_items(99))
    assert [e.items for e in await again.read(20)][-1] == tuple(_items(99))
    again.close()


async def test_damage_in_the_middle_keeps_what_precedes_and_reports_the_rest(
    tmp_path: Path,
) -> None:
    spool, _ = _open(tmp_path)
    for n in range(4):
        await spool.append(_items(n))
    spool.close()
    (segment,) = tmp_path.glob("segment-*.log")
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF  # a flipped byte inside the third entry
    segment.write_bytes(bytes(data))
    again, report = _open(tmp_path)
    assert 0 < report.entries < 4
    assert report.damaged and report.damaged[0][1] > 0
    again.close()


def test_one_process_per_spool_directory(tmp_path: Path) -> None:
    first, _ = _open(tmp_path)
    with pytest.raises(ConfigError, match=r"INGRESS_SPOOL_DIR: .* in use by another"):
        _open(tmp_path)
    first.close()
    second, _ = _open(tmp_path)  # released on close
    second.close()


def test_an_unusable_directory_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="INGRESS_SPOOL_DIR: cannot use"):
        SegmentSpool(blocker / "spool", 1 << 20).open()


async def test_segments_rotate_and_spent_ones_are_deleted(tmp_path: Path) -> None:
    spool, _ = _open(tmp_path, segment_bytes=500)
    for n in range(12):
        await spool.append(_items(n))
    assert len(list(tmp_path.glob("segment-*.log"))) > 2
    entries = await spool.read(100)
    assert [e.items for e in entries] == [tuple(_items(n)) for n in range(12)]
    await spool.forwarded(entries)
    assert len(list(tmp_path.glob("segment-*.log"))) == 1  # only the active one is left
    spool.close()
    again, report = _open(tmp_path, segment_bytes=500)
    assert report.entries == 0
    again.close()
