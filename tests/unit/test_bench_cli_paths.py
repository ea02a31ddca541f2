"""`bench fuzz --corpus` and `bench ingress --profile` refuse a path they cannot write before the
slow part starts (generation, the measured runs): exit 2, one line naming the flag."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["fuzz", "--corpus", "a-file/corpus.json", "--generate-only"], "--corpus"),
        (["ingress", "--profile", "a-file/profile"], "--profile"),
    ],
)
def test_a_path_it_cannot_write_is_one_line_naming_the_flag(
    tmp_path: Path, args: list[str], flag: str
) -> None:
    (tmp_path / "a-file").write_text("")
    done = _bench(tmp_path, *args)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert flag in line and "a-file" in line
    assert not (tmp_path / "a-file").is_dir()


def test_a_file_that_is_not_a_corpus_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    (tmp_path / "notes.json").write_text('{"not": "a corpus"}')
    done = _bench(tmp_path, "fuzz", "--corpus", "notes.json")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "--corpus" in line and "notes.json" in line


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--events", "-5"], "--events"),  # ran, printed "0 events/s", then waited for nothing
        (["--events", "0"], "--events"),
        (["--store", "bogus://"], "--store"),  # ran with a store faust cannot open
        (["--rate", "0"], "--rate"),
        (["--partitions", "0"], "--partitions"),
    ],
)
def test_bench_correlate_refuses_a_value_it_cannot_run_before_starting_anything(
    tmp_path: Path, args: list[str], flag: str
) -> None:
    done = _bench(tmp_path, "correlate", *args)
    assert done.returncode == 2, done.stderr
    assert flag in done.stderr.strip().splitlines()[-1]
    assert "cluster:" not in done.stdout  # no broker was started


def _bench(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pipeline", "bench", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
