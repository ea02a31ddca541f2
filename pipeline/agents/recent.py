"""The states an agent wrote last, kept decoded, so the next event of a message skips the store.

Reading a lifecycle back from its table costs a RocksDB read, a JSON parse and rebuilding the
dataclasses — a fifth of what the correlate worker spent per event (measured) — while the
next event of a message usually arrives soon after the previous one (its result, then its
statuses). The worker is the only writer of its partitions' keys while it owns them, so a
write-through copy is exact until a rebalance: the agent clears it whenever partitions are
revoked or assigned, and drops what its TTL sweep deletes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

__all__ = ["RecentStates"]

V = TypeVar("V")


class RecentStates(Generic[V]):
    """A bounded map that forgets the least recently written or read key first."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: dict[str, V] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> V | None:
        """The state last written for `key`, or None when it is not kept here."""
        value = self._items.pop(key, None)
        if value is None:
            self.misses += 1
            return None
        self._items[key] = value  # most recent again
        self.hits += 1
        return value

    def put(self, key: str, value: V) -> None:
        """Remember what was just written for `key`."""
        self._items.pop(key, None)
        self._items[key] = value
        if len(self._items) > self.capacity:
            del self._items[next(iter(self._items))]

    def discard(self, keys: Iterable[str]) -> None:
        """Forget keys (deleted from the table)."""
        for key in keys:
            self._items.pop(key, None)

    def clear(self) -> None:
        """Forget everything (the worker's partitions changed)."""
        self._items.clear()
