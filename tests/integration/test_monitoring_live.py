"""The monitoring the chart ships, against the running stack and a real Prometheus.

The whole stack (simulator, ingress, worker, sink) on a broker of the test's own, with traffic:
every metric the chart's alert rules and Grafana dashboard name is served by the live /metrics
of the ingress, the worker or the sink, and the sink answers its three endpoints. Then Debian's
Prometheus scrapes the three with the labels the chart's PodMonitor gives them and evaluates the
chart's rendered rules: with the broker stopped and no callback arriving, the
broker-unreachable alert's expression returns a series within 60 s (the ingress's gauge follows
a periodic probe, not only failed publishes).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest
import yaml

from pipeline.devtools.localkafka import LocalKafka
from pipeline.devtools.stack.stack import Stack, StackOptions, run_stack
from pipeline.devtools.stack.traffic import demo_requests
from pipeline.kafka.send_requests import SendRequestPublisher
from pipeline.procutil import free_port
from pipeline.settings import load_settings
from tests.unit.test_alert_rules import NAMESPACE, SELECTOR, metric_families_used, render

pytestmark = pytest.mark.integration

_TYPE = re.compile(r"^# TYPE (\S+) (\S+)$", re.MULTILINE)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", re.MULTILINE)
BROKER_ALERT = "ArdaryIngressBrokerUnreachable"


def served(text: str) -> set[str]:
    """Every name a scrape declares: families (`# TYPE`), counters' `_total`, and samples."""
    names = set(_SAMPLE.findall(text))
    for family, kind in _TYPE.findall(text):
        names.add(family)
        if kind == "counter":
            names.add(f"{family}_total")
    return names


def _targets(stack: Stack) -> dict[str, str]:
    ingress = stack.ingress_url.split("/callbacks", 1)[0]
    return {"ingress": ingress, "worker": stack.worker_url, "sink": stack.sink_url}


def _status(url: str) -> int:
    """The status of a GET (0: no answer yet)."""
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return 0


def _scrape(url: str) -> str:
    answer = httpx.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200, (url, answer.status_code)
    return answer.text


def _rules_file(path: Path) -> dict[str, str]:
    """The chart's PrometheusRule rendered (the flag on), as a Prometheus rules file; the
    expression of each alert."""
    done = render("metrics.prometheusRule.enabled=true")
    if done.returncode != 0:
        pytest.fail(done.stderr)
    (rule,) = [d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "PrometheusRule"]
    groups = rule["spec"]["groups"]
    path.write_text(yaml.safe_dump({"groups": groups}), encoding="utf-8")
    return {r["alert"]: r["expr"] for g in groups for r in g["rules"] if "alert" in r}


def _prometheus(directory: Path, targets: dict[str, str], rules: Path) -> tuple[Any, str]:
    """Debian's Prometheus scraping `targets` every second with the PodMonitor's labels."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus not installed (make setup installs Debian's prometheus package)")
    jobs = [
        {
            "job_name": name,
            "scrape_interval": "1s",
            "static_configs": [
                {
                    "targets": [url.removeprefix("http://")],
                    "labels": {**SELECTOR, "component": name},
                }
            ],
            "honor_labels": True,
        }
        for name, url in targets.items()
    ]
    # the rules select `job="<ns>/<release>-ardary"`: the PodMonitor's job, set per target here
    for job in jobs:
        job["relabel_configs"] = [{"target_label": "job", "replacement": SELECTOR["job"]}]
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": jobs,
    }
    (directory / "prometheus.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log = (directory / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return proc, f"http://127.0.0.1:{port}"


def _query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    url = f"{prometheus}/api/v1/query?query={urllib.parse.quote(expr)}"
    try:
        answer = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return []
    if answer.status_code != 200:
        return []
    result: list[dict[str, Any]] = json.loads(answer.text)["data"]["result"]
    return result


def test_the_charts_rules_and_dashboard_match_what_the_stack_serves(
    local_kafka_factory: Callable[..., LocalKafka],
    tmp_path: Path,
    wait_until: Callable[..., Any],
) -> None:
    broker = local_kafka_factory()
    bootstrap = broker.start()
    settings = load_settings(
        kafka_bootstrap_servers=bootstrap, pipeline_topic_prefix=f"t{uuid4().hex[:8]}."
    )
    options = StackOptions(run_dir=tmp_path / "run", rate_per_second=50)
    with run_stack(settings, options) as stack:
        requests = list(demo_requests(20, seed=3, clock=lambda: datetime.now(UTC)))
        with SendRequestPublisher(stack.client, prefix=stack.prefix) as publisher:
            publisher.publish_many(requests)
        targets = _targets(stack)

        def sent() -> bool:
            stack.processes.check_alive()
            return "ardary_api_request_seconds_count{" in _scrape(stack.worker_url)

        wait_until(sent, 120, "the worker's first Ardary calls")

        # the sink's three endpoints
        for path in ("/healthz", "/readyz"):
            wait_until(
                lambda p=path: _status(f"{stack.sink_url}{p}") == 200,
                60,
                f"the sink's {path}",
            )

        names: set[str] = set()
        for url in targets.values():
            names |= served(_scrape(url))
        missing = sorted(metric_families_used() - names)
        assert missing == [], (
            f"named by the chart's rules or dashboard, served by nobody: {missing}"
        )

        # a real Prometheus with the chart's rules: the broker alert fires without traffic
        rules = tmp_path / "rules.yml"
        alerts = _rules_file(rules)
        assert BROKER_ALERT in alerts
        proc, prometheus = _prometheus(tmp_path, targets, rules)
        try:
            up = f'ardary_ingress_broker_up{{namespace="{NAMESPACE}"}} == 1'
            wait_until(lambda: _query(prometheus, up), 60, "Prometheus scraping the ingress")
            assert _query(prometheus, alerts[BROKER_ALERT]) == []  # silent while it is up
            broker.stop()
            wait_until(
                lambda: _query(prometheus, alerts[BROKER_ALERT]),
                60,
                f"{BROKER_ALERT}'s expression to return a series with the broker stopped",
                interval=1.0,
            )
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
