"""The chart's monitoring: a PodMonitor, the PrometheusRule and a Grafana dashboard, each behind
its own flag and off by default; what they render is valid (Kubernetes' schemas for the
ConfigMap, the operator's field names for its two kinds), the PodMonitor finds every process's
/metrics, and the dashboard's queries parse and name only served metrics, by the labels they
carry."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.unit.test_alert_rules import (
    CHART,
    DASHBOARD,
    HISTOGRAMS,
    KNOWN_METRICS,
    MONITORING,
    TARGET_LABELS,
    family,
    helm_binary,
    promtool,
    rendered,
    write_rules,
)

FLAGS = {
    "PodMonitor": "metrics.podMonitor.enabled=true",
    "PrometheusRule": "metrics.prometheusRule.enabled=true",
    "ConfigMap": "metrics.grafanaDashboard.enabled=true",
}
ALL_ON = list(FLAGS.values())
K8S_VERSION = "1.33.0"

Doc = dict[str, Any]


def _monitoring(docs: list[Doc]) -> list[Doc]:
    """The monitoring objects among `docs`."""
    return [
        d
        for d in docs
        if d["kind"] in ("PodMonitor", "PrometheusRule")
        or d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"
    ]


def test_no_monitoring_object_renders_by_default() -> None:
    assert _monitoring(rendered()) == []


@pytest.mark.parametrize("kind", sorted(FLAGS))
def test_each_flag_renders_its_object_alone(kind: str) -> None:
    found = _monitoring(rendered(FLAGS[kind]))
    assert [d["kind"] for d in found] == [kind]


def test_helm_lint_with_every_flag_on() -> None:
    args = [helm_binary(), "lint", "--strict", str(CHART)]
    for flag in ALL_ON:
        args += ["--set", flag]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


# -- validation ----------------------------------------------------------------------------------

_DURATION = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h|d|w|y))+$"}
_LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
_LABEL_NAME = {"type": "string", "pattern": "^[a-zA-Z_][a-zA-Z0-9_]*$"}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": {"type": "string"}, "labels": _LABELS, "annotations": _LABELS},
}
_RELABEL = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "sourceLabels": {"type": "array", "items": _LABEL_NAME},
        "separator": {"type": "string"},
        "targetLabel": _LABEL_NAME,
        "regex": {"type": "string"},
        "modulus": {"type": "integer"},
        "replacement": {"type": "string"},
        "action": {"enum": ["replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep"]},
    },
}
_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": _LABELS,
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}


def _kind(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": spec,
        },
    }


# The fields of the Prometheus operator's v1 kinds that the chart may use (names from its API
# reference); additionalProperties: false makes a misspelt field fail here, as the API server's
# structural schema would prune it silently.
OPERATOR_SCHEMAS = {
    "PodMonitor": _kind(
        "PodMonitor",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "podMetricsEndpoints"],
            "properties": {
                "jobLabel": {"type": "string"},
                "podTargetLabels": {"type": "array", "items": {"type": "string"}},
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "selector": _SELECTOR,
                "podMetricsEndpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["port"],
                        "properties": {
                            "port": {"type": "string", "minLength": 1},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https"]},
                            "interval": _DURATION,
                            "scrapeTimeout": _DURATION,
                            "honorLabels": {"type": "boolean"},
                            "relabelings": {"type": "array", "items": _RELABEL},
                            "metricRelabelings": {"type": "array", "items": _RELABEL},
                        },
                    },
                },
            },
        },
    ),
    "PrometheusRule": _kind(
        "PrometheusRule",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "interval": _DURATION,
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["alert", "expr", "labels", "annotations"],
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^Ardary[A-Za-z]+$"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": _DURATION,
                                        "keep_firing_for": _DURATION,
                                        "labels": _LABELS,
                                        "annotations": _LABELS,
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    ),
}


def test_everything_rendered_with_the_flags_on_validates() -> None:
    import jsonschema
    import kubernetes_validate

    docs = rendered(*ALL_ON)
    operator = [d for d in docs if d["kind"] in OPERATOR_SCHEMAS]
    assert sorted(d["kind"] for d in operator) == ["PodMonitor", "PrometheusRule"]
    for doc in docs:
        if doc["kind"] in OPERATOR_SCHEMAS:
            # not a kind of Kubernetes itself: its CRD is the operator's
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            jsonschema.validate(doc, OPERATOR_SCHEMAS[doc["kind"]])
        else:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    # the structural check does refuse a misspelt field
    monitor = next(d for d in operator if d["kind"] == "PodMonitor")
    monitor["spec"]["podMetricEndpoints"] = monitor["spec"].pop("podMetricsEndpoints")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, OPERATOR_SCHEMAS["PodMonitor"])


def test_the_flags_add_objects_and_change_none_of_the_others() -> None:
    def key(d: Doc) -> tuple[str, str]:
        return (d["kind"], d["metadata"]["name"])

    plain = {key(d): d for d in rendered()}
    with_flags = {key(d): d for d in rendered(*ALL_ON)}
    assert plain.keys() <= with_flags.keys()
    for k, doc in plain.items():
        assert with_flags[k] == doc, k


# -- the PodMonitor ------------------------------------------------------------------------------


def _matches(selector: Doc, labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        assert e["operator"] == "In"
        if labels.get(e["key"]) not in e["values"]:
            return False
    return True


def test_the_pod_monitor_scrapes_each_process_on_its_http_port() -> None:
    docs = rendered(FLAGS["PodMonitor"], "metrics.podMonitor.labels.release=kps")
    (monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
    spec = monitor["spec"]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert spec["namespaceSelector"] == {"matchNames": ["ardary"]}
    (endpoint,) = spec["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    # the series' own `endpoint` label (ardary_api_request_seconds) must not be renamed
    assert endpoint["honorLabels"] is True
    assert {
        "sourceLabels": ["__meta_kubernetes_pod_label_app_kubernetes_io_component"],
        "targetLabel": "component",
    } in endpoint["relabelings"]
    assert "component" in TARGET_LABELS
    workloads = {
        d["metadata"]["name"]: d["spec"]["template"]
        for d in docs
        if d["kind"] in ("StatefulSet", "Deployment", "Job")
    }
    scraped = {
        n for n, pod in workloads.items() if _matches(spec["selector"], pod["metadata"]["labels"])
    }
    assert scraped == {"demo-ardary-ingress", "demo-ardary-worker", "demo-ardary-sink"}
    expected_ports = {"demo-ardary-ingress": 8080, "demo-ardary-worker": 6066}
    for name, number in expected_ports.items():
        ports = {
            p["name"]: p["containerPort"] for p in workloads[name]["spec"]["containers"][0]["ports"]
        }
        assert ports.get(endpoint["port"]) == number, name


def test_the_sink_serves_metrics_on_the_port_the_pod_monitor_scrapes() -> None:
    docs = rendered(FLAGS["PodMonitor"])
    (monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
    port = monitor["spec"]["podMetricsEndpoints"][0]["port"]
    sink = next(d for d in docs if d["metadata"]["name"] == "demo-ardary-sink")
    container = sink["spec"]["template"]["spec"]["containers"][0]
    if not container.get("ports"):
        pytest.skip(
            "templates/sink.yaml declares no container port yet (its web port, 8082, comes "
            "with its probes): the PodMonitor expects one named http"
        )
    assert {p["name"]: p["containerPort"] for p in container["ports"]}.get(port) == 8082


# -- the dashboard -------------------------------------------------------------------------------


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ardary_dashboard", MONITORING / "dashboard.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dashboard() -> Doc:
    loaded: Doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def _queries(dashboard: Doc, variables: bool = True) -> list[tuple[str, str, str]]:
    """(panel title, expr, legend) of every query, the variables' label_values() too."""
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((panel["title"], target["expr"], target.get("legendFormat", "")))
    for variable in dashboard["templating"]["list"] if variables else []:
        if variable["type"] == "query":
            inner = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"])
            assert inner, variable["name"]
            found.append((f"${variable['name']}", inner[1], ""))
    return found


