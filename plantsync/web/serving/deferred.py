"""The local API as the agent starts it: the socket now, the app once READY is sent.

    DeferredApi.bind(view, metrics, config.api)   listen now (a port in use stops the start,
                                                  clearly); no FastAPI, no uvicorn imported
    agent sends READY=1                           the store is open, the API's socket listens
    await api.serve()                             build the app in a worker thread (FastAPI,
                                                  its routes, their pydantic and OpenAPI
                                                  models: about half a second of CPU; the
                                                  event loop turns meanwhile), then serve it
    await api.stop(task)  api.close()             as ``ApiServer``'s

Building the app is most of what start-up costs after the config and the store, and under a
loaded CPU it multiplies: doing it before READY made systemd wait (docs/performance.md,
"Start-up"). A client that connects between READY and the app being built waits in the
socket's backlog and is answered once it is, a fraction of a second later; nothing is refused.
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING

from plantsync.config.model import ApiConfig
from plantsync.web.serving.listen import listen
from plantsync.web.view import AgentView

if TYPE_CHECKING:
    from fastapi import FastAPI

    from plantsync.web.apiserver import ApiServer
    from plantsync.web.metrics import AgentMetrics


class DeferredApi:
    """A ``LocalServer`` whose socket is bound at once and whose app is built by ``serve``."""

    def __init__(
        self,
        view: AgentView,
        metrics: AgentMetrics | None,
        listener: socket.socket,
        config: ApiConfig,
        *,
        stop_timeout: float = 3.0,
    ) -> None:
        self._view, self._metrics = view, metrics
        self._listener, self._config = listener, config
        self._stop_timeout = stop_timeout
        self._server: ApiServer | None = None

    @classmethod
    def bind(cls, view: AgentView, metrics: AgentMetrics | None, config: ApiConfig) -> DeferredApi:
        """Listen on ``config.host``/``config.port`` now; ConfigError when that is impossible."""
        return cls(view, metrics, listen(config), config)

    @property
    def port(self) -> int:
        """The port listened on (the one the OS chose when the config said 0)."""
        port: int = self._listener.getsockname()[1]
        return port

    async def serve(self) -> None:
        """Build the app in a worker thread, then answer requests on the bound socket until
        ``stop``. The event loop turns meanwhile (systemd's watchdog is pinged, the links
        connect): on a loaded CPU the build takes seconds, not the half second of CPU it is."""
        app = await asyncio.to_thread(self._build)
        from plantsync.web.apiserver import ApiServer  # imported by ``_build`` already

        self._server = ApiServer(
            app, self._listener, stop_timeout=self._stop_timeout, limits=self._config
        )
        await self._server.serve()

    def _build(self) -> FastAPI:
        from plantsync.web.api import create_app
        from plantsync.web.apiserver import ApiServer  # noqa: F401 - uvicorn off the loop too

        return create_app(self._view, self._metrics)

    async def stop(self, task: asyncio.Task[None]) -> None:
        """As ``ApiServer.stop``; before ``serve`` built the app, only cancel it."""
        if self._server is not None:
            await self._server.stop(task)
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def close(self) -> None:
        """Close the socket; closing twice is fine."""
        self._listener.close()
