"""The chart's alerts: rendered only when asked, valid for Prometheus (`promtool check rules`),
firing on broken series and silent on healthy ones (`promtool test rules` with
deploy/monitoring/alerts.test.yaml), each with its runbook in docs/operations.md, and naming only
metrics the pipeline serves.

`metric_names_used()` lists every ardary_ series the rules and the dashboard name, for a test
against a running stack (is each one served?).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.test_helm_chart import CHART, ROOT, helm_binary

MONITORING = ROOT / "deploy" / "monitoring"
UNIT_TESTS = MONITORING / "alerts.test.yaml"
RULES_TEMPLATE = CHART / "templates" / "prometheusrule.yaml"
DASHBOARD = CHART / "dashboards" / "ardary-pipeline.json"
OPERATIONS = ROOT / "docs" / "operations.md"
# the release the unit tests' series belong to (job = "<namespace>/<release>-ardary")
RELEASE, NAMESPACE = "demo", "ardary"
SELECTOR = {"namespace": NAMESPACE, "job": f"{NAMESPACE}/{RELEASE}-ardary"}

# -- the metrics the pipeline serves (docs: the issue-29 metrics contract) -------------------------

# family → the labels its process puts on it (the PodMonitor adds TARGET_LABELS)
KNOWN_METRICS: dict[str, frozenset[str]] = {
    name: frozenset(labels)
    for name, labels in {
        # ingress, pipeline/ingress/metrics.py (port 8080)
        "ardary_ingress_requests_total": ("kind", "code"),
        "ardary_ingress_records_published_total": ("kind",),
        "ardary_ingress_dead_letters_total": ("reason",),
        "ardary_ingress_publish_seconds": (),
        "ardary_ingress_in_flight": (),
        "ardary_ingress_broker_up": (),
        "ardary_ingress_spool_records": (),
        "ardary_ingress_spool_bytes": (),
        "ardary_ingress_spool_oldest_age_seconds": (),
        "ardary_ingress_spool_forwarded_records_total": (),
        "ardary_kafka_produce_ack_seconds": ("process",),  # ingress and worker
        # worker, pipeline/agents/ (port 6066)
        "ardary_agent_up": ("agent",),
        "ardary_agent_last_batch_timestamp_seconds": ("agent",),
        "ardary_agent_events_processed_total": ("agent",),
        "ardary_agent_events_skipped_total": ("agent", "reason"),
        "ardary_agent_records_emitted_total": ("agent",),
        "ardary_consumer_lag": ("agent", "topic", "partition"),
        "ardary_outbound_results_total": ("outcome",),
        "ardary_outbound_batches_total": (),
        "ardary_outbound_rate_share": (),
        "ardary_outbound_in_flight": (),
        "ardary_outbound_buffered": (),
        "ardary_send_result_codes_total": ("code",),
        "ardary_sms_window": ("window", "login", "field"),
        "ardary_worker_broker_up": (),
        "ardary_api_request_seconds": ("endpoint", "outcome"),
        "ardary_consumer_lag_records": ("group", "topic"),  # worker and sink
        "ardary_consumer_lag_seconds": ("group", "topic"),  # worker and sink
        "ardary_outbound_breaker_open": ("login",),
        "ardary_outbound_backlog": ("login",),
        "ardary_lifecycles_overdue_total": (),
        # sink, pipeline/sinks/ (port 8082)
        "ardary_sink_rows_written_total": ("table",),
        "ardary_sink_flush_seconds": (),
        "ardary_sink_last_commit_age_seconds": (),
        "ardary_sink_lag": ("topic", "partition"),
        "ardary_sink_ready": (),
    }.items()
}
HISTOGRAMS = frozenset(
    {
        "ardary_ingress_publish_seconds",
        "ardary_kafka_produce_ack_seconds",
        "ardary_api_request_seconds",
        "ardary_sink_flush_seconds",
    }
)
# added for issue 29 while these files were written: not necessarily in the source yet
NEW_METRICS = frozenset(
    {
        "ardary_kafka_produce_ack_seconds",
        "ardary_worker_broker_up",
        "ardary_api_request_seconds",
        "ardary_consumer_lag_records",
        "ardary_consumer_lag_seconds",
        "ardary_outbound_breaker_open",
        "ardary_outbound_backlog",
        "ardary_lifecycles_overdue_total",
        "ardary_sink_rows_written_total",
        "ardary_sink_flush_seconds",
        "ardary_sink_last_commit_age_seconds",
        "ardary_sink_lag",
        "ardary_sink_ready",
    }
)
# what the PodMonitor puts on every series (component: its relabeling)
TARGET_LABELS = frozenset(
    {"namespace", "job", "pod", "container", "endpoint", "instance", "component"}
)

_NAME = re.compile(r"\bardary_[a-z0-9_]+\b")


def metric_names_used() -> frozenset[str]:
    """Every ardary_ series name the alert rules (their expressions and texts) and the dashboard
    use, as queried: a histogram appears as its `_bucket`/`_count` series, a counter with
    `_total`. Read from the chart's files, so no helm is needed; `metric_families_used()` maps
    them to the names a process declares."""
    text = RULES_TEMPLATE.read_text(encoding="utf-8") + DASHBOARD.read_text(encoding="utf-8")
    return frozenset(_NAME.findall(text))


def family(name: str) -> str:
    """The metric family of a series name (`…_seconds_bucket` → `…_seconds` for a histogram)."""
    for suffix in ("_bucket", "_count", "_sum"):
        if name.endswith(suffix) and name.removesuffix(suffix) in HISTOGRAMS:
            return name.removesuffix(suffix)
    return name


def metric_families_used() -> frozenset[str]:
    return frozenset(family(n) for n in metric_names_used())


# -- rendering and promtool ----------------------------------------------------------------------


def promtool_binary() -> str:
    found = os.environ.get("ARDARY_PROMTOOL") or shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (make setup installs Debian's prometheus package)")
    return found


def render(*sets: str) -> subprocess.CompletedProcess[str]:
    args = [helm_binary(), "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


def rendered(*sets: str) -> list[dict[str, Any]]:
    done = render(*sets)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def rule_groups(*sets: str) -> list[dict[str, Any]]:
    """The PrometheusRule's spec.groups, rendered with the flag on (and `sets`)."""
    rules = [
        d
        for d in rendered("metrics.prometheusRule.enabled=true", *sets)
        if d["kind"] == "PrometheusRule"
    ]
    assert len(rules) == 1
    groups: list[dict[str, Any]] = rules[0]["spec"]["groups"]
    return groups