# Grafana's variables, as PromQL promtool accepts
_GRAFANA_VARIABLES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "1h",
    "$namespace": "ardary",
    "$job": ".+",
    "$login": ".*",
}


def _as_promql(expr: str) -> str:
    for variable, value in _GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, expr
    return expr


def test_the_dashboard_file_is_what_its_generator_writes() -> None:
    assert DASHBOARD.read_text(encoding="utf-8") == _generator().render(), (
        "run: python deploy/monitoring/dashboard.py"
    )


def test_the_dashboard_configmap_holds_the_file() -> None:
    docs = rendered(FLAGS["ConfigMap"], "metrics.grafanaDashboard.annotations.grafana_folder=SMS")
    (config,) = _monitoring(docs)
    assert config["metadata"]["name"] == "demo-ardary-dashboard"
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config["metadata"]["annotations"] == {"grafana_folder": "SMS"}
    assert json.loads(config["data"]["ardary-pipeline.json"]) == _dashboard()


def test_every_dashboard_query_parses(tmp_path: Path) -> None:
    queries = _queries(_dashboard())
    rules = [
        {"record": f"dashboard:query_{i}", "expr": _as_promql(expr)}
        for i, (_, expr, _) in enumerate(queries)
    ]
    path = write_rules(tmp_path / "dashboard-queries.yaml", [{"name": "dashboard", "rules": rules}])
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


