"""The sink's Prometheus metrics and readiness, on a registry of its own, read at scrape time.

The runner feeds a `SinkTelemetry` from its threads: the polling thread publishes a `LoopState`
(an immutable snapshot, swapped in whole) every turn or so, the writer thread reports each
warehouse transaction. The web server's threads only read: every figure is computed when
`/metrics` or `/readyz` is asked, never by a timer. The names are the ones shared with the
other processes: `ardary_sink_*`, and `ardary_consumer_lag_*` with the worker's meaning.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from pipeline.sinks.health import (
    PartitionProgress,
    Readiness,
    partition_lag,
    readiness,
    topic_lags,
)

__all__ = ["FLUSH_BUCKETS", "LoopState", "SinkTelemetry"]

# one warehouse transaction: milliseconds for a small DuckDB batch, seconds for 20,000 rows
# into a remote PostgreSQL
FLUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True, slots=True)
class LoopState:
    """What the polling thread last saw: its group, its assignment and each partition's progress."""

    group: str
    assigned: int
    partitions: tuple[PartitionProgress, ...] = field(default_factory=tuple)


class SinkTelemetry:
    """The metrics of one sink run and the readiness decision both endpoints share.

    `broker_up` answers whether a broker accepts connections (the web server passes a cached
    TCP probe); `clock` is wall-clock seconds, injected for tests.
    """

    def __init__(
        self,
        *,
        broker_up: Callable[[], bool] = lambda: True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._broker_up = broker_up
        self._clock = clock
        self._state: LoopState | None = None
        self._stopping = False
        self._started_at: float | None = None
        self._last_commit_at: float | None = None
        self._rows: Callable[[], Mapping[str, int]] = dict
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.flush_seconds = Histogram(
            "ardary_sink_flush_seconds",
            "Duration of one warehouse transaction (rows and their offsets)",
            buckets=FLUSH_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(self)

    # -- fed by the runner --
    def started(self, group: str, rows: Callable[[], Mapping[str, int]]) -> None:
        """A run begins: `rows()` gives the rows written so far per table (any thread)."""
        self._rows = rows
        self._started_at = self._clock()
        self._stopping = False
        self._state = LoopState(group, 0)

    def update(self, state: LoopState) -> None:
        """The polling thread's latest snapshot (replaces the previous one whole)."""
        self._state = state

    def flushed(self, seconds: float) -> None:
        """One warehouse transaction with rows and offsets committed, in `seconds` (writer)."""
        self.flush_seconds.observe(seconds)
        self._last_commit_at = self._clock()

    def stopping(self) -> None:
        """The run is ending (a stop was asked or it failed): no longer ready."""
        self._stopping = True

    # -- read by the web server --
    def readiness(self) -> Readiness:
        state = self._state
        return readiness(
            running=state is not None,
            stopping=self._stopping,
            assigned=state.assigned if state is not None else 0,
            broker_up=state is not None and not self._stopping and self._broker_up(),
        )

    def collect(self) -> Iterator[Metric]:
        """The prometheus_client collector protocol: every figure as of now."""
        now = self._clock()
        state = self._state
        rows = CounterMetricFamily(
            "ardary_sink_rows_written",
            "Rows written to the warehouse, per table (replays of stored rows count again)",
            labels=("table",),
        )
        for table, count in sorted(self._rows().items()):
            rows.add_metric((table,), count)
        yield rows
        since = self._last_commit_at if self._last_commit_at is not None else self._started_at
        if since is not None:
            yield GaugeMetricFamily(
                "ardary_sink_last_commit_age_seconds",
                "Seconds since the last warehouse transaction storing rows and offsets "
                "(since the start before the first one)",
                value=max(0.0, now - since),
            )
        yield from self._lag_families(state, now)
        yield GaugeMetricFamily(
            "ardary_sink_ready",
            "1 while /readyz answers 200",
            value=1.0 if self.readiness().ready else 0.0,
        )

    def _lag_families(self, state: LoopState | None, now: float) -> Iterator[Metric]:
        partitions = state.partitions if state is not None else ()
        lag = GaugeMetricFamily(
            "ardary_sink_lag",
            "Records of the partition not yet stored in the warehouse (highwater minus the "
            "stored next offset)",
            labels=("topic", "partition"),
        )
        for p in partitions:
            behind = partition_lag(p.highwater, p.committed)
            if behind is not None:
                lag.add_metric((p.topic, str(p.partition)), behind)
        yield lag
        records = GaugeMetricFamily(
            "ardary_consumer_lag_records",
            "Records not yet committed, summed over the topic's partitions",
            labels=("group", "topic"),
        )
        seconds = GaugeMetricFamily(
            "ardary_consumer_lag_seconds",
            "Now minus the timestamp of the oldest record not yet committed (0 when caught up; "
            "approximate, see pipeline/sinks/health.py)",
            labels=("group", "topic"),
        )
        group = state.group if state is not None else ""
        for topic, topic_lag in sorted(topic_lags(partitions, now).items()):
            records.add_metric((group, topic), topic_lag.records)
            seconds.add_metric((group, topic), topic_lag.seconds)
        yield records
        yield seconds

    def render(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)
