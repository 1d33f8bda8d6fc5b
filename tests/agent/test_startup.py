"""Start-up: what ``plantsync run`` imports before READY=1, and the local API that is bound
before READY and built after it (``web/serving``). Start-up is CPU-bound, so every import on
the way to READY is multiplied by the machine's load (docs/performance.md, "Start-up")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
from pathlib import Path

from plantsync.web.serving.deferred import DeferredApi
from tests.api.support import attached, config, metrics_of

_RUN_IMPORTS = (
    "import json, sys\n"
    "import plantsync.tools.cli, plantsync.app, plantsync.agent.logs, plantsync.tools.systemd\n"
    "print(json.dumps(sorted(name for name in sys.modules if name.split('.')[0] in {heavy})))\n"
)
_HEAVY = ("fastapi", "starlette", "uvicorn", "asyncua", "httpx", "rich", "click", "cryptography")


def test_the_way_to_ready_imports_no_web_framework_and_no_unused_driver() -> None:
    code = _RUN_IMPORTS.format(heavy=repr(set(_HEAVY)))
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    imported = json.loads(done.stdout)
    assert imported == [], f"imported before READY=1: {sorted({n.split('.')[0] for n in imported})}"


async def test_a_request_sent_before_the_app_is_built_is_answered_once_it_is(
    tmp_path: Path,
) -> None:
    async with attached(config(tmp_path / "store.db")) as agent:
        api = DeferredApi.bind(agent, metrics_of(agent), agent.config.api)
        with contextlib.closing(api):
            reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            await writer.drain()  # in the socket's backlog: nothing serves it yet
            serving = asyncio.create_task(api.serve())
            try:
                async with asyncio.timeout(30):
                    answer = await reader.read()
            finally:
                writer.close()
                async with asyncio.timeout(10):
                    await api.stop(serving)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


async def test_a_stop_before_the_app_was_built_only_cancels_and_releases_the_port(
    tmp_path: Path,
) -> None:
    async with attached(config(tmp_path / "store.db")) as agent:
        api = DeferredApi.bind(agent, metrics_of(agent), agent.config.api)
        with contextlib.closing(api):
            port = api.port
            serving = asyncio.create_task(api.serve())
            async with asyncio.timeout(10):
                await api.stop(serving)  # before the task ever ran
        assert serving.cancelled()
        # The port is free again: the same port can be listened on at once.
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
        server.close()
        await server.wait_closed()
