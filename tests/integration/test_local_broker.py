"""The local Kafka broker for real: records round-trip, survive a restart, no JVM outlives it."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient

from pipeline.devtools import localkafka
from pipeline.devtools.localkafka import JVM_OPTIONS_VARIABLE, KAFKA_VERSION, LocalKafka
from pipeline.procutil import free_port
from pipeline.records import SendRequest
from pipeline.serde import AvroCodec, SchemaStore
from tests.polling import wait_until
from tests.procs import close, java_children, lines, pid_gone

pytestmark = pytest.mark.integration


def _produce(bootstrap: str, topic: str, value: bytes, key: bytes = b"k") -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    try:
        producer.send(topic, key=key, value=value).get(timeout=15)
    finally:
        producer.close(timeout=5)


def _consume_until(
    bootstrap: str, topic: str, group: str, wanted: bytes, timeout: float = 30.0
) -> bytes:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:

        def consumed() -> bytes | None:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if record.value == wanted:
                        return bytes(record.value)
            return None

        return wait_until(consumed, timeout, f"{wanted!r} consumed from {topic}", interval=0)
    finally:
        consumer.close()


CODEC = AvroCodec(SchemaStore.load())
RECORD = SendRequest(
    id_sms_api="rt-1",
    login="u@x.fr",
    phone_number="+33612345678",
    message="Bonjour 😀 [Link]",
    requested_at=datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
    url="https://e.x/",
    priority=2,
    metadata={"campaign": "roundtrip"},
)


def test_avro_record_produced_and_consumed_through_session_broker(
    kafka_bootstrap: str, make_topic: Callable[..., str], group_id: str
) -> None:
    topic = make_topic("roundtrip", partitions=3)
    encoded = CODEC.encode(RECORD)
    _produce(kafka_bootstrap, topic, encoded)
    assert CODEC.decode(_consume_until(kafka_bootstrap, topic, group_id, encoded)) == RECORD


def test_restart_on_same_data_dir_keeps_records_and_ports(
    local_kafka_factory: Callable[..., LocalKafka], group_id: str, wait_until: Any
) -> None:
    first = local_kafka_factory()
    bootstrap = first.start()
    topic = "restart-survivor"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            {topic: {"num_partitions": 1, "replication_factor": 1}}, wait_for_metadata=True
        )
    finally:
        admin.close()
    encoded = CODEC.encode(RECORD)
    _produce(bootstrap, topic, encoded)
    pid = first.pid
    assert pid is not None
    first.stop()
    assert not first.is_running()
    wait_until(lambda: pid_gone(pid), timeout=10, what="the first JVM to exit")

    second = local_kafka_factory(data_dir=first.data_dir)
    assert second.start() == bootstrap  # same data dir -> same ports (ports.json)
    value = _consume_until(bootstrap, topic, group_id, encoded)
    assert CODEC.decode(value) == RECORD  # the Avro record survived the restart


def _maps(kafka: LocalKafka) -> str:
    pid = kafka.pid
    assert pid is not None
    return Path(f"/proc/{pid}/maps").read_text(encoding="utf-8", errors="replace")


def test_the_first_node_writes_the_class_archive_and_later_nodes_map_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "cache" / "libs-classes.jsa"
    archive.parent.mkdir()
    monkeypatch.setattr(localkafka.classdata, "archive_for", lambda jars, java: archive)
    first = LocalKafka()
    try:
        first.start()
        assert str(archive) not in _maps(first)
    finally:
        first.stop()
    assert archive.is_file(), "the first node wrote no class archive when it stopped"
    assert not list(archive.parent.glob("*.partial"))

    later = LocalKafka()
    try:
        later.start()
        assert str(archive) in _maps(later), "a later node did not map the archive"
    finally:
        later.stop()

    # a node started before the archive existed, stopped after another node wrote it: its data
    # dir is temporary and its dump would be thrown away, so it is killed, not left to dump
    written = archive.read_bytes()
    archive.rename(tmp_path / "aside.jsa")
    racing = LocalKafka()
    try:
        racing.start()
        (tmp_path / "aside.jsa").rename(archive)
    finally:
        racing.stop()
    assert archive.read_bytes() == written  # no second dump replaced it
    assert not list(archive.parent.glob("*.partial"))


def test_stop_leaves_no_jvm_and_removes_temporary_data() -> None:
    kafka = LocalKafka()
    try:
        kafka.start()
        pid, data_dir = kafka.pid, kafka.data_dir
        assert pid is not None and data_dir is not None and data_dir.is_dir()
        assert kafka.is_running()
    finally:
        kafka.stop()
    assert pid_gone(pid)  # stop() waited for the JVM and reaped it
    assert not data_dir.exists()
    kafka.stop()  # idempotent
    assert kafka.pid is None


def test_a_jvm_option_the_jvm_refuses_stops_the_command_with_one_line_naming_the_variable(
    tmp_path: Path,
) -> None:
    env = {**os.environ, JVM_OPTIONS_VARIABLE: "-XX:TieredStopAtLevel=1 -XX:+NoSuchOption"}
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "broker"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    err = done.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"ardary-pipeline: error: {JVM_OPTIONS_VARIABLE}")
    assert "NoSuchOption" in err[0] and "Traceback" not in done.stderr


def test_broker_command_runs_until_sigint_and_leaves_no_jvm(
    tmp_path: Path, wait_until: Any
) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "broker", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        stdout = lines(proc.stdout)  # type: ignore[arg-type]
        try:
            ready = stdout.get(timeout=90)
        except queue.Empty:
            pytest.fail("`ardary-pipeline broker` printed no ready line within 90s")
        assert ready.startswith(f"Kafka {KAFKA_VERSION} ready at 127.0.0.1:{port} (data: ")
        (jvm,) = java_children(proc.pid)
        data_dir = Path(ready.split("(data: ", 1)[1].split(")", 1)[0])
        assert data_dir.is_dir()

        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, proc.stderr.read() if proc.stderr else ""
        wait_until(lambda: pid_gone(jvm), timeout=10, what="the broker JVM to exit")
        assert not data_dir.exists()  # a temporary data dir goes with the broker
    finally:
        close(proc)


def test_jvm_dies_with_a_sigkilled_python(tmp_path: Path, wait_until: Any) -> None:
    script = (
        "import sys\n"
        "from pipeline.devtools.localkafka import LocalKafka\n"
        "k = LocalKafka()\n"
        "k.start()\n"
        "print(k.pid, k.data_dir, flush=True)\n"
        "sys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    data_dir = ""
    try:
        out = lines(proc.stdout)  # type: ignore[arg-type]
        try:
            pid_text, data_dir = out.get(timeout=90).split()
        except queue.Empty:
            pytest.fail("the broker did not start within 90s")
        jvm = int(pid_text)
        assert not pid_gone(jvm)
        proc.kill()  # no atexit, no finally: only the kernel's parent-death signal is left
        proc.wait(timeout=10)
        wait_until(lambda: pid_gone(jvm), timeout=10, what="the orphaned JVM to be killed")
    finally:
        close(proc)
        # The temporary data dir could not be cleaned by the killed process.
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
