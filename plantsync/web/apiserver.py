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

import h11
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from plantsync.config.model import ApiConfig
from plantsync.web.serving.listen import listen

log = logging.getLogger(__name__)


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its signal handlers: they would take SIGTERM from the agent."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


LINGER_SECONDS = 2.0
"""How long the rest of a refused request head is read and dropped before the close."""
_HEAD_SLACK = 1024


class _LimitedH11(H11Protocol):
    """uvicorn's h11 protocol, answering a request head larger than the parser's limit (the
    API's URL and header limits, plus slack) with 414 (the request line alone is too long) or
    431 instead of 400, and reading what the client still sends for ``LINGER_SECONDS`` before
    closing, so the client reads the answer instead of a reset connection."""

    _lingering = False

    def data_received(self, data: bytes) -> None:
        if not self._lingering:
            super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        pending, _ = self.conn.trailing_data
        limit = self.config.h11_max_incomplete_event_size or 16 * 1024
        status, detail = 400, msg
        if len(pending) > limit:
            line_ends = b"\r\n" in pending[: limit + 2]
            status = 431 if line_ends else 414
            detail = "the request headers are too large" if line_ends else "the URL is too long"
        event = h11.Response(
            status_code=status,
            headers=[(b"content-type", b"text/plain; charset=utf-8"), (b"connection", b"close")],
        )
        for part in (event, h11.Data(data=detail.encode()), h11.EndOfMessage()):
            self.transport.write(self.conn.send(part) or b"")
        self._lingering = True
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


class ApiServer:
    """One uvicorn server on an already bound socket, with the API's limits (``ApiConfig``:
    URL and header sizes at the parser, concurrent connections; the body in ``limits.py``)."""

    def __init__(
        self,
        app: FastAPI,
        listener: socket.socket,
        *,
        stop_timeout: float,
        limits: ApiConfig | None = None,
    ) -> None:
        limits = limits or ApiConfig()
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
                http=_LimitedH11,
                h11_max_incomplete_event_size=limits.max_url_size
                + limits.max_header_size
                + _HEAD_SLACK,
                limit_concurrency=limits.max_concurrent_requests,
            )
        )

    @classmethod
    def bind(cls, app: FastAPI, config: ApiConfig, *, stop_timeout: float = 3.0) -> ApiServer:
        """Listen on ``config.host``/``config.port``; ConfigError when that is impossible."""
        return cls(app, listen(config), stop_timeout=stop_timeout, limits=config)

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
