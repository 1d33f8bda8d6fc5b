"""What the two HTTP drivers share (the MES schedule sink and the MES polling source): the one
HTTP client's life (``HttpLink``), the TLS context a ``Tls`` section asks for, and the one
translation of httpx's exceptions."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator, Mapping
from types import TracebackType

import httpx

from plantsync.config.types import Tls
from plantsync.errors import LinkMisconfigured, SourceUnavailable

__all__ = ["HttpLink", "map_httpx_exceptions", "ssl_verify"]


def ssl_verify(tls: Tls | None, link: str) -> ssl.SSLContext | bool:
    """httpx's ``verify``: the system's trust without ``tls``, else its CA, client certificate
    and hostname check. Unusable files are ``LinkMisconfigured`` naming ``link``."""
    if tls is None:
        return True
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file is not None and tls.key_file is not None:
            password = tls.key_password.get_secret_value() if tls.key_password else None
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file), password)
    except (OSError, ssl.SSLError) as exc:
        raise LinkMisconfigured(f"{link}: TLS files cannot be used: {exc}") from exc
    context.check_hostname = tls.verify == "full"
    return context


@contextlib.contextmanager
def map_httpx_exceptions(link: str) -> Iterator[None]:
    """The one place httpx's transport exceptions become plantsync's (retry: the counterpart
    is slow or away)."""
    try:
        yield
    except httpx.TimeoutException as exc:
        raise SourceUnavailable(f"{link}: timed out") from exc
    except httpx.TransportError as exc:
        raise SourceUnavailable(f"{link}: {exc or type(exc).__name__}") from exc


class HttpLink:
    """One HTTP driver's client: each driver's ``__aenter__`` builds it with ``_open`` (its own
    headers and auth), leaving closes it. ``transport`` replaces the network in tests that are
    not about it."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _open(
        self,
        link: str,
        tls: Tls | None,
        timeout: float,
        headers: Mapping[str, str],
        *,
        base_url: str = "",
        auth: httpx.Auth | None = None,
    ) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url,
            headers={"User-Agent": "plantsync", **headers},
            auth=auth,
            timeout=timeout,
            verify=ssl_verify(tls, link),
            transport=self._transport,
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
