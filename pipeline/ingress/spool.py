"""The ingress's durable spool: callbacks the broker cannot take right now, kept on local disk.

Format — append-only segment files with group commit (the choice is measured in docs/behaviour.md):
`<dir>/segment-<first seq>.log`, each a run of entries

    magic "AS" | payload length u32 | crc32 u32 | seq u64 | appended_at f64 | payload

where the payload is one request's encoded records (topic, key, value). Appends from
concurrent requests are written and fsync'd together by one writer (one fsync per batch, not
per request), and each request is answered only after the fsync of its batch. A forwarder reads
entries oldest first and, once Kafka acknowledged them, moves a checkpoint past them
(`<dir>/checkpoint`, replaced atomically); segments wholly behind it are deleted.

On open, every segment is scanned from the checkpoint: a damaged entry (bad magic, crc or a
truncated tail — a crash mid-write, a full disk) ends that segment's readable part; the bytes
from there on are moved aside to `<segment>.damaged-<time>` and reported, never silently
dropped, and the intact entries before it are forwarded as usual. One process owns a spool
directory at a time (an exclusive lock on `<dir>/LOCK`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import struct
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TypeAlias

from pipeline.errors import ConfigError, PipelineError

__all__ = [
    "RecoveryReport",
    "SegmentSpool",
    "SpoolEntry",
    "SpoolFull",
    "SpoolItem",
    "decode_payload",
    "encode_payload",
]

log = logging.getLogger("pipeline.ingress.spool")

SpoolItem: TypeAlias = tuple[str, bytes | None, bytes]
"""(topic, key, value) of one encoded record."""

_MAGIC = b"AS"
_HEADER = struct.Struct(">2sIIQd")  # magic, payload length, crc32, seq, appended_at
_SEGMENT_BYTES = 64 << 20
_CHECKPOINT = "checkpoint"


class SpoolFull(PipelineError):
    """The spool holds INGRESS_SPOOL_MAX_BYTES already: the request cannot be kept (503)."""

    retriable = True


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """One spooled request: its records, in the order they were appended."""

    seq: int
    appended_at: float
    items: tuple[SpoolItem, ...]
    size: int  # bytes on disk, header included
    end: tuple[int, int]  # (segment, offset) just past it: the checkpoint once it is forwarded


@dataclass(slots=True)
class RecoveryReport:
    """What opening the spool found: entries waiting, and damaged bytes moved aside."""

    entries: int = 0
    damaged: list[tuple[Path, int]] = field(default_factory=list)  # (moved-aside file, bytes)


def encode_payload(items: Sequence[SpoolItem]) -> bytes:
    """One request's records as bytes (count, then topic, key or -1, value per record)."""
    parts = [struct.pack(">I", len(items))]
    for topic, key, value in items:
        name = topic.encode()
        parts.append(struct.pack(">H", len(name)))
        parts.append(name)
        if key is None:
            parts.append(struct.pack(">i", -1))
        else:
            parts.append(struct.pack(">i", len(key)))
            parts.append(key)
        parts.append(struct.pack(">I", len(value)))
        parts.append(value)
    return b"".join(parts)


def decode_payload(data: bytes) -> tuple[SpoolItem, ...]:
    """Inverse of `encode_payload`; ValueError on bytes that are not one."""
    try:
        (count,) = struct.unpack_from(">I", data, 0)
        at = 4
        items: list[SpoolItem] = []
        for _ in range(count):
            (n,) = struct.unpack_from(">H", data, at)
            topic = data[at + 2 : at + 2 + n].decode()
            at += 2 + n
            (k,) = struct.unpack_from(">i", data, at)
            at += 4
            key = None if k < 0 else data[at : at + k]
            at += max(k, 0)
            (v,) = struct.unpack_from(">I", data, at)
            value = data[at + 4 : at + 4 + v]
            at += 4 + v
            items.append((topic, key, value))
    except (struct.error, UnicodeDecodeError) as exc:
        raise ValueError(f"not a spool payload: {exc}") from None
    if at != len(data):
        raise ValueError("trailing bytes after the spool payload")
    return tuple(items)


def _entry_bytes(seq: int, appended_at: float, payload: bytes) -> bytes:
    crc = zlib.crc32(payload, zlib.crc32(struct.pack(">Qd", seq, appended_at)))
    return _HEADER.pack(_MAGIC, len(payload), crc, seq, appended_at) + payload


