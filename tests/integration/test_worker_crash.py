"""An agent that raises takes the worker process down with a non-zero exit (no silent restart)."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from pipeline.agents.correlate import CRASH_ENV
from pipeline.kafka.admin import ensure_topics
from pipeline.records import SendRequest
from tests.agents.streamdata import produce
from tests.worker_process import WorkerProcess

pytestmark = pytest.mark.integration


async def test_agent_exception_exits_process(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"t{uuid4().hex[:8]}."
    ensure_topics(kafka_bootstrap, prefix, 2)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PIPELINE_TOPIC_PREFIX": prefix,
        "PIPELINE_PARTITIONS": "2",
        CRASH_ENV: "boom-1",
    }
    worker = WorkerProcess(env, "correlate,optouts", tmp_path, store="memory://").start()
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            health = await client.get(f"http://127.0.0.1:{worker.web_port}/healthz")
        assert health.status_code == 200
        assert worker.proc is not None and worker.proc.poll() is None

        def request(mid: str) -> SendRequest:
            return SendRequest(mid, "alice", "+33612345678", "hi", datetime.now(UTC))

        await produce(kafka_bootstrap, prefix, [request("fine-1"), request("boom-1")])
        try:
            code = worker.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"worker still running after the agent raised:\n{worker.log_tail()}")
        assert code != 0
        assert "agent correlate crashed" in worker.log_path.read_text(errors="replace")
    finally:
        worker.stop()
