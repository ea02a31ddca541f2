"""The benchmarks' pure helpers: the figures they print are only as right as these."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from pipeline import records
from pipeline.cli.bench import bench
from pipeline.devtools.bench import correlate
from pipeline.devtools.bench.correlate import mixed_events, percentile
from pipeline.devtools.bench.outbound import (
    WARMUP,
    login_figures,
    messages_per_call,
    peak_per_second,
    rate_figures,
)
from pipeline.devtools.bench.servers import hello_app
from pipeline.devtools.bench.wrk import write_cycle_script
from pipeline.errors import PipelineError

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def test_peak_counts_the_busiest_closed_one_second_window() -> None:
    assert peak_per_second([]) == 0
    assert peak_per_second([5.0]) == 1
    # 0.0, 0.5 and 1.0 share the closed window [0, 1]; 2.5 is alone
    assert peak_per_second([2.5, 1.0, 0.0, 0.5]) == 3
    assert peak_per_second([0.0, 1.01, 2.02]) == 1


def test_rate_figures_skip_the_warm_up_and_divide_by_the_target() -> None:
    target, seconds = 10.0, 4.0
    stamps = [i / 10 for i in range(int((WARMUP + seconds + 1) * 10))]  # exactly 10/s
    accuracy, peak = rate_figures(stamps, target, seconds)
    assert accuracy == pytest.approx(1.0)
    assert peak == pytest.approx(1.1)  # a closed 1-s window holds 11 stamps 0.1 s apart
    burst = [WARMUP + 0.001 * i for i in range(40)]  # 40 at once, then nothing
    accuracy, peak = rate_figures([0.0, *burst], target, seconds)
    assert accuracy == pytest.approx(40 / seconds / target)
    assert peak == pytest.approx(4.0)
    assert rate_figures([], target, seconds) == (0.0, 0.0)


def test_messages_per_call_counts_the_calls_by_their_one_acceptance_time() -> None:
    # calls of 10 every 0.25 s (40/s): the simulator stamps a call's messages alike
    stamps = [0.25 * (i // 10) for i in range(10 * 40)]
    assert messages_per_call(stamps, 4.0) == pytest.approx(10.0)
    assert messages_per_call([0.01 * i for i in range(1000)], 4.0) == pytest.approx(1.0)
    assert messages_per_call([], 4.0) == 0.0


def test_login_figures_report_the_worse_login() -> None:
    seconds = 4.0

    def steady(rate: float, scale: float = 1.0) -> list[float]:
        return [i / (rate * scale) for i in range(int(rate * scale * (WARMUP + seconds + 1)))]

    stamps = {"a": steady(20, 1.0), "b": steady(80, 0.95)}  # b runs 5 % slow
    accuracy, peak = login_figures(stamps, {"a": 20.0, "b": 80.0}, seconds)
    assert accuracy == pytest.approx(0.95, abs=0.01)
    assert peak == pytest.approx(21 / 20)  # a's closed 1-s window holds 21 stamps
    stamps = {"a": steady(20, 1.04), "b": steady(80, 0.98)}  # a 4 % fast is the worse one
    accuracy, _peak = login_figures(stamps, {"a": 20.0, "b": 80.0}, seconds)
    assert accuracy == pytest.approx(1.04, abs=0.01)


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))


def test_mixed_events_are_four_per_message_in_order() -> None:
    events = mixed_events(10, BASE)
    assert len(events) == 10
    kinds = [type(e).__name__ for e in events[:4]]
    assert kinds == ["SendRequest", "SendResult", "StatusCallback", "StatusCallback"]
    per_message = Counter(e.id_sms_api for e in events)
    assert per_message == {"b00000000": 4, "b00000001": 4, "b00000002": 2}
    statuses = [e.status for e in events[:4] if isinstance(e, records.StatusCallback)]
    assert statuses == ["sent", "received"]


def test_wrk_script_cycles_through_the_written_paths(tmp_path: Path) -> None:
    paths = ["/callbacks/t?status=a", "/callbacks/t?status=b"]
    script = write_cycle_script(tmp_path, paths)
    listed = (tmp_path / "paths.txt").read_text(encoding="utf-8").splitlines()
    assert listed == paths
    lua = script.read_text(encoding="utf-8")
    assert f'io.lines("{tmp_path / "paths.txt"}")' in lua
    assert "paths[(i % #paths) + 1]" in lua  # the % of the template came through unescaped


def test_hello_app_answers_a_constant_200() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(hello_app({"type": "http", "path": "/x"}, receive, send))
    assert sent[0]["status"] == 200
    assert dict(sent[0]["headers"])[b"content-length"] == str(len(sent[1]["body"])).encode()


def test_bench_lists_its_benchmarks_in_order_with_their_one_line_help() -> None:
    result = CliRunner().invoke(bench, ["--help"])
    assert result.exit_code == 0, result.output
    listed = result.output.split("Commands:", 1)[1].split()
    assert listed == [
        *["ingress", "Callbacks/s", "over", "real", "HTTP."],
        *["outbound", "Rate", "accuracy,", "msg/s."],
        *["correlate", "Events/s,", "latency."],
        *["sink", "Rows/s", "into", "DuckDB/PostgreSQL."],
        *["e2e", "Msgs/s", "end", "to", "end", "vs", "the", "slowest", "stage."],
        *["chaos", "The", "whole", "stack", "under", "faults:", "losses,", "duplicates."],
        *["fuzz", "Hostile", "callbacks:", "5xx,", "dead", "letters,", "RSS."],
    ]


def test_a_drain_finished_before_a_second_poll_is_too_few_to_measure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It printed "0 events/s" (0 events over no interval) for `--events 400`."""
    polls = iter([0.0, 400.0])
    monkeypatch.setattr(correlate, "_processed", lambda port: next(polls))
    monkeypatch.setattr(correlate.time, "sleep", lambda s: None)
    with pytest.raises(correlate.TooFewEvents, match="too few to measure") as raised:
        correlate._drain_rate(1, 400, 60)
    assert isinstance(raised.value, PipelineError)  # `bench correlate`: one line, not a traceback


