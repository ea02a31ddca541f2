"""The local nodes' class-data archive: where it lives, when a JVM maps or writes it, and that
only a whole dump (a JVM that exited, not one killed) is renamed into place."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.devtools import classdata


def _java(tmp_path: Path, name: str) -> str:
    java = tmp_path / name / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    return str(java)


def test_the_archive_sits_beside_the_jars_named_for_the_jdk(tmp_path: Path) -> None:
    jars = tmp_path / "kafka-4.1.2" / "libs"
    one, other = _java(tmp_path, "jdk-17"), _java(tmp_path, "jdk-21")
    archive = classdata.archive_for(jars, one)
    assert archive.parent == jars.parent and archive.suffix == ".jsa"
    assert classdata.archive_for(jars, one) == archive  # stable
    assert classdata.archive_for(jars, other) != archive  # another JDK: another archive
    os.utime(one, ns=(1, 1))
    assert classdata.archive_for(jars, one) != archive  # the same JDK upgraded in place


def test_a_jvm_maps_the_archive_only_once_it_exists(tmp_path: Path) -> None:
    archive = tmp_path / "libs-classes.jsa"
    assert classdata.use_options(archive) == []
    archive.write_bytes(b"x")
    assert classdata.use_options(archive) == [f"-XX:SharedArchiveFile={archive}"]


def test_no_dump_is_asked_where_the_archive_cannot_be_written(tmp_path: Path) -> None:
    assert classdata.can_dump(tmp_path / "libs-classes.jsa")
    assert not classdata.can_dump(tmp_path / "missing" / "libs-classes.jsa")


def test_a_dump_goes_to_a_file_of_its_own(tmp_path: Path) -> None:
    archive = tmp_path / "libs-classes.jsa"
    options, dump = classdata.dump_options(archive, 2)
    assert options == [f"-XX:ArchiveClassesAtExit={dump}"]
    assert dump.parent == tmp_path and dump != archive
    assert classdata.dump_options(archive, 3)[1] != dump  # two nodes never share a file


def test_only_the_dump_of_a_jvm_that_exited_is_published(tmp_path: Path) -> None:
    archive = tmp_path / "libs-classes.jsa"
    for code in (143, 0, 1):  # SIGTERM handled by the JVM, a clean exit, a failed one
        _, dump = classdata.dump_options(archive, 1)
        dump.write_bytes(b"classes %d" % code)
        classdata.publish_dump(dump, archive, code)
        assert archive.read_bytes() == b"classes %d" % code and not dump.exists()
    for code in (-9, None):  # killed mid-write, or not reaped: maybe half a file
        _, dump = classdata.dump_options(archive, 1)
        dump.write_bytes(b"half")
        classdata.publish_dump(dump, archive, code)
        assert archive.read_bytes() == b"classes 1" and not dump.exists()
    _, dump = classdata.dump_options(archive, 1)
    dump.write_bytes(b"")  # the JVM could not write it
    classdata.publish_dump(dump, archive, 0)
    assert archive.read_bytes() == b"classes 1" and not dump.exists()
    classdata.publish_dump(tmp_path / "never-written.partial", archive, 0)  # no file: no error
