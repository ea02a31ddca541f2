"""`ardary-pipeline sink --web-port`: /healthz, /readyz and /metrics of a real sink process.

The command runs against the session broker with a DuckDB warehouse; a few records published to
a topic it loads must show in /metrics as rows of their table, and its lag must come back to 0.
A port already taken stops the command with exit code 2 and one line naming the flag.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import records
from pipeline.procutil import free_port
from pipeline.serde import AvroCodec, SchemaStore
from pipeline.topics import record_key
from tests.environ import new_user_env
from tests.polling import wait_until

pytestmark = pytest.mark.integration

N_RECORDS = 25
TABLE = "callbacks_status"


@dataclass
class SinkProcess:
    """The sink command, its web endpoints' base URL and its log (stdout and stderr)."""

    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def alive(self) -> bool:
        if self.proc.poll() is not None:
            output = self.log.read_text(errors="replace")[-3000:]
            raise AssertionError(f"the sink exited {self.proc.returncode}:\n{output}")
        return True

    def status(self, path: str) -> int | None:
        self.alive()
        try:
            return httpx.get(f"{self.base}{path}", timeout=5).status_code
        except httpx.HTTPError:
            return None

    def samples(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"{self.base}/metrics", timeout=5).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


def _command(args: list[str], env: dict[str, str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", *args],
            cwd=cwd,
            env=new_user_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def topic(make_topic: Callable[..., str]) -> str:
    """The topic the records go to, made before the sink starts (so it is assigned at once)."""
    return make_topic("callbacks.status", partitions=2)


@pytest.fixture
def sink_process(
    kafka_bootstrap: str, unique_prefix: str, group_id: str, tmp_path: Path, topic: str
) -> Iterator[SinkProcess]:
    port = free_port()
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PIPELINE_TOPIC_PREFIX": unique_prefix}
    args = ["sink", "--web-port", str(port), "--web-host", "127.0.0.1", "--group", group_id]
    args += ["--url", f"duckdb:///{tmp_path / 'wh.duckdb'}"]
    log = tmp_path / "sink.log"
    proc = _command(args, env, tmp_path, log)
    try:
        yield SinkProcess(proc, f"http://127.0.0.1:{port}", log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _produce(bootstrap: str, topic: str) -> None:
    from kafka import KafkaProducer

    codec = AvroCodec(SchemaStore.load())
    base = datetime.now(UTC) - timedelta(minutes=5)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for i in range(N_RECORDS):
            record = records.StatusCallback(
                f"web-{i:03d}", "+33612345678", "sent", base + timedelta(seconds=i), raw="{}",
                id_sms_api=f"m{i:03d}",
            )  # fmt: skip
            producer.send(topic, codec.encode(record), key=record_key(record))
        producer.flush(timeout=60)
    finally:
        producer.close()


def test_the_sink_serves_health_readiness_and_its_metrics(
    sink_process: SinkProcess, topic: str, kafka_bootstrap: str, group_id: str, tmp_path: Path
) -> None:
    sink = sink_process
    wait_until(lambda: sink.status("/healthz") == 200, 60, "the sink's /healthz")
    wait_until(
        lambda: sink.status("/readyz") == 200, 90, "the sink's /readyz (partitions assigned)"
    )
    ready = httpx.get(f"{sink.base}/readyz", timeout=5).json()
    assert ready == {"status": "ready", "reason": "ok"}

    _produce(kafka_bootstrap, topic)
    lag_labels = [(("partition", str(p)), ("topic", topic)) for p in (0, 1)]
    rows_key = ("ardary_sink_rows_written_total", (("table", TABLE),))

    def written_and_caught_up() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        sink.alive()
        got = sink.samples()
        lags = [got.get(("ardary_sink_lag", labels)) for labels in lag_labels]
        return got if got.get(rows_key) == N_RECORDS and lags == [0, 0] else None

    got = wait_until(written_and_caught_up, 60, f"{N_RECORDS} rows written and a lag of 0")
    group_topic = (("group", group_id), ("topic", topic))
    assert got[("ardary_consumer_lag_records", group_topic)] == 0
    assert got[("ardary_consumer_lag_seconds", group_topic)] == 0
    assert got[("ardary_sink_flush_seconds_count", ())] >= 1
    assert got[("ardary_sink_last_commit_age_seconds", ())] < 60
    assert got[("ardary_sink_ready", ())] == 1

    sink.proc.send_signal(signal.SIGTERM)
    assert sink.proc.wait(60) == 0, sink.log.read_text(errors="replace")[-3000:]
    assert "Traceback" not in sink.log.read_text(errors="replace")
    import duckdb

    conn = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        assert conn.execute(f"SELECT count(*) FROM {TABLE}").fetchall() == [(N_RECORDS,)]
    finally:
        conn.close()


def test_a_web_port_in_use_is_exit_code_2_and_one_line(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {"KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PIPELINE_TOPIC_PREFIX": unique_prefix}
        args = ["sink", "--web-port", str(port), "--web-host", "127.0.0.1"]
        args += ["--url", f"duckdb:///{tmp_path / 'wh.duckdb'}"]
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", *args],
            cwd=tmp_path,
            env=new_user_env(**env),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip().splitlines() == [
        f"ardary-pipeline: error: --web-port: port {port} on 127.0.0.1 is already in use "
        "(another sink?); choose another with --web-port or SINK_WEB_PORT"
    ]
