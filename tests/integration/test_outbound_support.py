"""Helpers of the outbound integration tests: a simulator subprocess, publish, read results.

(No tests here; the name keeps the file inside the outbound tests' naming.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from pipeline.records import Record, SendRequest
from pipeline.serde import make_codec
from pipeline.topics import record_key
from tests.polling import wait_until as wait_for
from tests.worker_process import free_port

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaProducer

LOGIN = "acme"
KEY = "k-acme-secret"
ACCOUNTS = {LOGIN: KEY, "other": KEY, "inactive": {"key": KEY, "active": False}}
CODEC = make_codec(None)


class SimulatorProcess:
    """`ardary-pipeline simulator` in a subprocess, controlled over its /_sim routes."""

    def __init__(self, log_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.base_url = f"{self.url}/api"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"simulator-{self.port}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pipeline",
                    "simulator",
                    "--port",
                    str(self.port),
                    "--accounts",
                    json.dumps(ACCOUNTS),
                    *args,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(self._up, 30, "simulator up")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"simulator exited: {self.log_path.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/_sim/stats", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def configure(self, **changes: Any) -> None:
        httpx.post(f"{self.url}/_sim/config", json=changes, timeout=5).raise_for_status()

    def stop_list(self, numbers: list[str]) -> None:
        httpx.post(f"{self.url}/_sim/stop-list", json={"numbers": numbers}, timeout=5)

    def ledger(self) -> dict[str, dict[str, Any]]:
        body = httpx.get(f"{self.url}/_sim/ledger", timeout=10).json()
        return {m["id_sms_api"]: m for m in body["messages"]}

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.url}/_sim/stats", timeout=10).json()
        return result

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def worker_env(bootstrap: str, prefix: str, sim: SimulatorProcess, **extra: str) -> dict[str, str]:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PIPELINE_TOPIC_PREFIX": prefix,
        "ARDARY_BASE_URL": sim.base_url,
        "ARDARY_ACCESS_KEYS": json.dumps({LOGIN: KEY, "other": KEY, "inactive": KEY}),
        "ARDARY_MODE": "prod",
        "OUTBOUND_RATE_PER_SECOND": "1000",
        "PIPELINE_PARTITIONS": "4",
    }
    env.update(extra)
    env.pop("ARDARY_ACCESS_KEY", None)
    return env


def request(id_sms_api: str, phone: str = "+33612345678", **fields: Any) -> SendRequest:
    values: dict[str, Any] = {
        "id_sms_api": id_sms_api,
        "login": LOGIN,
        "phone_number": phone,
        "message": "Hello from the test",
        "requested_at": datetime.now(UTC),
    }
    values.update(fields)
    return SendRequest(**values)


def publish(bootstrap: str, topic: str, records: Iterable[Record]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for record in records:
            producer.send(topic, key=record_key(record), value=CODEC.encode(record))
        producer.flush(30)
    finally:
        producer.close()


def clean_env() -> None:
    """Nothing from the developer's environment leaks into workers."""
    for name in ("ARDARY_ACCESS_KEY", "ARDARY_LOGIN"):
        os.environ.pop(name, None)
