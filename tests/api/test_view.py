"""The web works on an ``AgentView``: no web module imports the Agent, and a view that is not
the Agent serves every surface, its own answers included."""

from __future__ import annotations

import ast
from pathlib import Path

import plantsync.web
from plantsync.agent.service import Agent
from tests.api.support import AUTH, ViewOf, business_messages, client, confirmation

WEB = Path(plantsync.web.__file__).parent


def _imported(module: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text())):  # TYPE_CHECKING blocks included
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_web_module_imports_the_agent_service() -> None:
    modules = sorted(WEB.rglob("*.py"))
    assert len(modules) > 10
    for module in modules:
        imported = _imported(module)
        assert "plantsync.agent.service" not in imported, module
        assert "plantsync.agent.service.Agent" not in imported, module


async def test_a_confirmation_carries_the_correlation_id_its_view_answers(agent: Agent) -> None:
    view = ViewOf(agent, correlations={"JO-1": "plan-from-the-store"})
    headers = {**AUTH, "X-Correlation-Id": "mes-batch-77"}

    async with client(view) as api:
        known = await api.post("/api/v1/confirmations", headers=headers, json=confirmation("JO-1"))
        unknown = await api.post(
            "/api/v1/confirmations", headers=headers, json=confirmation("JO-2")
        )

    assert [known.status_code, unknown.status_code] == [202, 202]
    messages = {m["payload"]["order_id"]: m for m in await business_messages(agent)}
    assert messages["JO-1"]["correlation_id"] == "plan-from-the-store"
    assert messages["JO-2"]["correlation_id"] == "mes-batch-77"


async def test_a_view_that_is_not_the_agent_serves_status_page_and_metrics(agent: Agent) -> None:
    async with client(ViewOf(agent)) as api:
        status = await api.get("/api/v1/status")
        page = await api.get("/")
        metrics = await api.get("/metrics")

    assert status.status_code == 200
    assert status.json()["config_hash"] == "cafe12345678"
    assert page.status_code == 200
    assert 'id="overview"' in page.text
    assert metrics.status_code == 200
    assert 'plantsync_agent_info{hash="cafe12345678"' in metrics.text
