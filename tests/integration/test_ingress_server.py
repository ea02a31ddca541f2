"""The shipped command (`ardary-pipeline ingress`, granian) against the real broker."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from pipeline.kafka.admin import ensure_topics
from pipeline.procutil import free_port
from tests.unit.ingress.samples import status_json

pytestmark = pytest.mark.integration

TOKEN = "granian-Token-7"


async def test_cli_serves_callbacks_and_stops_cleanly_on_sigterm(
    kafka_bootstrap: str, unique_prefix: str, wait_until: Callable[..., Any], tmp_path: Path
) -> None:
    await asyncio.to_thread(ensure_topics, kafka_bootstrap, unique_prefix, 2)
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PIPELINE_TOPIC_PREFIX": unique_prefix,
        "PIPELINE_CALLBACK_TOKEN": TOKEN,
        "INGRESS_SPOOL_DIR": str(tmp_path / "spool"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "ingress", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:

            def ready() -> bool:
                try:
                    return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    assert proc.poll() is None, "the ingress exited during start-up"
                    return False

            await asyncio.to_thread(wait_until, ready, 60, "the ingress to be ready", interval=0.2)
            long_sms = "x" * 9000  # a URL past aiohttp's 8 KiB request-line limit
            ok = await client.get(
                f"/callbacks/{TOKEN}?status={quote(status_json(long_sms), safe='')}"
            )
            assert ok.status_code == 200, ok.text
            assert ok.json()["accepted"][0]["topic"] == f"{unique_prefix}callbacks.status"
            big = await client.get(f"/callbacks/{TOKEN}?status={'a' * 17_000}")
            assert big.status_code == 413
            wrong = await client.get("/callbacks/nope?status=x")
            assert wrong.status_code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    logs = (out + err).decode(errors="replace")
    assert TOKEN not in logs
    assert "ingress stopped" in logs  # the lifespan shutdown ran: drained and flushed
