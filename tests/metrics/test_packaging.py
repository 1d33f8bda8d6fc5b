"""The Grafana dashboard and the Prometheus alert rules in packaging/ hold what they claim: every
metric they name is one a running agent exports (with the label values they match), promtool
accepts them, and every alert fires in promtool's rule unit tests.

promtool is optional: ``make promtool`` takes it out of Debian's ``prometheus`` package into
.venv/bin without installing the package (which would start a Prometheus server); without it
the promtool tests are skipped and say so. A real Prometheus firing an alert against a real
agent: test_alerts_prometheus.py.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

from plantsync.agent.supervisor import LinkState
from plantsync.sim.plant import SimulatedPlant
from plantsync.tools.localbroker import Mosquitto
from tests.e2e.support import agent_config, running_agent
from tests.metrics.support import prometheus_tool

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
RULES = PACKAGING / "prometheus" / "plantsync-alerts.yml"
RULE_TESTS = PACKAGING / "prometheus" / "plantsync-alerts.test.yml"
DASHBOARD = PACKAGING / "grafana" / "plantsync-fleet.json"

_METRIC = re.compile(r"\bplantsync_[a-z0-9_]+")
_SELECTOR = re.compile(r"\b(plantsync_[a-z0-9_]+)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!~|!=|=)\s*"([^"]*)"')

Exported = dict[str, list[dict[str, str]]]
"""Sample name → the label sets it was exported with."""


def alert_expressions() -> dict[str, str]:
    """Alert name → its PromQL, from the rules file."""
    document = yaml.safe_load(RULES.read_text())
    return {rule["alert"]: rule["expr"] for group in document["groups"] for rule in group["rules"]}


def dashboard_expressions() -> dict[str, str]:
    """``panel title / refId`` → PromQL, and the template variables' queries."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = {
        f"{panel['title']} / {target['refId']}": target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    }
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            found[f"variable {variable['name']}"] = variable["query"]["query"]
    return found


def unknown_references(expression: str, exported: Exported) -> list[str]:
    """What ``expression`` names that the agent does not export: metric names, label names,
    and values of exact (``=``) label matchers; dashboard variables (``$site``) pass."""
    unknown = [name for name in _METRIC.findall(expression) if name not in exported]
    for name, matchers in _SELECTOR.findall(expression):
        label_sets = exported.get(name, [])
        for label, operator, value in _MATCHER.findall(matchers):
            values = {labels[label] for labels in label_sets if label in labels}
            if not values:
                unknown.append(f"{name}{{{label}}}")
            elif operator == "=" and "$" not in value and value not in values:
                unknown.append(f'{name}{{{label}="{value}"}}')
    return unknown


async def exported_by_a_running_agent(
    tmp_path: Path, broker: Mosquitto, plant: SimulatedPlant
) -> Exported:
    """/metrics of a real agent (real broker, real OPC UA plant) once readings reach the hub."""
    config = agent_config(tmp_path / "store.db", broker.url, plant.server_config())
    async with running_agent(config) as agent:
        async with asyncio.timeout(30):
            while not (  # noqa: ASYNC110 - no event to wait on
                agent.health["hub"].state is LinkState.UP
                and agent.pipeline is not None
                and agent.pipeline.counters.messages > 0
                and agent.uplink is not None
                and agent.uplink.counters.acked > 0
            ):
                await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{agent.api_port}/metrics"
        async with httpx.AsyncClient(timeout=10) as client:
            text = (await client.get(url)).text
    exported: Exported = defaultdict(list)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            exported[sample.name].append(dict(sample.labels))
    return dict(exported)


async def test_the_alert_rules_and_the_dashboard_name_only_what_a_running_agent_exports(
    tmp_path: Path, broker: Mosquitto, opcua_plant: SimulatedPlant
) -> None:
    exported = await exported_by_a_running_agent(tmp_path, broker, opcua_plant)
    expressions = {**alert_expressions(), **dashboard_expressions()}

    unknown = {
        where: missing
        for where, expression in expressions.items()
        if (missing := unknown_references(expression, exported))
    }

    assert not unknown, f"not exported by the agent: {unknown}"
    named = {name for expression in expressions.values() for name in _METRIC.findall(expression)}
    assert "plantsync_outbox_oldest_age_seconds" in named  # the parse found the names
    assert len(named) >= 30


def test_a_name_or_label_value_the_agent_does_not_export_is_reported() -> None:
    exported: Exported = {"plantsync_link_up": [{"link": "hub"}, {"link": "plant"}]}

    assert unknown_references("plantsync_link_up == 0", exported) == []
    assert unknown_references('plantsync_link_up{link="$link"}', exported) == []
    assert unknown_references("plantsync_link_upp == 0", exported) == ["plantsync_link_upp"]
    assert unknown_references('plantsync_link_up{link="hbu"}', exported) == [
        'plantsync_link_up{link="hbu"}'
    ]
    assert unknown_references('plantsync_link_up{lane=~".*"}', exported) == [
        "plantsync_link_up{lane}"
    ]


def test_every_alert_has_a_unit_test_that_fires_it() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }

    assert fired == set(alert_expressions())


def run_promtool(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [prometheus_tool("promtool"), *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_promtool_accepts_the_alert_rules() -> None:
    checked = run_promtool("check", "rules", str(RULES))

    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_fires_in_promtools_rule_unit_tests() -> None:
    tested = run_promtool("test", "rules", str(RULE_TESTS))

    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    # promtool has no expression checker of its own: each expression becomes a recording rule.
    rules: dict[str, Any] = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:expression_{index}", "expr": expr.replace("$site", ".*")}
                    for index, expr in enumerate(dashboard_expressions().values())
                    if not expr.startswith("label_values(")
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(yaml.safe_dump(rules))

    checked = run_promtool("check", "rules", str(path))

    assert checked.returncode == 0, checked.stdout + checked.stderr
