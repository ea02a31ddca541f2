"""The sink's /metrics: the contract's names and labels, figures computed at scrape time."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pipeline import records
from pipeline.sinks.duckdb_sink import DuckDBSink
from pipeline.sinks.health import PartitionProgress
from pipeline.sinks.parquet_sink import ParquetSink
from pipeline.sinks.telemetry import LoopState, SinkTelemetry
from tests.unit.sinks.helpers import T0, lifecycle

NOW = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def samples(telemetry: SinkTelemetry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) → value."""
    text = telemetry.render().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_scrape_reports_the_contracts_sink_metrics() -> None:
    clock = Clock()
    broker = {"up": True}
    telemetry = SinkTelemetry(broker_up=lambda: broker["up"], clock=clock)
    assert telemetry.readiness().ready is False  # no run yet
    telemetry.started("ardary-warehouse", lambda: {"callbacks_status": 12, "sms_lifecycle": 3})
    telemetry.update(
        LoopState(
            "ardary-warehouse",
            2,
            (
                PartitionProgress("p.callbacks.status", 0, 20, 15, int((NOW - 8) * 1000), None),
                PartitionProgress("p.callbacks.status", 1, 7, 7, None, None),
            ),
        )
    )
    telemetry.flushed(0.03)
    clock.now += 4.5
    got = samples(telemetry)

    assert got[("ardary_sink_rows_written_total", (("table", "callbacks_status"),))] == 12
    assert got[("ardary_sink_rows_written_total", (("table", "sms_lifecycle"),))] == 3
    assert got[("ardary_sink_flush_seconds_count", ())] == 1
    assert got[("ardary_sink_flush_seconds_bucket", (("le", "0.05"),))] == 1
    assert got[("ardary_sink_flush_seconds_bucket", (("le", "0.025"),))] == 0
    assert got[("ardary_sink_last_commit_age_seconds", ())] == 4.5
    lag = "ardary_sink_lag"
    assert got[(lag, (("partition", "0"), ("topic", "p.callbacks.status")))] == 5
    assert got[(lag, (("partition", "1"), ("topic", "p.callbacks.status")))] == 0
    group_topic = (("group", "ardary-warehouse"), ("topic", "p.callbacks.status"))
    assert got[("ardary_consumer_lag_records", group_topic)] == 5
    assert got[("ardary_consumer_lag_seconds", group_topic)] == 12.5  # 8 s old, 4.5 s later
    assert got[("ardary_sink_ready", ())] == 1
    assert any(name.startswith("process_") for name, _ in got)  # the process's own metrics

    broker["up"] = False
    assert samples(telemetry)[("ardary_sink_ready", ())] == 0
    assert telemetry.readiness().reason == "no bootstrap broker accepts a connection"


def test_before_the_first_commit_the_age_counts_from_the_start() -> None:
    clock = Clock()
    telemetry = SinkTelemetry(clock=clock)
    assert ("ardary_sink_last_commit_age_seconds", ()) not in samples(telemetry)
    telemetry.started("g", dict)
    clock.now += 30
    got = samples(telemetry)
    assert got[("ardary_sink_last_commit_age_seconds", ())] == 30
    assert got[("ardary_sink_ready", ())] == 0  # started, but no partitions yet
    assert telemetry.readiness().reason == "no partitions assigned (yet)"


def test_a_stopping_sink_is_not_ready() -> None:
    telemetry = SinkTelemetry()
    telemetry.started("g", dict)
    telemetry.update(LoopState("g", 1))
    assert telemetry.readiness().ready
    telemetry.stopping()
    assert telemetry.readiness().reason == "stopping"


def test_the_sinks_count_rows_per_table_for_the_metrics(tmp_path: Path) -> None:
    status = records.StatusCallback("e1", "+33612345678", "sent", T0, raw="{}")
    duck = DuckDBSink(tmp_path / "wh.duckdb", "g")
    duck.setup()
    try:
        assert duck.rows_written() == {}
        for offset, record in enumerate([lifecycle(1), lifecycle(2), lifecycle(1)]):
            duck.add("p.sms.lifecycle", 0, offset, record)
        duck.add("p.callbacks.status", 0, 0, status)
        assert duck.flush() == 3  # m1 twice in one batch: one row
        duck.add("p.sms.lifecycle", 0, 3, lifecycle(3))
        duck.flush()
        assert duck.rows_written() == {"sms_lifecycle": 3, "callbacks_status": 1}
    finally:
        duck.close()
    lake = ParquetSink(tmp_path / "lake", "g")
    lake.setup()
    for offset in range(4):
        lake.add("p.sms.lifecycle", 1, offset, lifecycle(offset))
    assert lake.flush() == 4
    assert lake.rows_written() == {"sms_lifecycle": 4}