def _read_entry(handle: IO[bytes]) -> tuple[int, float, bytes] | None:
    """The next whole, intact entry at the handle's position, or None (end or damage)."""
    header = handle.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    magic, length, crc, seq, appended_at = _HEADER.unpack(header)
    if magic != _MAGIC:
        return None
    payload = handle.read(length)
    if len(payload) < length:
        return None
    if zlib.crc32(payload, zlib.crc32(struct.pack(">Qd", seq, appended_at))) != crc:
        return None
    return seq, appended_at, payload


@dataclass(slots=True)
class _Position:
    """Where the forwarder reads next: a segment (by its first seq) and a byte offset."""

    segment: int
    offset: int


class SegmentSpool:
    """Append-only segment files with group commit; see the module docstring.

    `open()` (blocking: call it before serving) locks the directory and recovers; `append()`
    is the request path; `read()` / `forwarded()` are the forwarder's. Counters (`records`,
    `bytes`, `oldest_at`) describe what is waiting to be forwarded.
    """

    def __init__(
        self, directory: Path, max_bytes: int, *, segment_bytes: int = _SEGMENT_BYTES
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.records = 0  # entries waiting (appended, not yet forwarded)
        self.bytes = 0  # their size on disk
        self.oldest_at: float | None = None
        self._lock_file: IO[bytes] | None = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ingress-spool")
        self._next_seq = 0
        self._active: IO[bytes] | None = None
        self._read_at = _Position(0, 0)
        self._queue: list[tuple[bytes, int, asyncio.Future[None]]] = []
        self._reserved = 0  # bytes of appends queued but not yet written
        self._writer: asyncio.Task[None] | None = None
        self.changed = asyncio.Event()  # set when entries were written (the forwarder waits)

    # ---- opening and closing ---------------------------------------------------------------

    def open(self) -> RecoveryReport:
        """Create and lock the directory, recover what an earlier process left."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = (self.directory / "LOCK").open("ab")
        except OSError as exc:
            raise ConfigError(
                f"INGRESS_SPOOL_DIR: cannot use {self.directory}: {exc.strerror}"
            ) from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise ConfigError(
                f"INGRESS_SPOOL_DIR: {self.directory} is in use by another ingress process"
            ) from None
        self._lock_file = lock
        return self._recover()

    def close(self) -> None:
        """Release the directory (appends must be finished: see `stop`)."""
        if self._active is not None:
            self._active.close()
            self._active = None
        self._io.shutdown(wait=True)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _segments(self) -> list[int]:
        firsts = []
        for path in self.directory.glob("segment-*.log"):
            with contextlib.suppress(ValueError):
                firsts.append(int(path.stem.removeprefix("segment-")))
        return sorted(firsts)

    def _segment_path(self, first: int) -> Path:
        return self.directory / f"segment-{first:020d}.log"

    def _recover(self) -> RecoveryReport:
        report = RecoveryReport()
        checkpoint = self._load_checkpoint()
        segments = self._segments()
        if checkpoint is None or checkpoint.segment not in segments:
            checkpoint = _Position(segments[0] if segments else 0, 0)
        last_seq = -1
        for first in segments:
            if first < checkpoint.segment:
                self._segment_path(first).unlink(missing_ok=True)  # wholly forwarded
                continue
            start = checkpoint.offset if first == checkpoint.segment else 0
            path = self._segment_path(first)
            with path.open("r+b") as handle:
                handle.seek(start)
                good = start
                while (entry := _read_entry(handle)) is not None:
                    seq, appended_at, payload = entry
                    last_seq = max(last_seq, seq)
                    report.entries += 1
                    self.records += 1
                    self.bytes += _HEADER.size + len(payload)
                    if self.oldest_at is None:
                        self.oldest_at = appended_at
                    good = handle.tell()
                handle.seek(0, os.SEEK_END)
                end = handle.tell()
                if end > good:
                    report.damaged.append(self._move_aside(path, handle, good, end))
        self._read_at = checkpoint
        self._next_seq = last_seq + 1
        for aside, size in report.damaged:
            log.error("damaged spool bytes moved aside", extra={"file": str(aside), "bytes": size})
        return report

    def _move_aside(self, path: Path, handle: IO[bytes], good: int, end: int) -> tuple[Path, int]:
        """Copy a segment's bytes past its last intact entry to a side file; truncate them."""
        aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
        handle.seek(good)
        aside.write_bytes(handle.read(end - good))
        handle.truncate(good)
        handle.flush()
        os.fsync(handle.fileno())
        return aside, end - good

    def _load_checkpoint(self) -> _Position | None:
        try:
            text = (self.directory / _CHECKPOINT).read_text(encoding="ascii")
            segment, offset = (int(x) for x in text.split())
        except (OSError, ValueError):
            return None
        return _Position(segment, offset)

    # ---- appending (the request path) ---------------------------------------------------------

    async def append(self, items: Sequence[SpoolItem]) -> None:
        """Keep one request's records durably; returns once they are fsync'd.

        Raises SpoolFull (nothing kept) when they would take the spool past `max_bytes`.
        """
        payload = encode_payload(items)
        size = _HEADER.size + len(payload)
        if self.bytes + self._reserved + size > self.max_bytes:
            raise SpoolFull(f"spool holds {self.bytes} bytes (limit {self.max_bytes})")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((payload, size, future))
        self._reserved += size
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_loop())
        await future

    async def _write_loop(self) -> None:
        """Write and fsync everything queued, batch after batch (group commit)."""
        loop = asyncio.get_running_loop()
        while self._queue:
            batch, self._queue = self._queue, []
            now = time.time()
            first = self._next_seq
            entries = [
                _entry_bytes(first + n, now, payload) for n, (payload, _, _) in enumerate(batch)
            ]
            self._next_seq += len(entries)
            try:
                await loop.run_in_executor(self._io, self._write, first, entries)
            except Exception as exc:  # a full or failing disk: those requests were not kept
                log.error("spool write failed", extra={"error": type(exc).__name__})
                failure = SpoolFull(f"spool write failed: {type(exc).__name__}")
                for _, size, future in batch:
                    self._reserved -= size
                    if not future.done():
                        future.set_exception(failure)
                continue
            for _, size, future in batch:
                self._reserved -= size
                self.records += 1
                self.bytes += size
                if not future.done():
                    future.set_result(None)
            if self.oldest_at is None:
                self.oldest_at = now
            self.changed.set()

    def _write(self, first_seq: int, entries: list[bytes]) -> None:
        """Executor thread: append the entries to the active segment and fsync."""
        if self._active is None or self._active.tell() >= self.segment_bytes:
            self._rotate(first_seq)
        assert self._active is not None
        try:
            self._active.write(b"".join(entries))
            self._active.flush()
            os.fsync(self._active.fileno())
        except OSError:
            # a partial write must not be followed by good entries: start a new segment
            with contextlib.suppress(OSError):
                self._active.close()
            self._active = None
            raise

    def _rotate(self, first_seq: int) -> None:
        """Start a new segment, named by the first seq it holds (after a restart too: never
        append behind bytes this process did not write)."""
        if self._active is not None:
            self._active.close()
        self._active = self._segment_path(first_seq).open("ab")
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the new file's name is durable too
        finally:
            os.close(dir_fd)

    # ---- forwarding ---------------------------------------------------------------------------

    async def read(self, max_entries: int) -> list[SpoolEntry]:
        """Up to `max_entries` waiting entries, oldest first (none beyond what was fsync'd)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io, self._read, max_entries)

    def _read(self, max_entries: int) -> list[SpoolEntry]:
        out: list[SpoolEntry] = []
        position = _Position(self._read_at.segment, self._read_at.offset)
        for first in self._segments():
            if first < position.segment:
                continue
            offset = position.offset if first == position.segment else 0
            with self._segment_path(first).open("rb") as handle:
                handle.seek(offset)
                while len(out) < max_entries and (entry := _read_entry(handle)) is not None:
                    seq, appended_at, payload = entry
                    size = _HEADER.size + len(payload)
                    items = decode_payload(payload)
                    out.append(SpoolEntry(seq, appended_at, items, size, (first, handle.tell())))
            if len(out) >= max_entries:
                break
        return out

    async def forwarded(self, entries: Sequence[SpoolEntry]) -> None:
        """Move the checkpoint past `entries` (Kafka acknowledged them); delete spent segments."""
        if not entries:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._io, self._advance, _Position(*entries[-1].end))
        self.records -= len(entries)
        self.bytes -= sum(e.size for e in entries)
        if self.records == 0:
            self.oldest_at = None
        else:
            following = await self.read(1)
            self.oldest_at = following[0].appended_at if following else None

    def _advance(self, position: _Position) -> None:
        """Executor thread: persist the checkpoint, then delete the segments behind it."""
        self._write_checkpoint(position)
        self._read_at = position
        self._delete_spent(position)

    def _write_checkpoint(self, position: _Position) -> None:
        partial = self.directory / f"{_CHECKPOINT}.partial"
        with partial.open("w", encoding="ascii") as out:
            out.write(f"{position.segment} {position.offset}\n")
            out.flush()
            os.fsync(out.fileno())
        partial.replace(self.directory / _CHECKPOINT)

    def _delete_spent(self, position: _Position) -> None:
        for first in self._segments():
            if first >= position.segment:
                break
            self._segment_path(first).unlink(missing_ok=True)
