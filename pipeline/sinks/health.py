"""The sink's lag and readiness as plain arithmetic over what its consumer already knows.

No broker round trip is made to measure the lag: the polling thread keeps, per assigned
partition, the next offset stored in the warehouse (`committed`), the offsets and first
timestamps of the record runs it polled past that point, and the broker's highwater that every
fetch response carries. From those:

- records behind (`ardary_sink_lag`) = highwater - committed;
- age (`ardary_consumer_lag_seconds`) = now - timestamp of the oldest record past `committed`.

The age is an approximation in three ways, each erring towards "older":
1. a poll hands over records in runs per partition; a run is represented by its first record's
   timestamp, so a run that is partly committed counts from its first record;
2. timestamps are the producer's (CreateTime): a skewed producer clock skews the age (it is
   never below 0);
3. records past `committed` that the consumer has not fetched yet have no known timestamp: the
   age then counts from when the sink first saw the partition behind with none of them in hand
   (a lower bound of their true age, which keeps a stalled fetch visible).

A partition the sink never stored an offset for starts at the first record it polls there; until
then it is reported only once the broker's highwater says it is empty (0).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipeline.sinks.base import TopicPartition

__all__ = [
    "PartitionProgress",
    "ProgressTracker",
    "Readiness",
    "TopicLag",
    "lag_seconds",
    "partition_lag",
    "readiness",
    "topic_lags",
]


@dataclass(frozen=True, slots=True)
class PartitionProgress:
    """What the sink knows of one assigned partition at one moment (see the module doc)."""

    topic: str
    partition: int
    highwater: int | None  # the next offset the broker will assign; None: no fetch answered
    committed: int | None  # the next offset stored in the warehouse; None: not known yet
    oldest_uncommitted_ms: int | None  # timestamp of the oldest polled record past `committed`
    behind_since: float | None  # wall time it was first seen behind with no such record in hand


@dataclass(frozen=True, slots=True)
class TopicLag:
    """A topic's lag for the group: records summed, age of the oldest over its partitions."""

    records: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Readiness:
    """The answer of /readyz: ready or not, and why not in a few words."""

    ready: bool
    reason: str


def partition_lag(highwater: int | None, committed: int | None) -> int | None:
    """Records of the partition not yet stored in the warehouse; None while either is unknown."""
    if highwater is None:
        return None
    if committed is None:
        return 0 if highwater == 0 else None  # an empty partition owes nothing
    return max(0, highwater - committed)


def lag_seconds(progress: PartitionProgress, now: float) -> float:
    """Age of the oldest record of the partition not yet stored; 0 when it is caught up.

    `now` is wall-clock seconds (`time.time()`), the timestamps' clock.
    """
    if not partition_lag(progress.highwater, progress.committed):
        return 0.0
    if progress.oldest_uncommitted_ms is not None:
        return max(0.0, now - progress.oldest_uncommitted_ms / 1000)
    if progress.behind_since is not None:
        return max(0.0, now - progress.behind_since)
    return 0.0


def topic_lags(partitions: Iterable[PartitionProgress], now: float) -> dict[str, TopicLag]:
    """Per topic: the records behind summed over its known partitions, and the largest age."""
    out: dict[str, TopicLag] = {}
    for p in partitions:
        behind = partition_lag(p.highwater, p.committed)
        if behind is None:
            continue
        seen = out.get(p.topic, TopicLag(0, 0.0))
        out[p.topic] = TopicLag(seen.records + behind, max(seen.seconds, lag_seconds(p, now)))
    return out


def readiness(*, running: bool, stopping: bool, assigned: int, broker_up: bool) -> Readiness:
    """Ready while the loop runs, the broker answers and the group gave the sink partitions."""
    if stopping:
        return Readiness(False, "stopping")
    if not running:
        return Readiness(False, "starting: the consumer loop is not running yet")
    if not broker_up:
        return Readiness(False, "no bootstrap broker accepts a connection")
    if assigned == 0:
        return Readiness(False, "no partitions assigned (yet)")
    return Readiness(True, "ok")


@dataclass(slots=True)
class _Run:
    """Offsets and first timestamp of one run of records polled from a partition."""

    first: int
    last: int
    first_ms: int | None


class ProgressTracker:
    """Per-partition progress of the sink's consumer, for `PartitionProgress` snapshots.

    Fed by the runner: `assigned` and `revoked` from the rebalance listener, `polled` per run of
    records, `committed` once a warehouse write holding those offsets is done, `view` on the
    polling thread. kafka-python calls the listener on its own IO thread, so every call takes
    the lock; each is a few dictionary operations.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._committed: dict[TopicPartition, int | None] = {}
        self._runs: dict[TopicPartition, deque[_Run]] = {}
        self._behind_since: dict[TopicPartition, float] = {}

    def assigned(self, tp: TopicPartition, stored: int | None) -> None:
        """The partition is ours from `stored` (the warehouse's next offset; None: none stored)."""
        with self._lock:
            self._committed[tp] = stored
            self._runs[tp] = deque()
            self._behind_since.pop(tp, None)

    def revoked(self, tps: Iterable[TopicPartition]) -> None:
        with self._lock:
            for tp in tps:
                self._committed.pop(tp, None)
                self._runs.pop(tp, None)
                self._behind_since.pop(tp, None)

    def polled(self, tp: TopicPartition, first: int, last: int, first_ms: int) -> None:
        """A run of records `first`..`last` was polled; `first_ms` is the first one's timestamp."""
        with self._lock:
            runs = self._runs.get(tp)
            if runs is None:  # polled from a partition the listener has not reported: keep it
                runs = self._runs[tp] = deque()
                self._committed.setdefault(tp, None)
            if self._committed.get(tp) is None:
                self._committed[tp] = first  # nothing before the first record read is owed
            runs.append(_Run(first, last, first_ms if first_ms >= 0 else None))

    def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """The warehouse now holds every record before these next offsets."""
        with self._lock:
            for tp, offset in offsets.items():
                if tp not in self._committed:
                    continue  # revoked meanwhile: its new owner reports it
                self._committed[tp] = offset
                runs = self._runs[tp]
                while runs and runs[0].last < offset:
                    runs.popleft()

    def view(
        self, highwater: Mapping[TopicPartition, int | None], now: float
    ) -> list[PartitionProgress]:
        """The progress of the partitions in `highwater` (the assignment), at wall time `now`."""
        out: list[PartitionProgress] = []
        with self._lock:
            for tp, high in sorted(highwater.items()):
                committed = self._committed.get(tp)
                runs = self._runs.get(tp)
                oldest = runs[0].first_ms if runs else None
                behind = partition_lag(high, committed)
                since: float | None = None
                if behind and oldest is None:
                    since = self._behind_since.setdefault(tp, now)
                else:
                    self._behind_since.pop(tp, None)
                out.append(
                    PartitionProgress(tp.topic, tp.partition, high, committed, oldest, since)
                )
        return out
