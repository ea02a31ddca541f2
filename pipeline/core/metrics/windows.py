"""Tumbling windows: their keys, which windows a fact counts in, and when a window closes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import NamedTuple

from pipeline.core.metrics.facts import MetricFact, epoch_us, from_epoch_us

__all__ = [
    "ALL_LOGINS",
    "DEFAULT_GRACE_S",
    "WINDOWS",
    "Watermarks",
    "WindowKey",
    "WindowPolicy",
    "is_late",
    "window_closed",
    "window_keys",
    "window_start",
]

WINDOWS: Mapping[str, int] = {"1m": 60, "1h": 3600}
DEFAULT_GRACE_S = 600
ALL_LOGINS = "*"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UTC_NOW: Callable[[], datetime] = partial(datetime.now, UTC)


def window_start(ts: datetime, size_s: int) -> datetime:
    """Start of the tumbling window of `size_s` seconds holding `ts`, aligned to the epoch, UTC."""
    size = timedelta(seconds=size_s)
    return _EPOCH + ((ts - _EPOCH) // size) * size


class WindowKey(NamedTuple):
    """Identity of one window: its label (``1m``), start and login (``*`` = all)."""

    window: str
    start: datetime
    login: str

    def encode(self) -> str:
        """A string key for a table: ``<label>|<start epoch ms>|<login>``."""
        return f"{self.window}|{epoch_us(self.start) // 1000}|{self.login}"

    @classmethod
    def decode(cls, key: str) -> WindowKey:
        """Inverse of `encode` (the login may itself contain ``|``)."""
        label, start_ms, login = key.split("|", 2)
        return cls(label, from_epoch_us(int(start_ms) * 1000), login)


def window_keys(fact: MetricFact, sizes: Mapping[str, int] = WINDOWS) -> list[WindowKey]:
    """Every window a fact counts in: per size, its login's and ``*``."""
    logins = [ALL_LOGINS]
    if fact.login and fact.login != ALL_LOGINS:
        logins.insert(0, fact.login)
    keys: list[WindowKey] = []
    for label, size_s in sizes.items():
        start = window_start(fact.at, size_s)
        keys.extend(WindowKey(label, start, login) for login in logins)
    return keys


def window_closed(start: datetime, size_s: int, watermark: datetime, grace_s: float) -> bool:
    """A window is closed once its end plus the grace lies before the watermark."""
    return start + timedelta(seconds=size_s + grace_s) < watermark


def is_late(
    at: datetime, now_watermark: datetime, grace_s: float, size_s: int = WINDOWS["1m"]
) -> bool:
    """True when a fact at `at` is too late: its `size_s` window is already closed."""
    return window_closed(window_start(at, size_s), size_s, now_watermark, grace_s)


@dataclass(frozen=True)
class WindowPolicy:
    """The window sizes (label → seconds) and the grace: how long past its end a window still
    takes facts. One value, so every stage closes windows by the same rule."""

    sizes: Mapping[str, int] = field(default_factory=lambda: dict(WINDOWS))
    grace_s: float = DEFAULT_GRACE_S

    def keys(self, fact: MetricFact) -> list[WindowKey]:
        """Every window `fact` counts in (`window_keys`)."""
        return window_keys(fact, self.sizes)

    def end(self, key: WindowKey) -> datetime:
        """The (exclusive) end of a window."""
        return key.start + timedelta(seconds=self.sizes[key.window])

    def closed(self, key: WindowKey, watermark: datetime | None) -> bool:
        """True once the window's end plus the grace lies before `watermark` (never without one)."""
        return watermark is not None and window_closed(
            key.start, self.sizes[key.window], watermark, self.grace_s
        )

    def all_closed(self, facts: Iterable[MetricFact], watermark: datetime | None) -> bool:
        """True when every window of every fact is closed: their owner can be forgotten."""
        return watermark is not None and all(
            self.closed(key, watermark) for f in facts for key in self.keys(f)
        )


class Watermarks:
    """The largest fact time seen per source partition, read capped at the clock.

    Event time closes windows, so replaying old topics does not drop what is being rebuilt and a
    quiet stream closes nothing; the cap stops one bogus future timestamp from closing them all.
    """

    def __init__(self, clock: Callable[[], datetime] = _UTC_NOW) -> None:
        self._largest: dict[int, datetime] = {}
        self._clock = clock

    def advance(self, partition: int, at: datetime) -> None:
        """Note a fact time seen in `partition` (the watermark never moves back)."""
        have = self._largest.get(partition)
        if have is None or at > have:
            self._largest[partition] = at

    def largest(self, partition: int) -> datetime | None:
        """The largest fact time seen in `partition`, uncapped (what a worker stores)."""
        return self._largest.get(partition)

    def now(self, partition: int) -> datetime | None:
        """The watermark of `partition`: its largest fact time, at most the clock's time."""
        have = self._largest.get(partition)
        return None if have is None else min(have, self._clock())
