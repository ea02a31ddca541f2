"""The README's run command end to end, and the dashboard in a real headless Chromium.

`demo` runs as the user runs it: a subprocess with nothing configured, its own Kafka broker,
simulator, ingress, worker and sink; it must exit 0 with a summary and leave no process behind.
The dashboard test brings the same stack up on the session broker, pushes traffic through it
(a 5 s receipt timeout and a fifth of the receipts dropped, so some become overdue), and waits
until the page's charts have drawn non-zero data; every chart's y-axis labels, as drawn, must be
distinct. The screenshot is kept as an artifact (test-artifacts/dashboard.png).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.devtools.stack.stack import Stack, StackOptions, run_stack
from pipeline.devtools.stack.traffic import demo_requests
from pipeline.kafka.send_requests import SendRequestPublisher
from pipeline.settings import load_settings

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"


def processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline and str(os.getpid()) != pid:
            found.append(f"{pid}: {cmdline[:120]}")
    return found


def test_demo_command_finishes_with_a_summary_and_leaves_nothing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    runs = tmp_path / "runs"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "demo", "--messages", "200", "--runs-dir", str(runs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "Demo summary — 200 messages" in out
    assert "delivered" in out and "time to deliver p95" in out
    assert "demo finished in" in out
    (run_dir,) = list(runs.iterdir())
    assert (run_dir / "warehouse.duckdb").is_file()
    assert processes_mentioning(str(run_dir)) == []  # no child and no JVM left behind


RECEIPT_TIMEOUT = "5"  # seconds: the dropped receipts turn overdue while the test watches
CHARTS = ("flow", "latency", "codes", "care", "overdue")


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = load_settings(kafka_bootstrap_servers=kafka_bootstrap)
    run_dir = tmp_path_factory.mktemp("stack") / f"dash{int(time.time())}"
    options = StackOptions(run_dir=run_dir, simulator_args=("--drop-status-rate", "0.2"))
    saved = os.environ.get("DELIVERY_RECEIPT_TIMEOUT_SECONDS")
    os.environ["DELIVERY_RECEIPT_TIMEOUT_SECONDS"] = RECEIPT_TIMEOUT  # the stack's worker reads it
    try:
        with run_stack(settings, options) as running:
            with SendRequestPublisher(running.bootstrap, prefix=running.prefix) as pub:
                for request in demo_requests(300, seed=11, clock=lambda: datetime.now(UTC)):
                    pub.publish(request)
            yield running
    finally:
        if saved is None:
            os.environ.pop("DELIVERY_RECEIPT_TIMEOUT_SECONDS", None)
        else:
            os.environ["DELIVERY_RECEIPT_TIMEOUT_SECONDS"] = saved


def test_dashboard_draws_live_data_in_chromium(stack: Stack) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make system installs it)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{stack.worker_url}/")
            for chart in ("flow", "latency", "codes", "overdue"):
                page.wait_for_function(
                    f"Number(document.getElementById('{chart}').dataset.points || 0) > 0",
                    timeout=90_000,
                )
            kpi = page.inner_text("#kpis")
            ticks = {
                chart: json.loads(page.get_attribute(f"#{chart}", "data-ticks") or "[]")
                for chart in CHARTS
            }
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        finally:
            browser.close()
    lines = kpi.split("\n")
    for name in ("delivered", "overdue receipts"):
        assert name in lines, kpi
        assert int(lines[lines.index(name) - 1].replace(",", "").replace("\u202f", "")) > 0, kpi
    for chart, labels in ticks.items():  # as drawn, top to bottom: "2, 1, 0", never "2, 2, 1, 1"
        assert len(labels) >= 2 and len(set(labels)) == len(labels), (chart, labels)
        assert labels[-1] == "0", (chart, labels)
