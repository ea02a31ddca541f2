"""How long a consumer's oldest unprocessed record has waited, per partition: a pure estimate
from what a worker sees at each lag refresh (`ardary_consumer_lag_seconds`).

The exact answer is "now - timestamp of the record at the committed offset", which would cost a
fetch per partition per refresh. The worker sees cheaper facts at each refresh instead, and
`LagClock` turns them into the age of the oldest unprocessed record:

- the committed offset and the highwater: nothing to wait for when they meet → 0;
- the records an agent took and has not acked yet (faust's unacked messages), with their
  timestamps: the oldest of them is unprocessed and, within the commit interval, the oldest of
  all → now - its timestamp (exact for that record);
- the last offset an agent took: when every record up to the highwater was taken and acked,
  only the commit is pending → 0;
- otherwise records wait untaken (in the consumer's buffer, or not fetched: a stalled or slow
  consumer). Their timestamps are unknown, but none is older than the partition's *floor*: the
  timestamp of the oldest unacked record seen at an earlier refresh, or the time of the last
  refresh that found the partition caught up → now - floor, an upper bound that is exact when
  records keep arriving, and that grows with the wall clock while the consumer is stuck. A
  partition that lags from the first refresh that sees it (a backlog found at assignment) has
  no floor yet: it counts from that refresh (a lower bound until its first record is taken).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

__all__ = ["LagClock", "PartitionView"]


@dataclass(frozen=True, slots=True)
class PartitionView:
    """What a refresh sees of one partition of a consumer."""

    committed: int
    """The committed offset: the next record to process (those below it are done)."""
    highwater: int
    """The log end offset: the offset the next record written will get."""
    taken: int | None = None
    """The last offset an agent took from this partition (None: none since it was assigned)."""
    oldest_unacked: float | None = None
    """Timestamp (epoch seconds) of the oldest record taken and not yet acked (None: none)."""


class LagClock:
    """Per partition, seconds since the oldest unprocessed record was written (see the module)."""

    def __init__(self) -> None:
        self._floor: dict[Hashable, float] = {}

    def seconds(self, tp: Hashable, view: PartitionView, now: float) -> float:
        """The age at `now` (epoch seconds) of the oldest record of `tp` not processed yet."""
        if view.oldest_unacked is not None:
            self._floor[tp] = view.oldest_unacked
            return max(0.0, now - view.oldest_unacked)
        if view.committed >= view.highwater or (
            view.taken is not None and view.taken + 1 >= view.highwater
        ):
            self._floor[tp] = now
            return 0.0
        floor = self._floor.setdefault(tp, now)
        return max(0.0, now - floor)

    def retain(self, tps: Iterable[Hashable]) -> None:
        """Forget the partitions not in `tps` (revoked: another worker has them now)."""
        keep = set(tps)
        for tp in [tp for tp in self._floor if tp not in keep]:
            del self._floor[tp]