_SELECTOR_RE = re.compile(r"\b(ardary_[a-z0-9_]+)\{([^}]*)\}")
_MATCHER_RE = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"")
_GROUPING_RE = re.compile(r"\b(?:by|on|ignoring)\s*\(([^)]*)\)")
_LEGEND_RE = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def _labels_of(series: str) -> frozenset[str]:
    name = family(series)
    labels = KNOWN_METRICS[name] | TARGET_LABELS
    return labels | {"le"} if name in HISTOGRAMS and series.endswith("_bucket") else labels


def test_the_dashboard_queries_use_labels_their_metrics_carry() -> None:
    for title, expr, legend in _queries(_dashboard(), variables=False):
        selectors = _SELECTOR_RE.findall(expr)
        assert selectors, f"{title}: every query selects ardary_ series"
        available: set[str] = set()
        for name, matchers in selectors:
            assert family(name) in KNOWN_METRICS, f"{title}: {name}"
            labels = _labels_of(name)
            assert set(_MATCHER_RE.findall(matchers)) <= labels, f"{title}: {name}{{{matchers}}}"
            assert 'namespace="$namespace"' in matchers and 'job=~"$job"' in matchers, title
            available |= labels
        for grouping in _GROUPING_RE.findall(expr):
            wanted = {g.strip() for g in grouping.split(",") if g.strip()}
            assert wanted <= available, f"{title}: by ({grouping})"
        assert set(_LEGEND_RE.findall(legend)) <= available, f"{title}: legend {legend}"


def test_the_dashboard_shows_what_an_operator_asks_first() -> None:
    dashboard = _dashboard()
    exprs = [expr for _, expr, _ in _queries(dashboard)]
    text = "\n".join(exprs)
    for bucket in (
        "ardary_api_request_seconds_bucket",
        "ardary_kafka_produce_ack_seconds_bucket",
        "ardary_ingress_publish_seconds_bucket",
    ):
        quantiles = [e for e in exprs if bucket in e and e.startswith("histogram_quantile(")]
        assert quantiles, bucket
    for name in (
        "ardary_ingress_requests_total",  # callbacks/s
        "ardary_outbound_results_total",  # sends/s
        "ardary_consumer_lag_records",
        "ardary_consumer_lag_seconds",
        "ardary_ingress_spool_records",
        "ardary_ingress_dead_letters_total",
    ):
        assert name in text, name
    assert 'field="delivered"' in text  # the delivery rate
    # every metric with a login label is filtered by the login variable
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["login"]["includeAll"] and variables["login"]["multi"]
    panels = "\n".join(expr for _, expr, _ in _queries(dashboard, variables=False))
    for name, matchers in _SELECTOR_RE.findall(panels):
        if "login" in KNOWN_METRICS[family(name)]:
            assert 'login=~"$login"' in matchers, name
    # a grid of 24 columns, each panel with its own id and the chosen data source
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["metrics.podMonitor.enable=true"], "additional properties 'enable' not allowed"),
        (["metrics.prometheusRule.alerts.agentDown.for=soon"], "does not match pattern"),
        (
            ["metrics.prometheusRule.alerts.apiErrors.share=5"],
            "/metrics/prometheusRule/alerts/apiErrors/share",
        ),
        (["metrics.prometheusRule.alerts.brokerDown.for=1m"], "additional properties 'brokerDown'"),
    ],
)
def test_misspelt_monitoring_values_fail_the_render(sets: list[str], message: str) -> None:
    from tests.unit.test_helm_chart import render

    done = render(*sets)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
