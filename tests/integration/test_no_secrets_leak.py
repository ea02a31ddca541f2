"""After a stack run, no secret is anywhere it could be read: logs, topics, warehouse, dead letters.

The demo's stack (simulator, ingress, worker, sink; `run_stack`) runs on the session broker with
every secret it takes set: the Ardary access keys, the callback token, the warehouse PII key
(`WAREHOUSE_PII=hash`). Send requests flow through it, the simulator calls back, one hostile
callback is dead-lettered; then every file of the run directory (the processes' logs, the DuckDB
warehouse and its WAL, the worker's RocksDB state, the ingress spool) and every record of every
topic of the run (key, value, headers) is searched for each secret, as bytes. The SASL password
is not covered here (the session broker is plaintext): tests/integration/test_secured_cluster.py
runs the secured cluster.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from pipeline.devtools.stack.stack import StackOptions, run_stack, wait_sink_caught_up
from pipeline.devtools.stack.traffic import DEMO_ACCOUNTS, demo_requests
from pipeline.kafka.send_requests import SendRequestPublisher
from pipeline.settings import load_settings
from tests.kafka_read import read_topic
from tests.polling import wait_until

pytestmark = pytest.mark.integration


def _topic_bytes(bootstrap: str, fragment: str) -> dict[str, bytes]:
    """Every topic whose name holds `fragment`: its records' keys, values and headers, joined."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        names = sorted(t for t in consumer.topics() if fragment in t)
    finally:
        consumer.close()
    found: dict[str, bytes] = {}
    for name in names:
        parts: list[bytes] = []
        for record in read_topic(bootstrap, name, timeout=60):
            parts += [record.key or b"", record.value or b""]
            parts += [k.encode() + (v or b"") for k, v in record.headers or ()]
        found[name] = b"\n".join(parts)
    return found


def test_no_secret_in_logs_topics_warehouse_or_dead_letters(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pii_key = f"pii-{secrets.token_hex(16)}"
    monkeypatch.setenv("WAREHOUSE_PII", "hash")
    monkeypatch.setenv("WAREHOUSE_PII_KEY", pii_key)
    settings = load_settings(kafka_bootstrap_servers=kafka_bootstrap)
    run_dir = tmp_path / f"secrets{int(time.time())}"
    with run_stack(settings, StackOptions(run_dir=run_dir, delivery_delay_ms=100)) as stack:
        token = stack.processes.env["PIPELINE_CALLBACK_TOKEN"]
        with SendRequestPublisher(stack.bootstrap, prefix=stack.prefix) as pub:
            for request in demo_requests(60, seed=5, clock=lambda: datetime.now(UTC)):
                pub.publish(request)
        status_topic = f"{stack.prefix}callbacks.status"
        wait_until(
            lambda: (
                stack.processes.check_alive()
                or len(read_topic(stack.bootstrap, status_topic)) >= 40
            ),
            180,
            "the simulator's status callbacks in Kafka",
            interval=1.0,
        )
        hostile = httpx.get(
            stack.ingress_url.replace("<token>", token) + "?status=%7Bnot-json", timeout=10
        )
        assert hostile.status_code == 400  # dead-lettered
        wait_sink_caught_up(stack, timeout=120)
        topics = _topic_bytes(stack.bootstrap, run_dir.name)
    secrets_by_name = {
        "callback token": token,
        "warehouse PII key": pii_key,
        **{f"access key of {login}": key for login, key in DEMO_ACCOUNTS.items()},
    }
    assert any(name.endswith("callbacks.dead-letter") and data for name, data in topics.items())
    assert (run_dir / "warehouse.duckdb").stat().st_size > 0
    files = {
        str(path.relative_to(run_dir)): path.read_bytes()
        for path in run_dir.rglob("*")
        if path.is_file() and "kafka" not in path.relative_to(run_dir).parts
    }
    assert any(name.endswith(".log") for name in files)
    leaks = [
        f"{what} in {where}"
        for what, secret in secrets_by_name.items()
        for where, data in {**files, **{f"topic {t}": d for t, d in topics.items()}}.items()
        if secret.encode() in data
    ]
    assert leaks == []
