"""`bench e2e`'s pure parts: stage rates per message, the slowest stage, the completion check."""

from __future__ import annotations

import math

import pytest

from pipeline.devtools.bench.e2efigures import (
    CpuSample,
    PerMessage,
    StageRate,
    callback_bound,
    cost_of,
    cpu_breakdown,
    delivered_rate_between,
    histogram_sum_count,
    is_complete,
    per_message,
    saturation,
    slowest,
    stage_sizes,
    stages_per_message,
    timeshared_msgs_per_s,
)
from pipeline.errors import PipelineError

SINK_TOPICS = ("sms.lifecycle", "sms.send-results", "callbacks.status")


def _stage(name: str, rate: float, per: float) -> StageRate:
    return StageRate(name, rate, "units", per, "a size")


def test_a_stage_rate_in_messages_is_its_own_rate_over_what_one_message_costs_it() -> None:
    assert _stage("ingress", 1500.0, 2.0).msgs_per_s == 750.0
    assert _stage("correlate", 8000.0, 4.0).msgs_per_s == 2000.0
    assert _stage("sink", 100.0, 0.0).msgs_per_s == 0.0  # no message reached it: no figure


def test_per_message_counts_come_from_the_e2e_runs_topics() -> None:
    counts = {
        "sms.send-requests": 1000,
        "sms.send-results": 1000,
        "callbacks.status": 2000,
        "callbacks.clicks": 0,
        "sms.lifecycle": 3990,
        "metrics.sms": 500,  # neither an event of correlate nor loaded by these sink topics
    }
    per = per_message(counts, 1000, SINK_TOPICS)
    assert per == PerMessage(
        status_callbacks=2.0, events=4.0, lifecycles=3.99, sink_records=(3990 + 1000 + 2000) / 1000
    )
    with pytest.raises(ValueError, match="positive"):
        per_message(counts, 0, SINK_TOPICS)


def test_stages_are_normalised_by_their_own_unit() -> None:
    per = PerMessage(status_callbacks=2.0, events=4.0, lifecycles=4.0, sink_records=8.0)
    raw = {
        "outbound": (900.0, "1,000 send requests"),
        "ingress": (1600.0, "wrk"),
        "correlate": (6000.0, "4,000 events"),
        "sink": (12000.0, "2,000 rows"),
    }
    got = {s.name: s.msgs_per_s for s in stages_per_message(raw, per)}
    assert got == {"outbound": 900.0, "ingress": 800.0, "correlate": 1500.0, "sink": 3000.0}


def test_the_slowest_stage_is_the_lowest_in_messages_per_second_not_in_its_own_unit() -> None:
    stages = [
        _stage("outbound", 900.0, 1.0),
        _stage("ingress", 1600.0, 2.0),  # 800 msgs/s: the slowest, though not the lowest rate
        _stage("correlate", 6000.0, 4.0),
    ]
    assert slowest(stages).name == "ingress"


def test_a_stage_without_a_figure_is_never_the_slowest() -> None:
    stages = [
        _stage("outbound", math.inf, 1.0),  # every message in one Ardary call: no span
        _stage("correlate", 0.0, 4.0),  # drained between two polls of its counter
        _stage("sink", 4000.0, 4.0),
    ]
    assert slowest(stages).name == "sink"
    with pytest.raises(PipelineError, match="too short"):
        slowest(stages[:2])


@pytest.mark.parametrize(
    ("delivered", "lag", "complete"),
    [
        (100, 0, True),
        (99, 0, False),  # one lifecycle not DELIVERED yet on sms.lifecycle
        (100, 3, False),  # all DELIVERED, the sink has not committed them all
        (100, None, False),  # the sink's lag not asked yet
    ],
)
def test_complete_only_when_all_are_delivered_and_the_sink_caught_up(
    delivered: int, lag: int | None, complete: bool
) -> None:
    assert is_complete(delivered, 100, lag) is complete


def test_the_steady_rate_leaves_out_the_ramp_up_and_the_drain() -> None:
    # 5 s of ramp-up for the first 10, then 100 messages/s, then a slow tail
    times = [0.5 * i for i in range(10)] + [5 + 0.01 * i for i in range(80)]
    times += [6 + i for i in range(10)]
    rate = delivered_rate_between(times)
    assert rate is not None and 95 < rate < 105
    assert delivered_rate_between([1.0] * 5) is None  # too few to say
    assert delivered_rate_between([1.0] * 20) is None  # no span


def test_stage_sizes_follow_n_with_a_floor() -> None:
    assert stage_sizes(4000) == {"outbound": 4000, "correlate": 16_000, "sink": 16_000}
    assert stage_sizes(50) == {"outbound": 1000, "correlate": 4000, "sink": 4000}


