"""The local API refuses what is too large, unauthenticated or not JSON before it reads a body:
through the real uvicorn server, with the agent's memory and store watched."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest
from pydantic import ByteSize

from plantsync.config.model import AgentConfig, ApiConfig
from tests.api.support import AUTH, business_messages, config, confirmation
from tests.hostile.support import PeakRss, raw_status, served, stream
from tests.hostile.test_down_limits import _store_bytes

pytestmark = pytest.mark.slow

MB = 1 << 20


def _config(tmp_path: Path, **limits: object) -> AgentConfig:
    base = config(tmp_path / "store.db")
    api = base.api.model_copy(update=limits)
    return base.model_copy(update={"api": ApiConfig.model_validate(api.model_dump())})


async def test_a_300_mb_post_without_a_token_is_413_before_it_is_read(tmp_path: Path) -> None:
    async with served(_config(tmp_path)) as (agent, api):
        headers = {"Content-Type": "application/json", "Content-Length": str(300 * MB)}
        with PeakRss() as rss:
            started = time.monotonic()
            answer = await api.post(
                "/api/v1/confirmations", content=stream(300 * MB), headers=headers
            )
            took = time.monotonic() - started

        stored = _store_bytes(tmp_path / "store.db")
        print(f"300 MB POST: RSS +{rss.growth / MB:.1f} MB in {took:.2f} s, store {stored} B")
        assert answer.status_code == 413
        assert "limit is 1048576" in answer.json()["detail"]
        assert rss.growth < 40 * MB, rss.growth
        assert took < 5
        assert await business_messages(agent) == []


async def test_a_chunked_body_is_cut_at_the_limit_and_without_a_token_not_read_at_all(
    tmp_path: Path,
) -> None:
    async with served(_config(tmp_path, max_body_size=ByteSize(64 * 1024))) as (_, api):
        json_type = {"Content-Type": "application/json"}
        with PeakRss() as rss:
            unauthenticated = await api.post(
                "/api/v1/confirmations", content=stream(50 * MB), headers=json_type
            )
            authenticated = await api.post(
                "/api/v1/confirmations", content=stream(50 * MB), headers={**AUTH, **json_type}
            )
        small = await api.post("/api/v1/confirmations", json=confirmation(), headers=AUTH)

    assert unauthenticated.status_code == 401
    assert authenticated.status_code == 413
    assert rss.growth < 40 * MB, rss.growth
    assert small.status_code == 202


async def test_no_token_and_an_invalid_body_is_401_not_422(tmp_path: Path) -> None:
    async with served(_config(tmp_path)) as (_, api):
        answer = await api.post("/api/v1/confirmations", json={"order_id": 5})
        wrong_token = await api.post(
            "/api/v1/order-status", json={}, headers={"Authorization": "Bearer wrong"}
        )

    assert answer.status_code == 401
    assert "order_id" not in answer.text
    assert wrong_token.status_code == 401


async def test_a_body_that_is_not_json_is_415(tmp_path: Path) -> None:
    async with served(_config(tmp_path)) as (agent, api):
        form = await api.post("/api/v1/confirmations", data={"order_id": "JO-1"}, headers=AUTH)
        text = await api.post(
            "/api/v1/order-status",
            content=b"{}",
            headers={**AUTH, "Content-Type": "text/plain"},
        )
        json_with_charset = await api.post(
            "/api/v1/confirmations",
            content=httpx.Request("POST", "/", json=confirmation()).content,
            headers={**AUTH, "Content-Type": "application/json; charset=utf-8"},
        )
        stored = await business_messages(agent)

    assert form.status_code == 415
    assert text.status_code == 415
    assert "application/json" in text.json()["detail"]
    assert json_with_charset.status_code == 202
    assert len(stored) == 1


async def test_a_10_mb_url_is_414_and_huge_headers_are_431_not_a_reset(tmp_path: Path) -> None:
    async with served(_config(tmp_path)) as (_, api):
        assert api.base_url.port is not None
        target = b"/api/v1/orders/" + b"x" * (10 * MB)
        huge_url = await raw_status(api.base_url.port, b"GET " + target + b" HTTP/1.1\r\n\r\n")
        long_url = await api.get("/api/v1/orders/" + "x" * (9 * 1024))
        huge_header = await api.get("/api/v1/schedule", headers={"X-Filler": "y" * (200 * 1024)})
        big_headers = await api.get(
            "/api/v1/schedule", headers={f"X-F{i}": "y" * 1000 for i in range(33)}
        )
        still_serving = await api.get("/healthz")

    assert huge_url == 414
    assert long_url.status_code == 414
    assert huge_header.status_code == 431
    assert big_headers.status_code == 431
    assert still_serving.status_code == 200


async def test_connections_beyond_the_limit_are_503(tmp_path: Path) -> None:
    async with served(_config(tmp_path, max_concurrent_requests=2)) as (_, api):
        assert api.base_url.port is not None
        host_port = ("127.0.0.1", api.base_url.port)
        idle = [socket.create_connection(host_port) for _ in range(3)]
        try:
            answer = await httpx.AsyncClient(base_url=str(api.base_url)).get("/healthz")
        finally:
            for connection in idle:
                connection.close()

    assert answer.status_code == 503
