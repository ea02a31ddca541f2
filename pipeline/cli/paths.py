"""Local state directories of the commands: created with their parents, or one clear error.

A command that keeps state on disk (the worker's tables, the sink's warehouse file, the local
broker's data, the demo's runs) must start from any working directory: what it needs is
created, parents included, and a path it cannot use stops it with exit code 2 and one line
naming the path and the flag or setting that chose it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.warehouses import warehouse_for

__all__ = ["state_dir", "warehouse_dir"]

# Path-based warehouses whose path is a directory of files; the others' is one database file.
_DIRECTORY_WAREHOUSES = frozenset({"Parquet"})


def state_dir(path: Path, setting: str) -> Path:
    """`path` as an existing, writable directory (created with its parents if missing).

    Raises ConfigError naming `setting` (a flag such as `--data-dir`, or an environment
    variable) and the path when it is a file, sits under a file, or cannot be written.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"{setting}: {path} is a file, not a directory") from None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise ConfigError(f"{setting}: {path}: a parent of it is a file") from None
        raise ConfigError(f"{setting}: cannot create {path}: {exc.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{setting}: {path} is not writable")
    return path


def warehouse_dir(url: str, setting: str) -> Path | None:
    """The local directory a path-based warehouse (DuckDB file, Parquet tree) writes in, ready.

    None for a server (PostgreSQL), an in-memory DuckDB or a URL no warehouse claims (the
    settings refuse those first): nothing local to prepare. A DuckDB path that is a directory
    is refused here too, before DuckDB says it less clearly.
    """
    warehouse = warehouse_for(url)
    if warehouse is None or warehouse.target != "path":
        return None
    target = warehouse.target_of(url)
    if warehouse.name in _DIRECTORY_WAREHOUSES:
        return state_dir(Path(target), setting)
    if target == ":memory:":
        return None
    if Path(target).is_dir():
        raise ConfigError(f"{setting}: {target} is a directory, not a {warehouse.name} file")
    return state_dir(Path(target).parent, setting)
