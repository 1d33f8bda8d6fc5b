"""The certificates in use as people see them: a view with its 30-day warning for the API and
the status page, and ``plantsync_certificate_expiry_days`` for /metrics. What is in use, and
when it expires, is read by ``config.certificates``.

A peer's own certificate that no file names (the hub broker's, presented in the TLS handshake
and read at connect: ``LinkHealth.peer_certificate``) joins the views with role ``peer``, under
the same 30-day rule, and has ``plantsync_peer_certificate_expiry_days`` beside the files'.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import BaseModel

from plantsync.agent.supervisor import LinkHealth
from plantsync.config.certificates import WARN_DAYS, certificates_in_use
from plantsync.config.model import AgentConfig

__all__ = ["CertificateView", "certificate_metric", "certificate_views", "peer_certificate_metric"]


class CertificateView(BaseModel):
    """A certificate in use: ``role`` own, ca or server; ``warning`` from 30 days before it
    expires, or when its file cannot be read."""

    link: str
    role: str
    file: str
    not_after: datetime | None
    days_left: float | None
    warning: str | None


def certificate_views(
    config: AgentConfig, peers: Mapping[str, LinkHealth] | None = None
) -> list[CertificateView]:
    """Every certificate ``config`` puts in use, then what the ``peers`` presented at their
    last connect, with its days left and warning."""
    now = datetime.now(UTC)
    views = []
    for certificate in certificates_in_use(config):
        left = certificate.days_left(now)
        warning = certificate.problem
        if left is not None and left < WARN_DAYS:
            warning = _expiring(left, certificate.not_after)
        views.append(
            CertificateView(
                link=certificate.link,
                role=certificate.role,
                file=str(certificate.path),
                not_after=certificate.not_after,
                days_left=round(left, 2) if left is not None else None,
                warning=warning,
            )
        )
    for link, health in (peers or {}).items():
        if (presented := health.peer_certificate) is not None:
            left = (presented.not_after - now).total_seconds() / 86400
            views.append(
                CertificateView(
                    link=link,
                    role="peer",
                    file=f"presented by {health.peer or link}: {presented.subject}",
                    not_after=presented.not_after,
                    days_left=round(left, 2),
                    warning=_expiring(left, presented.not_after) if left < WARN_DAYS else None,
                )
            )
    return views


def _expiring(days_left: float, not_after: datetime | None) -> str:
    expiry = f"{not_after:%Y-%m-%d}"
    if days_left < 0:
        return f"expired on {expiry}"
    return f"expires in {days_left:.0f} days ({expiry})"


def certificate_metric(config: AgentConfig) -> Metric:
    """``plantsync_certificate_expiry_days{link, role, file}`` of every readable certificate."""
    days = GaugeMetricFamily(
        "plantsync_certificate_expiry_days",
        "days until each certificate in use expires (negative: expired); own, ca or server",
        labels=["link", "role", "file"],
    )
    now = datetime.now(UTC)
    for certificate in certificates_in_use(config):
        left = certificate.days_left(now)
        if left is not None:
            days.add_metric([certificate.link, certificate.role, str(certificate.path)], left)
    return days


def peer_certificate_metric(health: Mapping[str, LinkHealth]) -> Metric:
    """``plantsync_peer_certificate_expiry_days{link, subject}``: the certificate each peer
    presented at its last connect (the hub broker's, over TLS)."""
    days = GaugeMetricFamily(
        "plantsync_peer_certificate_expiry_days",
        "days until the certificate a peer presented at its last connect expires (negative: "
        "expired); the hub broker's over TLS",
        labels=["link", "subject"],
    )
    now = datetime.now(UTC)
    for link, link_health in health.items():
        if (presented := link_health.peer_certificate) is not None:
            left = (presented.not_after - now).total_seconds() / 86400
            days.add_metric([link, presented.subject], left)
    return days
