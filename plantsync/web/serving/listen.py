"""The local API's listening socket, opened from ``[api]`` with the standard library only."""

from __future__ import annotations

import socket

from plantsync.config.model import ApiConfig
from plantsync.errors import ConfigError, Problem


def listen(config: ApiConfig) -> socket.socket:
    """Listen on ``config.host``/``config.port``; ConfigError when that is impossible."""
    try:
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        return socket.create_server((config.host.strip("[]"), config.port), family=family)
    except OSError as exc:
        where = f"{config.host}:{config.port}"
        reason = f"cannot listen on {where}: {exc.strerror or exc}"
        raise ConfigError([Problem("agent config", "api", reason)]) from exc
