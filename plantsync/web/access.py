"""Who may call what on the local web surface, and what free text may show.

Reads are open while the API is bound to loopback (then the Host header must name loopback
too, so a web page cannot read the schedule through DNS rebinding); on any other address every
request but the probes needs ``Authorization: Bearer <api.token>``. Every POST needs the token
always, the MES's confirmations included: they become messages HQ trusts. Without a token
configured, POSTs are refused with 403. No answer carries a secret: there is no config dump,
and free text from links and peers is scrubbed of every configured secret.

    Access(config)          the rule above; the API's routers depend on read/write_access
      ├─ token_ok, from_this_machine   shared with the status page's guard (session, CSRF)
      └─ scrub: Scrubber    every configured secret replaced in free text
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from plantsync.config.model import AgentConfig, is_loopback

WRITES_REFUSED = (
    "state-changing calls are refused: no API token is configured;"
    " set api.token (better: PLANTSYNC_API__TOKEN) and send 'Authorization: Bearer <token>'"
)

_BEARER = HTTPBearer(auto_error=False, description="api.token from the agent's config")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]


class Access:
    """The API's access rule over ``config.api``; see the module docstring."""

    def __init__(self, config: AgentConfig) -> None:
        token = config.api.token
        self._token = token.get_secret_value().encode() if token is not None else None
        self.loopback = is_loopback(config.api.host)
        """Bound to loopback: reads are open to this machine, addressed as loopback."""
        self.scrub = Scrubber(config)

    @property
    def token_configured(self) -> bool:
        return self._token is not None

    def token_ok(self, given: str) -> bool:
        """``given`` is the configured token (compared in constant time)."""
        return self._token is not None and hmac.compare_digest(given.encode(), self._token)

    def token_mac(self, key: bytes) -> str:
        """An HMAC of the token under ``key``: what stands for it where it must not be kept
        (the status page's session cookie). Only with a token configured."""
        assert self._token is not None
        return hmac.new(key, self._token, hashlib.sha256).hexdigest()

    def read(self, request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
        if self.loopback:
            from_this_machine(request)
        else:
            self._authenticated(credentials)

    def write(self, request: Request, credentials: HTTPAuthorizationCredentials | None) -> None:
        if self._token is None:
            raise HTTPException(403, WRITES_REFUSED)
        if self.loopback:
            from_this_machine(request)
        self._authenticated(credentials)

    def _authenticated(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        if not self.token_ok(credentials.credentials if credentials is not None else ""):
            raise HTTPException(
                401,
                "a valid 'Authorization: Bearer <token>' is required",
                headers={"WWW-Authenticate": "Bearer"},
            )


def from_this_machine(request: Request) -> None:
    """403 unless the request names a loopback host (no DNS rebinding onto this API)."""
    if not is_loopback(request.url.hostname or ""):
        raise HTTPException(403, "this API is bound to loopback: address it as 127.0.0.1")


class Scrubber:
    """Replaces every configured secret in free text (link errors, peers' reasons)."""

    def __init__(self, config: AgentConfig) -> None:
        secrets = {secret.get_secret_value() for secret in _secrets(config.model_dump())}
        self._secrets = sorted(filter(None, secrets), key=len, reverse=True)

    def __call__(self, text: str | None) -> str | None:
        if text is None:
            return None
        for secret in self._secrets:
            text = text.replace(secret, "**********")
        return text


def _secrets(value: object) -> list[SecretStr]:
    if isinstance(value, SecretStr):
        return [value]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _secrets(item)]
    if isinstance(value, list):
        return [s for item in value for s in _secrets(item)]
    return []


# ---- FastAPI dependencies: ``create_app`` puts the Access on ``app.state.access`` ------------


def read_access(request: Request, credentials: Bearer) -> None:
    access_of(request).read(request, credentials)


def write_access(request: Request, credentials: Bearer) -> None:
    access_of(request).write(request, credentials)


def access_of(request: Request) -> Access:
    access: Access = request.app.state.access
    return access
