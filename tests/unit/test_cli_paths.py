"""The commands' local state directories: made with their parents, or one line naming the flag."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.cli.paths import state_dir, warehouse_dir
from pipeline.errors import ConfigError


def test_a_missing_directory_is_made_with_its_parents(tmp_path: Path) -> None:
    target = tmp_path / "data" / "faust"
    assert state_dir(target, "--data-dir") == target
    assert target.is_dir()
    assert state_dir(target, "--data-dir") == target  # an existing one is fine


@pytest.mark.parametrize(
    ("relative", "says"),
    [("a-file", "a-file is a file, not a directory"), ("a-file/sub", "a parent of it is a file")],
)
def test_a_file_in_the_way_is_one_line_naming_the_flag(
    tmp_path: Path, relative: str, says: str
) -> None:
    (tmp_path / "a-file").write_text("")
    with pytest.raises(ConfigError) as caught:
        state_dir(tmp_path / relative, "--data-dir")
    message = str(caught.value)
    assert message.startswith("--data-dir: ") and says in message
    assert str(tmp_path / relative) in message and "\n" not in message


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")
def test_a_read_only_directory_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match=r"--data-dir: .*(not writable|Permission denied)"):
            state_dir(locked / "faust", "--data-dir")
        with pytest.raises(ConfigError, match=r"--data-dir: .* is not writable"):
            state_dir(locked, "--data-dir")
    finally:
        locked.chmod(0o700)


def test_warehouse_dirs_of_each_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert warehouse_dir("duckdb:///./data/w.duckdb", "WAREHOUSE_URL") == Path("./data")
    assert (tmp_path / "data").is_dir() and not (tmp_path / "data" / "w.duckdb").exists()
    assert warehouse_dir(f"duckdb:///{tmp_path}/abs/w.duckdb", "WAREHOUSE_URL") == (
        tmp_path / "abs"
    )
    assert warehouse_dir("parquet:///lake/tables", "--url") == Path("lake/tables")
    assert (tmp_path / "lake" / "tables").is_dir()
    assert warehouse_dir("duckdb://", "WAREHOUSE_URL") is None  # in memory
    assert warehouse_dir("postgresql://u@h/db", "WAREHOUSE_URL") is None


def test_a_duckdb_path_that_is_a_directory_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.duckdb").mkdir()
    with pytest.raises(ConfigError, match=r"^WAREHOUSE_URL: w\.duckdb is a directory"):
        warehouse_dir("duckdb:///w.duckdb", "WAREHOUSE_URL")
