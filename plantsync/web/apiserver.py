"""The local API on uvicorn, inside the agent's event loop.

    ApiServer.bind(app, config.api)   listen now: a port in use stops the start, clearly
    await server.serve()              a task in the agent's TaskGroup; runs the app's
                                      lifespan (the depth history's sampler) around uvicorn
    await server.stop(task)           no new connections; open requests get ``stop_timeout``
    server.close()                    the socket, in case ``serve`` never ran

The socket is bound here rather than by uvicorn, which answers a bind failure with
``sys.exit(1)`` from inside a task, and so the port chosen for ``port = 0`` is known at once.
uvicorn's own signal handlers are left out: the agent owns SIGTERM and stops the API first.
The app's lifespan is entered here, around uvicorn, not by uvicorn (``lifespan="off"``): what
it runs then starts and ends with ``serve`` itself, a cancelled ``serve`` included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI

from plantsync.config.model import ApiConfig
from plantsync.errors import ConfigError, Problem

log = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: they would take SIGTERM from the agent."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    """One uvicorn server on an already bound socket."""

    def __init__(self, app: FastAPI, listener: socket.socket, *, stop_timeout: float) -> None:
        self._app = app
        self._listener = listener
        self._stop_timeout = stop_timeout
        host, port = listener.getsockname()[:2]
        self.url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        self._server = _EmbeddedServer(
            uvicorn.Config(
                app,
                log_config=None,
                lifespan="off",
                access_log=False,
                proxy_headers=False,
                ws="none",
                server_header=False,
                timeout_graceful_shutdown=max(1, int(stop_timeout)),
            )
        )

    @classmethod
    def bind(cls, app: FastAPI, config: ApiConfig, *, stop_timeout: float = 3.0) -> ApiServer:
        """Listen on ``config.host``/``config.port``; ConfigError when that is impossible."""
        try:
            family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
            listener = socket.create_server((config.host.strip("[]"), config.port), family=family)
        except OSError as exc:
            where = f"{config.host}:{config.port}"
            reason = f"cannot listen on {where}: {exc.strerror or exc}"
            raise ConfigError([Problem("agent config", "api", reason)]) from exc
        return cls(app, listener, stop_timeout=stop_timeout)

    @property
    def port(self) -> int:
        """The port listened on (the one the OS chose when the config said 0)."""
        port: int = self._listener.getsockname()[1]
        return port

    async def serve(self) -> None:
        """Answer requests until ``stop``, inside the app's lifespan; closes the socket when it
        returns."""
        log.info("local API on %s", self.url)
        try:
            async with self._app.router.lifespan_context(self._app):
                await self._server.serve(sockets=[self._listener])
        finally:
            self._listener.close()

    def close(self) -> None:
        """Close the socket; for a server whose ``serve`` never ran. Closing twice is fine."""
        self._listener.close()

    async def stop(self, task: asyncio.Task[None]) -> None:
        """Stop accepting, let open requests finish within ``stop_timeout``, then cancel."""
        self._server.should_exit = True
        try:
            async with asyncio.timeout(self._stop_timeout + 2):
                await asyncio.shield(task)
        except TimeoutError:
            log.warning("local API not stopped within %.0f s; cancelled", self._stop_timeout)
            task.cancel()
