"""A class-data sharing archive of Kafka's classes for the local nodes: a third less CPU to start.

Every local node is a fresh JVM that loads and verifies ~6,000 of Kafka's classes; mapped from
an archive instead, a one-node format and start took 4.3 s of CPU instead of 6.9 s (and 2.9 s
to ready instead of 5.1 s) on the suite's 2-core machine with its JVM options. Java 17 has no
`-XX:+AutoCreateSharedArchive` (JDK 19), so this does its part by hand: while no archive
exists, one broker JVM per `LocalKafka` writes the classes it loaded to a file of its own when
it exits (`-XX:ArchiveClassesAtExit`), and that file is renamed into place only if the JVM went
through a normal exit (a killed JVM may leave half a file). Every later JVM maps it
(`-XX:SharedArchiveFile`). The archive sits beside the jars, named for the JDK that wrote it; a
JVM that cannot use it (another JDK or classpath) ignores it and starts as before.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

__all__ = ["archive_for", "can_dump", "dump_options", "publish_dump", "use_options"]


def archive_for(jars: Path, java: str) -> Path:
    """Where the archive of `jars` written by the JDK of `java` lives (beside the jars)."""
    real = Path(java).resolve()
    try:
        stamp = f"{real}:{real.stat().st_mtime_ns}"
    except OSError:
        stamp = str(real)
    key = hashlib.sha256(stamp.encode()).hexdigest()[:12]
    return jars.parent / f"{jars.name}-classes-{key}.jsa"


def use_options(archive: Path) -> list[str]:
    """The JVM options that map `archive`, or none while it does not exist."""
    return [f"-XX:SharedArchiveFile={archive}"] if archive.is_file() else []


def can_dump(archive: Path) -> bool:
    """Whether a JVM may be told to write `archive`: one told to dump where it cannot create
    the file refuses to start ("Unable to create shared archive file"), so a read-only jar
    cache gets no archive rather than no broker."""
    return os.access(archive.parent, os.W_OK)


def dump_options(archive: Path, node_id: int) -> tuple[list[str], Path]:
    """The options that make one JVM write its classes at exit, and the file it writes to."""
    dump = archive.with_name(f"{archive.name}.{os.getpid()}-{node_id}.partial")
    return [f"-XX:ArchiveClassesAtExit={dump}"], dump


def publish_dump(dump: Path, archive: Path, exit_code: int | None) -> None:
    """Rename `dump` into place if its JVM exited normally (any exit code: the VM's exit path
    wrote it whole); delete it otherwise (killed by a signal: the code is negative)."""
    try:
        if exit_code is not None and exit_code >= 0 and dump.stat().st_size > 0:
            os.replace(dump, archive)  # atomic: a concurrent JVM maps the old file or the new
            return
    except OSError:
        pass
    with contextlib.suppress(OSError):
        dump.unlink()
