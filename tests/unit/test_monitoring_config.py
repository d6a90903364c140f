"""deploy/: the Prometheus alert rules and scrape configuration, the Grafana dashboard
and its provisioning, read as Prometheus and Grafana would (YAML, JSON) and checked
against the series `shared.adapters.metrics` defines. (promtool is not installable from
the packages CI has; the observability e2e test checks every series named here against
real /metrics output.)"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from shared.adapters import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
SCRAPE = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "inkflow.json"
COMPOSE = DEPLOY.parent / "docker-compose.yml"

# Series Prometheus makes itself (per scrape target), not exported by anyone.
PROMETHEUS_OWN = {"up"}
_SERIES = re.compile(r"\b(inkflow_[a-z0-9_]+|up)\b")
_DURATION = re.compile(r"^\d+[smhd]$")


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def metric_names(expr: str) -> set[str]:
    """The inkflow series an expression reads (Prometheus' own `up` left out)."""
    return set(_SERIES.findall(expr)) - PROMETHEUS_OWN


def series_named(exposition: str) -> set[str]:
    """The sample names in a /metrics answer (`..._total`, `..._bucket`, gauges)."""
    return {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def defined_series() -> set[str]:
    """Every sample name the metrics module can export."""
    names = set(metrics.SCRAPE_TIME_GAUGES)
    for family in REGISTRY.collect():
        if not family.name.startswith("inkflow_"):
            continue
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(family.name)
    return names


def test_the_alert_rules_cover_what_operators_must_hear() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert {
        "InkflowWebhookBacklog",
        "InkflowRefundFailed",
        "InkflowHigh5xxRate",
        "InkflowWorkerDown",
    } <= set(rules)
    for name, rule in rules.items():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"], name
        assert _DURATION.match(rule.get("for", "0s")), name
        assert rule["expr"].count("(") == rule["expr"].count(")"), name
    # Backlog: older than 5 minutes.
    assert "inkflow_webhook_oldest_unapplied_age_seconds" in rules["InkflowWebhookBacklog"]["expr"]
    assert "> 300" in rules["InkflowWebhookBacklog"]["expr"]
    assert 'up{job="inkflow-worker"}' in rules["InkflowWorkerDown"]["expr"]
    assert 'status=~"5.."' in rules["InkflowHigh5xxRate"]["expr"]
    assert "inkflow_refund_failures_total" in rules["InkflowRefundFailed"]["expr"]


def test_alerts_and_dashboard_read_only_series_the_code_defines() -> None:
    defined = defined_series()
    for rule in alert_rules():
        assert metric_names(rule["expr"]) <= defined, rule["alert"]
        if "up{" not in rule["expr"]:
            assert metric_names(rule["expr"]), rule["alert"]
    expressions = dashboard_expressions()
    assert len(expressions) >= 10
    for expr in expressions:
        assert metric_names(expr) <= defined, expr
    # Every series defined is on the dashboard.
    shown = set().union(*(metric_names(e) for e in expressions))
    families = {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in defined}
    assert families <= {re.sub(r"_(bucket|count|sum|total)$", "", name) for name in shown}


def test_prometheus_scrapes_the_api_and_the_worker_and_loads_the_rules() -> None:
    config = yaml.safe_load(SCRAPE.read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"inkflow-api", "inkflow-worker"}
    assert jobs["inkflow-api"]["static_configs"][0]["targets"] == ["api:8000"]
    assert jobs["inkflow-worker"]["static_configs"][0]["targets"] == ["worker:9808"]


def test_compose_runs_the_monitoring_profile_on_loopback_with_deploy_mounted() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        service = services[name]
        assert service["profiles"] == ["monitoring"], name
        assert all(str(p).startswith("${BIND_ADDRESS:-127.0.0.1}:") for p in service["ports"]), name
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert any("deploy/grafana/dashboards" in v for v in services["grafana"]["volumes"])
    # The worker serves the port the scrape configuration names.
    assert services["worker"]["environment"]["WORKER_METRICS_PORT"] == "9808"


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    [source] = sources["datasources"]
    assert source["url"] == "http://prometheus:9090"
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {
        target["datasource"]["uid"] for panel in dashboard["panels"] for target in panel["targets"]
    }
    assert uids == {source["uid"]}
    providers = yaml.safe_load((provisioning / "dashboards" / "inkflow.yml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
