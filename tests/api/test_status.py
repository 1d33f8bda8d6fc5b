"""Status, probes and the OpenAPI document; nothing is loaded from the internet."""

from __future__ import annotations

import httpx

from plantsync import __version__
from plantsync.agent.service import Agent
from tests.api.support import AUTH, DOWN_TOPIC, confirmation, parts


async def test_status_shows_links_outbox_inbox_dead_letters_version_and_config_hash(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    assert agent.downlink is not None
    await api.post("/api/v1/confirmations", headers=AUTH, json=confirmation())
    await agent.downlink.receive(DOWN_TOPIC, b"{not json")

    status = (await api.get("/api/v1/status")).json()

    assert status["site"] == "plant-01"
    assert status["version"] == __version__
    assert status["config_hash"] == "cafe12345678"
    assert status["uptime_seconds"] >= 0
    assert set(status["links"]) == {"hub", "plant"}
    hub = status["links"]["hub"]
    assert set(hub) == {
        "state",
        "since",
        "last_error",
        "last_activity",
        "connects",
        "failures",
        "seconds_in_state",
        "seconds_since_activity",
        "counters",  # what the driver counted this session (values lost, server limits)
        "peer",  # what the link reached: the hub's node and MQTT version
        "server",  # an OPC UA server: endpoint, security, namespaces, limits (None here)
        "peer_certificate_not_after",  # the hub broker's certificate over TLS (None here)
    }
    assert hub["state"] == "connecting"
    business = status["outbox"]["lanes"]["business"]
    assert business["depth"] == 2  # the confirmation and the rejection of the bad message
    assert business["oldest_age_seconds"] >= 0
    assert status["outbox"]["depth"] == 2
    assert status["outbox"]["max_size_bytes"] == 1 << 26
    assert status["outbox"]["evicted_total"] == 0
    assert status["inbox"]["pending"] == 0
    assert status["dead_letters"] == 1
    assert status["downlink"]["dead_letters"] == 1


async def test_healthz_is_always_200_and_readyz_follows_the_store(
    agent: Agent, api: httpx.AsyncClient
) -> None:
    assert (await api.get("/readyz")).status_code == 200

    await parts(agent).close()

    assert (await api.get("/healthz")).json() == {"status": "alive"}
    not_ready = await api.get("/readyz")
    assert not_ready.status_code == 503
    assert (await api.get("/api/v1/status")).status_code == 503


async def test_no_page_loads_assets_from_a_cdn(api: httpx.AsyncClient) -> None:
    for path in ("/docs", "/redoc", "/docs/oauth2-redirect"):
        assert (await api.get(path)).status_code == 404
    document = await api.get("/openapi.json")
    assert document.status_code == 200
    assert "cdn" not in document.text.lower()


async def test_the_openapi_document_describes_every_endpoint_and_the_bearer_scheme(
    api: httpx.AsyncClient,
) -> None:
    document = (await api.get("/openapi.json")).json()

    assert set(document["paths"]) == {
        "/healthz",
        "/readyz",
        "/api/v1/schedule",
        "/api/v1/orders/{order_id}",
        "/api/v1/orders",
        "/api/v1/orders/{order_id}/timeline",
        "/api/v1/approvals",
        "/api/v1/approvals/{row_id}/approve",
        "/api/v1/approvals/{row_id}/reject",
        "/api/v1/dead-letters",
        "/api/v1/dead-letters/{letter_id}/retry",
        "/api/v1/dead-letters/{letter_id}/discard",
        "/api/v1/status",
        "/api/v1/confirmations",
        "/api/v1/order-status",
    }
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "202" in document["paths"]["/api/v1/confirmations"]["post"]["responses"]