def test_the_ingress_histogram_is_read_from_the_exposition() -> None:
    text = "\n".join(
        [
            "# TYPE ardary_ingress_publish_seconds histogram",
            'ardary_ingress_publish_seconds_bucket{le="0.005"} 3.0',
            "ardary_ingress_publish_seconds_count 40.0",
            "ardary_ingress_publish_seconds_sum 2.5",
            "ardary_ingress_publish_seconds_created 1.7e+09",
        ]
    )
    assert histogram_sum_count(text, "ardary_ingress_publish_seconds") == (2.5, 40.0)
    assert histogram_sum_count("", "ardary_ingress_publish_seconds") == (0.0, 0.0)


def test_callback_concurrency_bounds_the_messages_per_second() -> None:
    # 16 callbacks in flight, 100 ms each: 160 callbacks/s, 80 messages/s at two per message
    bound = callback_bound(16, 0.1, 2.0)
    assert bound is not None and math.isclose(bound, 80.0)
    assert callback_bound(16, 0.0, 2.0) is None


def test_cpu_per_message_leaves_out_what_a_process_spends_idle() -> None:
    # over a 100-s run of 2,000 messages: the sink polls at 0.2 cores with no traffic at all
    procs = cpu_breakdown(
        {"sink": 0.2, "simulator": 0.0},
        {"sink": 24.0, "simulator": 30.0, "broker": 10.0},
        seconds=100.0,
        requests=2000,
    )
    by_name = {p.name: p for p in procs}
    assert [p.name for p in procs] == ["simulator", "broker", "sink"]  # most per message first
    assert math.isclose(by_name["simulator"].ms_per_message, 15.0)
    assert math.isclose(by_name["sink"].ms_per_message, 2.0)  # (24 - 0.2 x 100) s / 2,000
    assert math.isclose(by_name["sink"].cores, 0.24)
    ceiling = by_name["simulator"].ceiling_msgs_per_s
    assert ceiling is not None and math.isclose(ceiling, 1000 / 15)
    idle_only = cpu_breakdown({"sink": 0.3}, {"sink": 20.0}, seconds=100.0, requests=10)
    assert idle_only[0].ms_per_message == 0.0 and idle_only[0].ceiling_msgs_per_s is None


def test_the_pipelines_cost_counts_its_four_processes_and_prints_the_others_apart() -> None:
    procs = cpu_breakdown(
        {},
        {
            "ingress": 1.0,
            "worker": 8.0,
            "sink": 2.0,
            "broker": 3.0,
            "simulator": 5.0,
            "this bench (publisher, reader)": 0.5,
        },
        seconds=10.0,
        requests=1000,
    )
    cost = cost_of(procs)
    assert math.isclose(cost.pipeline_ms, 14.0)  # (1 + 8 + 2 + 3) s / 1,000 messages
    assert math.isclose(cost.worker_ms, 8.0)
    assert cost.outside_ms == {"simulator": 5.0, "this bench (publisher, reader)": 0.5}
    assert cost_of([]).pipeline_ms == 0.0  # a process that did not run counts nothing


def test_stages_one_after_another_take_the_sum_of_their_times_per_message() -> None:
    # 1 ms + 2 ms + 0.5 ms per message one after another: 3.5 ms, so 1000/3.5 msgs/s
    stages = [_stage("a", 1000, 1.0), _stage("b", 1000, 2.0), _stage("c", 4000, 2.0)]
    found = timeshared_msgs_per_s(stages)
    assert found is not None and math.isclose(found, 1000 / 3.5)
    assert found < min(s.msgs_per_s for s in stages)  # slower than the slowest alone
    no_figure = _stage("d", 0.0, 1.0)  # a run too short for its clock: left out
    assert timeshared_msgs_per_s([*stages, no_figure]) == found
    assert timeshared_msgs_per_s([no_figure]) is None


def test_saturation_sums_the_intervals_when_the_machine_or_the_worker_had_no_cpu_to_spare() -> None:
    # two cores; per 1-s interval, (machine cores busy, worker cores busy)
    busy = [(1.9, 0.5), (1.95, 0.6), (1.1, 0.9), (1.0, 0.85), (0.6, 0.3)]
    samples, machine, worker = [CpuSample(0.0, 100.0, 10.0)], 100.0, 10.0
    for second, (box, work) in enumerate(busy, start=1):
        machine, worker = machine + box, worker + work
        samples.append(CpuSample(float(second), machine, worker))
    found = saturation(samples, cores=2)
    assert math.isclose(found.seconds, 5.0)
    assert math.isclose(found.machine, 2.0)  # >= 1.8 of 2 cores: the first two
    assert math.isclose(found.worker, 2.0)  # >= 0.8 of a core: the third and fourth
    assert math.isclose(found.either, 4.0) and math.isclose(found.share, 0.8)
    assert saturation(samples[:1], cores=2).share == 0.0  # one sample: no interval
