"""The certificates in use as people see them: a view with its 30-day warning for the API and
the status page, and ``plantsync_certificate_expiry_days`` for /metrics. What is in use, and
when it expires, is read by ``config.certificates``."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.core import GaugeMetricFamily, Metric
from pydantic import BaseModel

from plantsync.config.certificates import WARN_DAYS, certificates_in_use
from plantsync.config.model import AgentConfig

__all__ = ["CertificateView", "certificate_metric", "certificate_views"]


class CertificateView(BaseModel):
    """A certificate in use: ``role`` own, ca or server; ``warning`` from 30 days before it
    expires, or when its file cannot be read."""

    link: str
    role: str
    file: str
    not_after: datetime | None
    days_left: float | None
    warning: str | None


def certificate_views(config: AgentConfig) -> list[CertificateView]:
    """Every certificate ``config`` puts in use, with its days left and warning."""
    now = datetime.now(UTC)
    views = []
    for certificate in certificates_in_use(config):
        left = certificate.days_left(now)
        warning = certificate.problem
        if left is not None and left < WARN_DAYS:
            expiry = f"{certificate.not_after:%Y-%m-%d}"
            warning = (
                f"expired on {expiry}" if left < 0 else f"expires in {left:.0f} days ({expiry})"
            )
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
    return views


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