def test_bench_e2e_gets_no_figure_for_a_correlate_drain_too_fast_to_measure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """0.0, which bench e2e reads as a stage without a figure (never the slowest), as before
    the drain raised; any other failure still raises."""
    stopped: list[str] = []

    class Worker:
        port = 1

        def __init__(self, *args: Any) -> None:
            pass

        def start(self, state: str) -> str:
            return "proc"

    def too_fast(port: int, target: float, timeout: float) -> float:
        raise correlate.TooFewEvents("too few to measure")

    cluster = SimpleNamespace(client=None, subprocess_env=lambda **env: env)
    monkeypatch.setattr(correlate, "_preload", lambda *args: [1, 2, 3, 4])
    monkeypatch.setattr(correlate, "_Worker", Worker)
    monkeypatch.setattr(correlate, "_stop", stopped.append)
    monkeypatch.setattr(correlate, "_drain_rate", too_fast)
    assert correlate.correlate_events_per_s(cluster, 4) == 0.0  # type: ignore[arg-type]
    assert stopped == ["proc"]

    def timed_out(port: int, target: float, timeout: float) -> float:
        raise PipelineError("worker processed 1/4 in time")

    monkeypatch.setattr(correlate, "_drain_rate", timed_out)
    with pytest.raises(PipelineError, match="in time"):
        correlate.correlate_events_per_s(cluster, 4)  # type: ignore[arg-type]


def test_a_drain_seen_in_progress_is_a_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    polls = iter([(100.0, 10.0), (400.0, 10.5)])
    state: dict[str, float] = {}

    def processed(port: int) -> float:
        n, t = next(polls)
        state["t"] = t
        return n

    monkeypatch.setattr(correlate, "_processed", processed)
    monkeypatch.setattr(correlate.time, "perf_counter", lambda: state["t"])
    monkeypatch.setattr(correlate.time, "sleep", lambda s: None)
    assert correlate._drain_rate(1, 400, 60) == pytest.approx(600.0)


def test_bench_correlates_worker_ends_with_the_bench(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Its own session (Ctrl-C reaches the bench alone) and the parent-death signal, which
    tests/unit/test_procutil.py shows ends a child when its parent is killed."""
    seen: dict[str, Any] = {}

    def popen(argv: list[str], **kwargs: Any) -> str:
        seen.update(kwargs)
        return "proc"

    monkeypatch.setattr(correlate.subprocess, "Popen", popen)
    assert correlate._Worker({}, "memory://", tmp_path).spawn("state") == "proc"
    assert seen["start_new_session"] is True
    assert seen["preexec_fn"] is not None and seen["preexec_fn"].__qualname__.startswith(
        "die_with_parent"
    )