def alerts(*sets: str) -> list[dict[str, Any]]:
    return [rule for group in rule_groups(*sets) for rule in group["rules"]]


def write_rules(path: Path, groups: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    return path


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool_binary(), *args], capture_output=True, text=True, timeout=120, check=False
    )


# -- the tests -----------------------------------------------------------------------------------


def test_the_rules_render_only_with_their_flag() -> None:
    assert not [d for d in rendered() if d["kind"] == "PrometheusRule"]
    assert not [
        d for d in rendered("metrics.podMonitor.enabled=true") if d["kind"] == "PrometheusRule"
    ]
    docs = rendered(
        "metrics.prometheusRule.enabled=true", "metrics.prometheusRule.labels.release=kps"
    )
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == f"{RELEASE}-ardary"
    assert rule["metadata"]["labels"]["release"] == "kps"  # what a Prometheus selects rules by


@pytest.mark.parametrize(
    "sets",
    [
        [],
        [
            "metrics.prometheusRule.alerts.consumerLag.perGroup.ardary-warehouse=900",
            "metrics.prometheusRule.alerts.consumerLag.perGroup.ardary\\.workers=60",
            "metrics.prometheusRule.alertLabels.team=sms",
            'metrics.prometheusRule.selector=cluster="eu"\\, namespace="sms"',
        ],
    ],
    ids=["defaults", "overrides"],
)
def test_the_rules_pass_promtool_check(tmp_path: Path, sets: list[str]) -> None:
    rules = write_rules(tmp_path / "rules.yaml", rule_groups(*sets))
    done = promtool("check", "rules", str(rules))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_overrides_reach_the_expressions() -> None:
    by_name = {
        a["alert"]: a
        for a in alerts(
            "metrics.prometheusRule.alerts.consumerLag.perGroup.ardary-warehouse=900",
            "metrics.prometheusRule.alertLabels.team=sms",
            'metrics.prometheusRule.selector=cluster="eu"',
            "metrics.prometheusRule.alerts.spoolNotDraining.minutes=3",
            "metrics.prometheusRule.alerts.ingressBrokerUnreachable.for=45s",
        )
    }
    lag = by_name["ArdaryConsumerLagHigh"]["expr"]
    assert 'group="ardary-warehouse"}) > 900' in lag
    assert 'group!="ardary-warehouse"}) > 300' in lag
    assert by_name["ArdaryIngressSpoolNotDraining"]["expr"].endswith("> 180")
    assert by_name["ArdaryIngressBrokerUnreachable"]["for"] == "45s"
    for rule in by_name.values():
        assert rule["labels"]["team"] == "sms"
        assert 'cluster="eu"' in rule["expr"] and "job=" not in rule["expr"]


