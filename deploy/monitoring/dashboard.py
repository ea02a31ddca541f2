"""The Grafana dashboard of the pipeline, as code: writes the JSON the Helm chart ships.

    python deploy/monitoring/dashboard.py          # (re)write the chart's dashboard JSON
    python deploy/monitoring/dashboard.py --check  # exit 1 if the file differs from this code

The chart loads `deploy/helm/ardary-pipeline/dashboards/ardary-pipeline.json` into a ConfigMap
labelled `grafana_dashboard: "1"` (metrics.grafanaDashboard.enabled). Every query selects the
series of one release with the `namespace` and `job` variables (the PodMonitor's labels);
panels over a metric with a `login` label also filter by the `login` variable.
tests/unit/test_helm_monitoring.py checks that the file matches this code, that every query
parses (promtool) and that every metric it names is one the pipeline serves.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["DASHBOARD_PATH", "build", "render"]

DASHBOARD_PATH = (
    Path(__file__).resolve().parents[1] / "helm" / "ardary-pipeline" / "dashboards"
) / "ardary-pipeline.json"

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# the series of the selected release
S = 'namespace="$namespace", job=~"$job"'
RATE = "$__rate_interval"
QUANTILES = (0.5, 0.95, 0.99)

Panel = dict[str, Any]


def _target(expr: str, legend: str, ref: str) -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def timeseries(
    title: str,
    targets: list[tuple[str, str]],
    unit: str = "short",
    description: str = "",
    width: int = 8,
    stack: bool = False,
) -> Panel:
    """A time series panel of (expr, legend) pairs."""
    custom: dict[str, Any] = {"fillOpacity": 10, "showPoints": "never"}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width},
        "fieldConfig": {"defaults": {"unit": unit, "custom": custom}, "overrides": []},
        "options": {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": [_target(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(targets)],
    }


def stat(
    title: str,
    expr: str,
    unit: str = "short",
    thresholds: list[tuple[float | None, str]] | None = None,
) -> Panel:
    """A single-value panel; `thresholds` are (from, colour) steps, the first from None."""
    steps = [{"value": v, "color": c} for v, c in (thresholds or [(None, "green")])]
    return {
        "type": "stat",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 4, "w": 4},
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {
            "colorMode": "background",
            "graphMode": "none",
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        },
        "targets": [_target(expr, "", "A")],
    }


def quantiles(title: str, bucket: str, by: str = "", selector: str = S) -> Panel:
    """p50/p95/p99 of a histogram (`bucket` = its _bucket series), optionally per label `by`."""
    labels = f"le, {by}" if by else "le"
    targets = []
    for q in QUANTILES:
        legend = f"p{round(q * 100)}" + (f" {{{{{by}}}}}" if by else "")
        expr = f"histogram_quantile({q}, sum by ({labels}) (rate({bucket}{{{selector}}}[{RATE}])))"
        targets.append((expr, legend))
    return timeseries(title, targets, unit="s")


def window_field(field: str, window: str, agg: str = "sum") -> str:
    """One field of the `ardary_sms_window` gauges (the newest window per worker), per login."""
    return (
        f"{agg} by (login) (ardary_sms_window{{{S}, window={json.dumps(window)}, "
        f'field={json.dumps(field)}, login=~"$login"}})'
    )


def rows() -> Iterator[tuple[str, list[Panel]]]:
    yield (
        "Overview",
        [
            stat(
                "Ingress → Kafka",
                f"min(ardary_ingress_broker_up{{{S}}})",
                thresholds=[(None, "red"), (1, "green")],
            ),
            stat(
                "Workers → Kafka",
                f"min(ardary_worker_broker_up{{{S}}})",
                thresholds=[(None, "red"), (1, "green")],
            ),
            stat(
                "Agents down",
                f"count(ardary_agent_up{{{S}}} == 0) or vector(0)",
                thresholds=[(None, "green"), (1, "red")],
            ),
            stat(
                "Spooled callbacks",
                f"sum(ardary_ingress_spool_records{{{S}}})",
                thresholds=[(None, "green"), (1, "orange")],
            ),
            stat(
                "Breakers open",
                f'sum(ardary_outbound_breaker_open{{{S}, login=~"$login"}})',
                thresholds=[(None, "green"), (1, "red")],
            ),
            stat(
                "Sinks ready",
                f"min(ardary_sink_ready{{{S}}})",
                thresholds=[(None, "red"), (1, "green")],
            ),
        ],
    )
    yield (
        "Traffic",
        [
            timeseries(
                "Callbacks /s by kind",
                [
                    (
                        f"sum by (kind) (rate(ardary_ingress_requests_total{{{S}, "
                        f'kind!="other"}}[{RATE}]))',
                        "{{kind}}",
                    )
                ],
                unit="reqps",
                description="HTTP requests the ingress answered, by callback kind.",
                stack=True,
            ),
            timeseries(
                "Ingress answers /s by code",
                [
                    (
                        f"sum by (code) (rate(ardary_ingress_requests_total{{{S}}}[{RATE}]))",
                        "{{code}}",
                    )
                ],
                unit="reqps",
            ),
            timeseries(
                "Records published /s by kind",
                [
                    (
                        f"sum by (kind) (rate(ardary_ingress_records_published_total{{{S}}}"
                        f"[{RATE}]))",
                        "{{kind}}",
                    )
                ],
                unit="ops",
                stack=True,
            ),
            timeseries(
                "Sends /s by outcome",
                [
                    (
                        f"sum by (outcome) (rate(ardary_outbound_results_total{{{S}}}[{RATE}]))",
                        "{{outcome}}",
                    )
                ],
                unit="ops",
                description="SendResults produced by the outbound agent.",
                stack=True,
            ),
            timeseries(
                "Ardary API calls /s by endpoint",
                [
                    (
                        f"sum by (endpoint) (rate(ardary_api_request_seconds_count{{{S}}}"
                        f"[{RATE}]))",
                        "{{endpoint}}",
                    )
                ],
                unit="reqps",
            ),
            timeseries(
                "Delivery rate by login (1h windows)",
                [
                    (
                        f"{window_field('delivered', '1h')} / {window_field('submitted', '1h')}",
                        "{{login}}",
                    )
                ],
                unit="percentunit",
                description=(
                    "Delivered / submitted in the newest 1-hour window, summed over the "
                    'workers (login "*" is every login).'
                ),
            ),
            timeseries(
                "Warehouse rows /s by table",
                [
                    (
                        f"sum by (table) (rate(ardary_sink_rows_written_total{{{S}}}[{RATE}]))",
                        "{{table}}",
                    )
                ],
                unit="ops",
                stack=True,
            ),
        ],
    )
    yield (
        "Latency",
        [
            quantiles("Ardary API call", "ardary_api_request_seconds_bucket"),
            timeseries(
                "Ardary API call p95 by endpoint",
                [
                    (
                        "histogram_quantile(0.95, sum by (le, endpoint) "
                        f"(rate(ardary_api_request_seconds_bucket{{{S}}}[{RATE}])))",
                        "{{endpoint}}",
                    )
                ],
                unit="s",
            ),
            quantiles("Kafka produce → ack", "ardary_kafka_produce_ack_seconds_bucket", "process"),
            quantiles("Ingress publish (request → acks)", "ardary_ingress_publish_seconds_bucket"),
            quantiles("Warehouse transaction", "ardary_sink_flush_seconds_bucket"),
        ],
    )
    yield (
        "Lag",
        [
            timeseries(
                "Consumer lag (records) by group and topic",
                [
                    (
                        f"sum by (group, topic) (ardary_consumer_lag_records{{{S}}})",
                        "{{group}} {{topic}}",
                    )
                ],
            ),
            timeseries(
                "Consumer lag (age of the oldest unprocessed record)",
                [
                    (
                        f"max by (group, topic) (ardary_consumer_lag_seconds{{{S}}})",
                        "{{group}} {{topic}}",
                    )
                ],
                unit="s",
            ),
            timeseries(
                "Agent lag (records) by agent and topic",
                [
                    (
                        f"sum by (agent, topic) (ardary_consumer_lag{{{S}}})",
                        "{{agent}} {{topic}}",
                    )
                ],
            ),
            timeseries(
                "Sink lag (records) by topic",
                [(f"sum by (topic) (ardary_sink_lag{{{S}}})", "{{topic}}")],
            ),
            timeseries(
                "Since the sink's last commit",
                [(f"max by (pod) (ardary_sink_last_commit_age_seconds{{{S}}})", "{{pod}}")],
                unit="s",
            ),
            timeseries(
                "Events processed /s by agent",
                [
                    (
                        f"sum by (agent) (rate(ardary_agent_events_processed_total{{{S}}}"
                        f"[{RATE}]))",
                        "{{agent}}",
                    )
                ],
                unit="ops",
            ),
        ],
    )
    yield (
        "Spool",
        [
            timeseries(
                "Spooled callbacks",
                [(f"sum by (pod) (ardary_ingress_spool_records{{{S}}})", "{{pod}}")],
            ),
            timeseries(
                "Spool size",
                [(f"sum by (pod) (ardary_ingress_spool_bytes{{{S}}})", "{{pod}}")],
                unit="bytes",
            ),
            timeseries(
                "Oldest spooled callback",
                [(f"max by (pod) (ardary_ingress_spool_oldest_age_seconds{{{S}}})", "{{pod}}")],
                unit="s",
            ),
            timeseries(
                "Forwarded from the spool /s",
                [
                    (
                        f"sum by (pod) (rate(ardary_ingress_spool_forwarded_records_total{{{S}}}"
                        f"[{RATE}]))",
                        "{{pod}}",
                    )
                ],
                unit="ops",
            ),
            timeseries(
                "Broker reachable",
                [
                    (f"ardary_ingress_broker_up{{{S}}}", "{{pod}}"),
                    (f"ardary_worker_broker_up{{{S}}}", "{{pod}}"),
                ],
            ),
            timeseries(
                "Callbacks in flight",
                [(f"sum by (pod) (ardary_ingress_in_flight{{{S}}})", "{{pod}}")],
            ),
        ],
    )
    yield (
        "Errors",
        [
            timeseries(
                "Ardary API calls not ok /s by outcome",
                [
                    (
                        f"sum by (outcome) (rate(ardary_api_request_seconds_count{{{S}, "
                        f'outcome!="ok"}}[{RATE}]))',
                        "{{outcome}}",
                    )
                ],
                unit="reqps",
                stack=True,
            ),
            timeseries(
                "FAILED share of the sends",
                [
                    (
                        f"sum(rate(ardary_outbound_results_total{{{S}, outcome="
                        f'"FAILED"}}[{RATE}])) / sum(rate(ardary_outbound_results_total{{{S}}}'
                        f"[{RATE}]))",
                        "FAILED",
                    )
                ],
                unit="percentunit",
            ),
            timeseries(
                "Send result codes /s",
                [
                    (
                        f"sum by (code) (rate(ardary_send_result_codes_total{{{S}}}[{RATE}]))",
                        "{{code}}",
                    )
                ],
                unit="ops",
                stack=True,
            ),
            timeseries(
                "Dead letters (increase) by reason",
                [
                    (
                        f"sum by (reason) (increase(ardary_ingress_dead_letters_total{{{S}}}"
                        f"[{RATE}]))",
                        "{{reason}}",
                    )
                ],
            ),
            timeseries(
                "Overdue receipts /s",
                [(f"sum(rate(ardary_lifecycles_overdue_total{{{S}}}[{RATE}]))", "overdue")],
                unit="ops",
            ),
            timeseries(
                "Agents up",
                [(f"ardary_agent_up{{{S}}}", "{{agent}} {{pod}}")],
            ),
        ],
    )
    yield (
        "Per login",
        [
            timeseries(
                "Send backlog by login",
                [
                    (
                        f'sum by (login) (ardary_outbound_backlog{{{S}, login=~"$login"}})',
                        "{{login}}",
                    )
                ],
                description="Send requests waiting for rate tokens or their batch.",
            ),
            timeseries(
                "Circuit breaker open by login",
                [
                    (
                        f'max by (login) (ardary_outbound_breaker_open{{{S}, login=~"$login"}})',
                        "{{login}}",
                    )
                ],
            ),
            timeseries(
                "Submitted and delivered by login (1m windows)",
                [
                    (window_field("submitted", "1m"), "submitted {{login}}"),
                    (window_field("delivered", "1m"), "delivered {{login}}"),
                    (window_field("rejected", "1m"), "rejected {{login}}"),
                ],
            ),
            timeseries(
                "Delivery time p95 by login (1h windows, worst worker)",
                [(window_field("p95_delivery_ms", "1h", agg="max"), "{{login}}")],
                unit="ms",
            ),
            timeseries(
                "Overdue receipts by login (1h windows)",
                [(window_field("overdue", "1h"), "{{login}}")],
            ),
            timeseries(
                "Click-through by login (1h windows)",
                [
                    (
                        f"{window_field('unique_clicks', '1h')} / "
                        f"{window_field('delivered', '1h')}",
                        "{{login}}",
                    )
                ],
                unit="percentunit",
            ),
        ],
    )


def _variable(name: str, label: str, query: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "sort": 1,
        "current": {},
        "hide": 0,
        **extra,
    }


def templating() -> list[dict[str, Any]]:
    return [
        {
            "name": "datasource",
            "label": "Data source",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
        },
        _variable("namespace", "Namespace", "label_values(ardary_ingress_broker_up, namespace)"),
        _variable(
            "job",
            "Release (job)",
            'label_values(ardary_ingress_broker_up{namespace="$namespace"}, job)',
            includeAll=True,
            allValue=".+",
            multi=True,
        ),
        _variable(
            "login",
            "Login",
            'label_values(ardary_sms_window{namespace="$namespace", job=~"$job"}, login)',
            includeAll=True,
            allValue=".*",
            multi=True,
        ),
    ]


def build() -> dict[str, Any]:
    """The dashboard: rows of panels laid out left to right, 24 columns wide."""
    panels: list[Panel] = []
    y = 0
    next_id = 1
    for title, row_panels in rows():
        panels.append(
            {
                "type": "row",
                "title": title,
                "id": next_id,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        line_height = 0
        for panel in row_panels:
            grid = panel["gridPos"]
            if x + grid["w"] > 24:
                x, y, line_height = 0, y + line_height, 0
            grid.update(x=x, y=y)
            panel["id"] = next_id
            next_id += 1
            x += grid["w"]
            line_height = max(line_height, grid["h"])
            panels.append(panel)
        y += line_height
    return {
        "uid": "ardary-pipeline",
        "title": "Ardary pipeline",
        "description": "Ingress, workers and sink (source: deploy/monitoring/dashboard.py)",
        "tags": ["ardary", "kafka"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "schemaVersion": 39,
        "version": 1,
        "annotations": {"list": []},
        "templating": {"list": templating()},
        "panels": panels,
    }


def render() -> str:
    """The file's text: stable key order, two-space indents, a final newline."""
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = render()
    if argv[1:] == ["--check"]:
        current = DASHBOARD_PATH.read_text(encoding="utf-8") if DASHBOARD_PATH.exists() else ""
        if current != text:
            print(f"{DASHBOARD_PATH} is out of date: run python {argv[0]}", file=sys.stderr)
            return 1
        return 0
    DASHBOARD_PATH.parent.mkdir(parents=True, exist_ok=True)
    DASHBOARD_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {DASHBOARD_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
