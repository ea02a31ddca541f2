"""`bench ingress --profile`'s aggregation of py-spy raw stacks and /proc thread CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli.bench import bench
from pipeline.devtools.bench import ingress as ingress_bench
from pipeline.devtools.bench.profile import (
    OTHER,
    STAGES,
    Sample,
    Stage,
    ThreadCpu,
    breakdown,
    folded,
    parse_raw,
    stage_of,
    strip_line,
    thread_cpu_delta,
)

PROC = 'process 10:"python -m pipeline ingress --port 1";process 11:"python -m pipeline ingress"'
MAIN = (PROC, "thread (11): MainThread", "MPServer._spawn_rsgi_worker (granian/server/mp.py:317)")
RSGI = (
    *MAIN,
    "_future_watcher_wrapper.<locals>.future_watcher (granian/_futures.py:15)",
    "IngressApp.__rsgi__ (pipeline/ingress/app.py:158)",
    "serve (pipeline/ingress/rsgi.py:47)",
)
ANSWER = (
    *RSGI,
    "IngressApp.answer (pipeline/ingress/app.py:180)",
    "IngressApp._callback (pipeline/ingress/app.py:209)",
    "IngressApp._handle (pipeline/ingress/app.py:230)",
)
KEEP = (*ANSWER, "IngressApp._keep (pipeline/ingress/app.py:310)")


def line(frames: tuple[str, ...], count: int) -> str:
    return f"{';'.join(frames)} {count}"


RAW = "\n".join(
    [
        line(RSGI, 20),  # native protocol calls: self time in serve
        line((*RSGI, "head_of (pipeline/ingress/rsgi.py:26)", "__init__ (<string>:3)"), 4),
        line(ANSWER, 6),
        line(
            (
                *ANSWER,
                "IngressApp._read (pipeline/ingress/app.py:260)",
                "Timeout.__aenter__ (asyncio/timeouts.py:90)",
            ),
            3,
        ),
        line(
            (
                *ANSWER,
                "decode_params (pipeline/ingress/decode.py:110)",
                "_unquote_plus (pipeline/ingress/decode.py:50)",
            ),
            5,
        ),
        line(
            (
                *ANSWER,
                "parse_callbacks (pipeline/ardary/callbacks.py:400)",
                "normalize_phone (pipeline/ardary/phones.py:20)",
            ),
            10,
        ),
        line(
            (
                *ANSWER,
                "IngressApp._handle.<locals>.<listcomp> (pipeline/ingress/app.py:241)",
                "IngressApp._encode (pipeline/ingress/app.py:300)",
                "AvroCodec.encode (pipeline/serde.py:255)",
                "_AvroBody.write_body (pipeline/serde.py:220)",
            ),
            8,
        ),
        line(
            (
                *KEEP,
                "DurableDoor.keep (pipeline/ingress/durable.py:80)",
                "shield (asyncio/tasks.py:900)",
            ),
            2,
        ),
        line(
            (
                *KEEP,
                "DurableDoor.keep (pipeline/ingress/durable.py:85)",
                "KafkaPublisher.publish (pipeline/kafka/publisher.py:185)",
            ),
            7,
        ),
        line(
            (
                *MAIN,
                "KafkaPublisher._flush_loop (pipeline/kafka/publisher.py:205)",
                "Sender._send_produce_req (aiokafka/producer/sender.py:300)",
                "StreamWriter.write (asyncio/streams.py:330)",
            ),
            9,
        ),
        line(MAIN, 15),  # the event loop's own native work
        line((PROC, "thread (11): MainThread"), 1),  # no Python frame at all: native too
        line((PROC, "thread (15)"), 30),  # a tokio thread: no Python frames
        line(
            (PROC, "thread (15)", "_cbsched_aioschedule.<locals>._schedule (x/_futures.py:96)"), 1
        ),
        "",
        "not a sample line",
    ]
)


def test_strip_line_drops_only_the_line_number() -> None:
    assert strip_line("serve (pipeline/ingress/rsgi.py:47)") == "serve (pipeline/ingress/rsgi.py)"
    assert strip_line("_run_code (<frozen runpy>:88)") == "_run_code (<frozen runpy>)"
    assert strip_line("thing (x.py)") == "thing (x.py)"


def test_parse_raw_reads_process_thread_frames_and_count() -> None:
    samples = parse_raw(RAW)
    assert len(samples) == 14  # the blank and the malformed lines are skipped
    first = samples[0]
    assert first.pids == (10, 11)
    assert (first.tid, first.thread_name, first.count) == (11, "MainThread", 20)
    assert first.frames[0] == "MPServer._spawn_rsgi_worker (granian/server/mp.py)"
    assert first.frames[-1] == "serve (pipeline/ingress/rsgi.py)"
    tokio = samples[-2]
    assert (tokio.tid, tokio.thread_name, tokio.frames, tokio.count) == (15, "", (), 30)


def test_parse_raw_without_threads_and_with_semicolons_in_a_command_line() -> None:
    line = 'process 7:"python -c import a; a.run()";main (x.py:1);f (y.py:2) 3'
    (sample,) = parse_raw(line)
    assert sample.tid is None
    assert sample.frames == ("main (x.py)", "f (y.py)")
    assert sample.count == 3
    (threaded,) = parse_raw('process 7:"python -c import a; a.run()";thread (9): T;f (y.py:2) 1')
    assert (threaded.pids, threaded.tid, threaded.thread_name) == ((7,), 9, "T")
    assert threaded.frames == ("f (y.py)",)


def test_the_innermost_frame_a_stage_names_decides() -> None:
    frames = (
        "MPServer._spawn_rsgi_worker (granian/server/mp.py)",
        "IngressApp._keep (pipeline/ingress/app.py)",
        "DurableDoor.keep (pipeline/ingress/durable.py)",
        "KafkaPublisher.publish (pipeline/kafka/publisher.py)",
        "murmur2 (aiokafka/partitioner.py)",
    )
    assert stage_of(frames) == "Kafka producer (publisher + aiokafka)"
    assert stage_of((*frames[:3], "shield (asyncio/tasks.py)")) == "durability door + spool"
    assert stage_of(frames[:1]) == OTHER  # the worker's root is not the HTTP glue
    assert stage_of(()) == OTHER
    custom = (Stage("mine", ("(granian/",)),)
    assert stage_of(frames[:1], custom) == "mine"


def test_every_stage_has_patterns_and_a_distinct_name() -> None:
    names = [stage.name for stage in STAGES]
    assert len(set(names)) == len(names) and OTHER not in names
    assert all(stage.patterns for stage in STAGES)


def test_thread_cpu_delta_is_per_thread_and_busiest_first() -> None:
    before = [ThreadCpu(11, 11, "python", 1.0), ThreadCpu(11, 15, "tokio", 2.0)]
    after = [
        ThreadCpu(11, 11, "python", 4.0),
        ThreadCpu(11, 15, "tokio", 2.5),
        ThreadCpu(11, 16, "tokio", 0.25),  # started during the load
    ]
    assert thread_cpu_delta(before, after) == [
        ThreadCpu(11, 11, "python", 3.0),
        ThreadCpu(11, 15, "tokio", 0.5),
        ThreadCpu(11, 16, "tokio", 0.25),
    ]


def test_breakdown_scales_the_main_threads_samples_by_its_cpu() -> None:
    samples = parse_raw(RAW)
    cpu = [ThreadCpu(11, 11, "python", 0.9), ThreadCpu(11, 15, "tokio", 0.1)]
    result = breakdown(samples, cpu, callbacks=10_000, top=3)
    assert result.main_tid == 11  # the most sampled thread with Python frames
    assert result.main_samples == 90  # the tokio thread's 31 samples are not the main thread's
    assert result.main_us == pytest.approx(90.0)  # 0.9 s / 10,000 callbacks
    stages = dict(result.stages)
    assert list(stages) == [stage.name for stage in STAGES] + [OTHER]
    assert stages == {
        "HTTP server glue / RSGI": 24,
        "app: routing, metrics, answer JSON": 6,
        "URL + body decode": 8,
        "parse (Ardary callbacks)": 10,
        "Avro encode (+ key, topic)": 8,
        "durability door + spool": 2,
        "Kafka producer (publisher + aiokafka)": 16,
        OTHER: 16,
    }
    # 90 samples over 90 µs: one µs each
    assert result.share_us(stages["parse (Ardary callbacks)"]) == pytest.approx(10.0)
    assert result.top_self == (
        ("serve (pipeline/ingress/rsgi.py)", 20),
        ("MPServer._spawn_rsgi_worker (granian/server/mp.py)", 15),
        ("normalize_phone (pipeline/ardary/phones.py)", 10),
    )
    text = "\n".join(result.lines())
    assert "100 µs in all" in text
    assert "11/11 python" in text and "(main: the stages below)" in text
    assert "parse (Ardary callbacks)" in text and "10.0 µs" in text
    assert "top 3 functions by self time" in text


def test_breakdown_without_samples_still_gives_the_threads() -> None:
    result = breakdown([], [ThreadCpu(1, 1, "python", 0.5)], callbacks=1000)
    assert result.main_tid is None and result.main_samples == 0
    lines = result.lines()
    assert lines[0].endswith("500 µs in all")
    assert lines[-1] == "  (no py-spy samples: no stage breakdown)"


def test_folded_keeps_one_threads_stacks_merged() -> None:
    samples = [
        Sample((1,), 2, "MainThread", ("a (x.py)", "b (x.py)"), 3),
        Sample((1,), 2, "MainThread", ("a (x.py)", "b (x.py)"), 4),
        Sample((1,), 2, "MainThread", ("a (x.py)",), 1),
        Sample((1,), 5, "", ("c (y.py)",), 9),
        Sample((1,), 2, "MainThread", (), 6),
    ]
    assert folded(samples, 2) == "a (x.py) 1\na (x.py);b (x.py) 7\n"


def test_profile_without_py_spy_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ingress_bench, "find_py_spy", lambda: None)

    def must_not_run(**_: object) -> None:
        raise AssertionError("the benchmark ran without py-spy")

    monkeypatch.setattr(ingress_bench, "run_ingress_bench", must_not_run)
    result = CliRunner().invoke(bench, ["ingress", "--profile", str(tmp_path / "p")])
    assert result.exit_code == 2
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "py-spy" in lines[0]
    assert "Traceback" not in result.output


def test_find_py_spy_looks_beside_python_then_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(ingress_bench.sys, "executable", str(tmp_path / "bin" / "python"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert ingress_bench.find_py_spy() is None
    on_path = tmp_path / "empty" / "py-spy"
    on_path.parent.mkdir()
    on_path.write_text("#!/bin/sh\n")
    on_path.chmod(0o755)
    assert ingress_bench.find_py_spy() == str(on_path)
    beside = tmp_path / "bin" / "py-spy"
    beside.parent.mkdir()
    beside.write_text("#!/bin/sh\n")
    beside.chmod(0o755)
    assert ingress_bench.find_py_spy() == str(beside)
