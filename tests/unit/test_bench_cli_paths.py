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
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "bench", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert flag in line and "a-file" in line
    assert not (tmp_path / "a-file").is_dir()


def test_a_file_that_is_not_a_corpus_is_one_line_naming_the_flag(tmp_path: Path) -> None:
    (tmp_path / "notes.json").write_text('{"not": "a corpus"}')
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "bench", "fuzz", "--corpus", "notes.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "--corpus" in line and "notes.json" in line
