"""Release acknowledgements in offset order per partition, whatever order the work finishes in.

faust-streaming 0.15.3 commits the first run of consecutive acked offsets it holds for a
partition, and only refuses when that run starts more than one offset past the last commit
(and not at all before the first commit). An agent that acks out of order — the outbound agent,
whose concurrent Ardary batches finish in any order — can therefore have an offset committed
while the message at that offset is still being sent; after a crash nobody reads it again and
it never gets its result. Holding each finished event until every earlier event of its
partition has finished makes the acked offsets one run from the committed position, which
faust commits correctly.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["AckOrder"]

T = TypeVar("T")


@dataclass(slots=True)
class _Lane(Generic[T]):
    """One partition: offsets received and not released (a heap), and who is still busy."""

    heap: list[int] = field(default_factory=list)
    busy: dict[int, int] = field(default_factory=dict)  # offset → received, not finished
    ready: dict[int, list[T]] = field(default_factory=dict)  # offset → finished items


class AckOrder(Generic[T]):
    """Items (events) per partition, released for acking only in offset order."""

    def __init__(self) -> None:
        self._lanes: dict[Hashable, _Lane[T]] = {}
        self._held = 0

    @property
    def held(self) -> int:
        """Finished items waiting for an earlier offset of their partition."""
        return self._held

    def received(self, partition: Hashable, offset: int) -> None:
        """Note an item at `offset` whose work has started (an offset may arrive twice)."""
        lane = self._lanes.setdefault(partition, _Lane())
        count = lane.busy.get(offset)
        if count is None:
            lane.busy[offset] = 1
            if offset not in lane.ready:
                heapq.heappush(lane.heap, offset)
        else:
            lane.busy[offset] = count + 1

    def finished(self, partition: Hashable, offset: int, item: T) -> list[T]:
        """Mark one item at `offset` done; return the items that may be acked now, in order.

        An item this object does not track (its partition was forgotten on revocation) is
        never released. Its partition's revocation has begun, and faust-streaming 0.15.3 has
        already dropped the partition's committed offset: an ack now goes unchecked into the
        commit that faust still sends before the new assignment, which the broker accepts,
        and the committed offset jumps past every earlier offset not finished yet (the
        buffered requests dropped at revocation), so their next owner never reads them.
        """
        lane = self._lanes.get(partition)
        count = None if lane is None else lane.busy.get(offset)
        if lane is None or count is None:
            return []
        if count > 1:
            lane.busy[offset] = count - 1
        else:
            del lane.busy[offset]
        lane.ready.setdefault(offset, []).append(item)
        self._held += 1
        released: list[T] = []
        heap = lane.heap
        while heap and heap[0] not in lane.busy:
            done = lane.ready.pop(heapq.heappop(heap), [])
            released.extend(done)
        self._held -= len(released)
        return released

    def forget(self, partition: Hashable) -> int:
        """Stop tracking a revoked partition; its held items, and those finishing later, are
        dropped (never acked here).

        Returns how many were dropped: the partition's next owner reads them again.
        """
        lane = self._lanes.pop(partition, None)
        if lane is None:
            return 0
        dropped = sum(len(items) for items in lane.ready.values())
        self._held -= dropped
        return dropped