def test_the_alerts_fire_on_broken_series_and_stay_silent_on_healthy_ones(tmp_path: Path) -> None:
    write_rules(tmp_path / "rules.yaml", rule_groups())
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    done = promtool("test", "rules", str(tmp_path / UNIT_TESTS.name))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    cases = yaml.safe_load(UNIT_TESTS.read_text(encoding="utf-8"))["tests"]
    checks = [c for case in cases for c in case.get("alert_rule_test", [])]
    firing = {c["alertname"] for c in checks if c.get("exp_alerts")}
    silent = {c["alertname"] for c in checks if not c.get("exp_alerts")}
    names = {a["alert"] for a in alerts()}
    assert names - firing == set(), "alerts no unit test sees firing"
    assert names - silent == set(), "alerts no unit test sees silent"
    assert (firing | silent) - names == set(), "unit tests of alerts that do not exist"


def test_the_broker_alert_expression_returns_a_series_as_soon_as_the_gauge_is_0(
    tmp_path: Path,
) -> None:
    """The ingress's probe sets the gauge to 0 within seconds of the broker stopping; the
    expression must say so at that very scrape (the `for` alone sets the delay)."""
    (rule,) = [a for a in alerts() if a["alert"] == "ArdaryIngressBrokerUnreachable"]
    labels = {**SELECTOR, "component": "ingress", "pod": f"{RELEASE}-ardary-ingress-0"}
    matchers = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    series = f"ardary_ingress_broker_up{{{matchers}}}"
    write_rules(tmp_path / "rules.yaml", rule_groups())
    case = {
        "interval": "10s",
        "input_series": [{"series": series, "values": "1 1 0 0"}],
        "promql_expr_test": [
            {"expr": rule["expr"], "eval_time": "10s", "exp_samples": []},
            {
                "expr": rule["expr"],
                "eval_time": "20s",
                "exp_samples": [{"labels": series, "value": 0}],
            },
        ],
    }
    tests = tmp_path / "expr.test.yaml"
    tests.write_text(
        yaml.safe_dump(
            {"rule_files": ["rules.yaml"], "evaluation_interval": "10s", "tests": [case]}
        ),
        encoding="utf-8",
    )
    done = promtool("test", "rules", str(tests))
    assert done.returncode == 0, done.stdout + done.stderr


def _github_anchor(heading: str) -> str:
    """GitHub's id of a Markdown heading: lower case, punctuation dropped, spaces → hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _section(markdown: str, title: str) -> str:
    start = markdown.index(f"\n## {title}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else len(markdown)]


def test_every_alert_says_what_and_links_its_runbook_in_operations_md() -> None:
    section = _section(OPERATIONS.read_text(encoding="utf-8"), "Alerts and dashboards")
    anchors = {_github_anchor(h) for h in re.findall(r"^#{3,4} (.+)$", section, re.MULTILINE)}
    for rule in alerts():
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = rule["annotations"]
        assert annotations.keys() >= {"summary", "description", "runbook_url"}, name
        assert annotations["summary"] and annotations["description"], name
        url = annotations["runbook_url"]
        assert url == f"docs/operations.md#{name.lower()}", name
        assert name.lower() in anchors, f"docs/operations.md has no heading for {name}"
    # and a published copy of the docs can be named
    custom = alerts("metrics.prometheusRule.runbookBaseUrl=https://docs.example.com/ops.html")
    assert {a["annotations"]["runbook_url"].split("#")[0] for a in custom} == {
        "https://docs.example.com/ops.html"
    }


def test_the_rules_select_this_release_s_series_only() -> None:
    job = f'job="{SELECTOR["job"]}"'
    for rule in alerts():
        selectors = re.findall(r"\b(?:ardary_[a-z0-9_]+|up)\{([^}]*)\}", rule["expr"])
        assert selectors, rule["alert"]
        for matchers in selectors:
            assert f'namespace="{NAMESPACE}"' in matchers and job in matchers, rule["alert"]


def test_every_metric_the_rules_and_the_dashboard_use_is_served() -> None:
    used = metric_families_used()
    assert used - KNOWN_METRICS.keys() == set(), "names no process serves (see the contract)"
    # the series a live test will find: a histogram's buckets and count
    names = metric_names_used()
    assert {"ardary_api_request_seconds_bucket", "ardary_ingress_broker_up"} <= names
    assert not [n for n in names if n.endswith("_created")]


def test_the_known_metrics_that_exist_are_in_the_source() -> None:
    """Guards the list above against typos: every name that predates issue 29 is declared in
    the pipeline (a prometheus_client counter's name may omit `_total`)."""
    source = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "pipeline").rglob("*.py"))
    missing = [
        name
        for name in KNOWN_METRICS.keys() - NEW_METRICS
        if f'"{name.removesuffix("_total")}' not in source
    ]
    assert missing == []
