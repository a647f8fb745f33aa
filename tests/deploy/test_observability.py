"""The Grafana dashboard and the alert rules: they load, every PromQL expression
parses, and each names only metrics the service exports or the documented
exporters' (docs/observability.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from langgraph.checkpoint.memory import InMemorySaver

from agent_executor.adapters.langgraph import LangGraphAgentRuntime, ToolRegistry
from agent_executor.adapters.metrics import PrometheusMetrics
from agent_executor.domain.job import parse_job
from tests.deploy.render import kustomize
from tests.unit.langgraph.conftest import EventLog, Keys

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "deploy/observability"
DASHBOARD = FOLDER / "agent-executor-dashboard.json"
RULES = FOLDER / "prometheus-rule.yaml"
# NATS's prometheus-nats-exporter (JetStream, `-jsz=all`): the consumer's backlog.
EXTERNAL = frozenset({"jetstream_consumer_num_pending", "jetstream_consumer_num_ack_pending"})
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$consumer": "agent-executor-workers"}


def exported_names(metrics: PrometheusMetrics) -> set[str]:
    """Every series name the registry can expose (a counter's `_total`, a histogram's
    `_bucket`, `_sum` and `_count`)."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",)}
    return {family.name + suffix for family in metrics.registry.collect()
            for suffix in suffixes[family.type]}


def selectors(node: Any) -> set[str]:
    found: set[str] = set()
    name = type(node).__name__
    if name == "VectorSelector":
        found.add(node.name)
    for attr in ("lhs", "rhs", "expr", "args", "param", "vector_selector"):
        child = getattr(node, attr, None)
        for item in child if isinstance(child, list) else [child]:
            if item is not None and type(item).__module__.startswith("promql_parser"):
                found |= selectors(item)
    return found


def expressions() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [(f"dashboard: {p['title']}", t["expr"]) for p in dashboard["panels"]
             for t in p.get("targets", [])]
    rule = yaml.safe_load(RULES.read_text())
    found += [(f"rule: {r['alert']}", r["expr"]) for g in rule["spec"]["groups"]
              for r in g["rules"]]
    return found


def grafana(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


async def test_the_metrics_the_expressions_name_are_what_a_job_exports() -> None:
    metrics = PrometheusMetrics()
    runtime = LangGraphAgentRuntime(InMemorySaver(), Keys(), registry=ToolRegistry.load(),
                                    metrics=metrics)
    data = json.loads((ROOT / "examples/jobs/hello.json").read_text())
    await runtime.run(parse_job(data), EventLog())
    scraped = metrics.exposition().decode()
    for family in ("llm_requests_total", "llm_tokens_total", "tool_calls_total",
                   "llm_request_duration_seconds_bucket"):
        assert f"agent_executor_{family}{{" in scraped  # a job really reports them
    known = exported_names(metrics) | EXTERNAL
    named = {where: selectors(promql_parser.parse(grafana(expr)))
             for where, expr in expressions()}
    unknown = {where: sorted(names - known) for where, names in named.items()
               if names - known}
    assert unknown == {}
    assert set().union(*named.values()) >= {
        "agent_executor_job_failures_total", "agent_executor_jobs_waiting",
        "agent_executor_jobs_in_progress", "agent_executor_nats_redeliveries_total",
        "agent_executor_llm_tokens_total", "jetstream_consumer_num_pending",
        "agent_executor_stream_publish_errors_total"}


@pytest.mark.parametrize(("where", "expr"), expressions())
def test_every_expression_parses(where: str, expr: str) -> None:
    promql_parser.parse(grafana(expr))  # raises on a syntax error


def test_every_alert_has_a_duration_severity_and_summary() -> None:
    rule = yaml.safe_load(RULES.read_text())
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    assert {a["alert"] for a in alerts} >= {
        "AgentExecutorHighFailureRatio", "AgentExecutorJobsStuck",
        "AgentExecutorConsumerLag", "AgentExecutorStreamErrors"}
    for alert in alerts:
        assert alert["for"] and alert["labels"]["severity"] in ("info", "warning", "critical")
        assert alert["annotations"]["summary"]


def test_the_dashboard_is_provisioned_as_a_grafana_sidecar_configmap() -> None:
    docs = kustomize(FOLDER)
    [configmap] = [d for d in docs if d["kind"] == "ConfigMap"]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "intelligence-deepagents"
    dashboard = json.loads(configmap["data"]["agent-executor-dashboard.json"])
    assert dashboard == json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "agent-executor"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
    assert [d["kind"] for d in docs].count("PrometheusRule") == 1
