"""The README's run command end to end, and the dashboard in a real headless Chromium.

`demo` runs as the user runs it: a subprocess with nothing configured, its own Kafka broker,
simulator, ingress, worker and sink; it must exit 0 with a summary and leave no process behind.
The dashboard test brings the same stack up on the session broker with TWO workers, pushes
traffic through it (a 5 s receipt timeout and a fifth of the receipts dropped, so some become
overdue), and opens the page of each worker: each must show the totals of both (every message
requested, and the same requested/delivered/overdue counts as the sums of the latest windows on
`metrics.sms`), its uPlot charts must have drawn non-zero data with distinct y-axis labels, and
the console must stay free of errors. The screenshots are kept as artifacts
(test-artifacts/dashboard.png, dashboard-2.png).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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
MESSAGES = 300
PARTITIONS = 3
TOTALS = ("requested", "delivered", "overdue")  # dashboard KPI name = window field, or:
KPI_NAMES = {"overdue": "overdue receipts"}


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    settings = load_settings(kafka_bootstrap_servers=kafka_bootstrap)
    run_dir = tmp_path_factory.mktemp("stack") / f"dash{int(time.time())}"
    options = StackOptions(
        run_dir=run_dir,
        partitions=PARTITIONS,
        simulator_args=("--drop-status-rate", "0.2"),
        workers=2,
    )
    saved = os.environ.get("DELIVERY_RECEIPT_TIMEOUT_SECONDS")
    os.environ["DELIVERY_RECEIPT_TIMEOUT_SECONDS"] = RECEIPT_TIMEOUT  # the stack's workers read it
    try:
        with run_stack(settings, options) as running:
            with SendRequestPublisher(running.bootstrap, prefix=running.prefix) as pub:
                for request in demo_requests(MESSAGES, seed=11, clock=lambda: datetime.now(UTC)):
                    pub.publish(request)
            yield running
    finally:
        if saved is None:
            os.environ.pop("DELIVERY_RECEIPT_TIMEOUT_SECONDS", None)
        else:
            os.environ["DELIVERY_RECEIPT_TIMEOUT_SECONDS"] = saved


def topic_totals(stack: Stack) -> dict[str, int]:
    """Sums over the latest record of every 1-minute window of all logins on `metrics.sms`."""
    from pipeline.kafka.readers import read_partition_since
    from pipeline.records import SmsMetricsWindow
    from pipeline.serde import codec_for

    topic = f"{stack.prefix}metrics.sms"
    codec = codec_for(load_settings(kafka_bootstrap_servers=stack.bootstrap))
    since = datetime.now(UTC) - timedelta(hours=2)

    async def read() -> dict[bytes, object]:
        latest: dict[bytes, object] = {}
        for partition in range(PARTITIONS):
            for r in await read_partition_since(stack.client.aiokafka(), topic, partition, since):
                if r.key is not None:
                    latest[r.key] = None if r.value is None else codec.decode(r.value)
        return latest

    # in a thread of its own: Playwright's sync API keeps an event loop in this one
    with ThreadPoolExecutor(1) as pool:
        latest = pool.submit(asyncio.run, read()).result(timeout=60)
    windows = [w for w in latest.values() if isinstance(w, SmsMetricsWindow) and w.window == "1m"]
    return {name: sum(getattr(w, name) for w in windows if w.login == "*") for name in TOTALS}


KPIS_JS = """() => Object.fromEntries([...document.querySelectorAll('#kpis .kpi')].map(
    k => [k.querySelector('span').textContent, k.querySelector('b').textContent]))"""


def page_totals(page: Any) -> dict[str, int]:
    """The dashboard's KPIs (totals over its windows) of TOTALS, as numbers."""
    kpis: dict[str, str] = page.evaluate(KPIS_JS)
    return {
        name: int(re.sub(r"[^0-9]", "", kpis.get(KPI_NAMES.get(name, name), "")) or -1)
        for name in TOTALS
    }


def test_dashboard_of_either_worker_shows_both_workers_totals_in_chromium(stack: Stack) -> None:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (make system installs it)")
    from playwright.sync_api import sync_playwright

    assert len(stack.worker_urls) == 2
    ARTIFACTS.mkdir(exist_ok=True)
    errors: list[str] = []
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
            pages = []
            for number, url in enumerate(stack.worker_urls, 1):
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.on(
                    "console",
                    lambda m, n=number: (
                        errors.append(f"page {n}: {m.text}") if m.type == "error" else None
                    ),
                )
                page.on("pageerror", lambda e, n=number: errors.append(f"page {n}: {e}"))
                page.goto(f"{url}/")
                pages.append(page)
            for page in pages:
                for chart in ("flow", "latency", "overdue"):
                    page.wait_for_function(
                        f"Number(document.getElementById('{chart}').dataset.points || 0) > 0",
                        timeout=90_000,
                    )
            # every page converges on the topic's totals: both workers' windows, every message
            deadline = time.monotonic() + 90
            while True:
                expected = topic_totals(stack)
                seen = [page_totals(page) for page in pages]
                if expected["requested"] == MESSAGES and all(s == expected for s in seen):
                    break
                assert time.monotonic() < deadline, (expected, seen)
                pages[0].wait_for_timeout(1000)
            canvases = [
                {chart: page.locator(f"#{chart} .uplot canvas").count() for chart in CHARTS}
                for page in pages
            ]
            ticks = [
                {
                    chart: json.loads(page.get_attribute(f"#{chart}", "data-ticks") or "[]")
                    for chart in CHARTS
                }
                for page in pages
            ]
            rejections = [int(page.get_attribute("#codes", "data-points") or 0) for page in pages]
            pages[0].screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            pages[1].screenshot(path=str(ARTIFACTS / "dashboard-2.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert expected["delivered"] > 0 and expected["overdue"] > 0, expected
    assert sum(rejections) > 0  # per worker: its share of the send results (#007 invalid numbers)
    for drawn in canvases:
        assert all(count >= 1 for count in drawn.values()), drawn  # uPlot drew every chart
    for page_ticks in ticks:
        for chart, labels in page_ticks.items():  # top to bottom: "2, 1, 0", never "2, 2, 1, 1"
            assert len(labels) >= 2 and len(set(labels)) == len(labels), (chart, labels)
            assert labels[-1] == "0", (chart, labels)
