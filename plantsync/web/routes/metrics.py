"""``GET /metrics``: the Prometheus text format of the agent's registry (``web/metrics.py``).

The route lives here, with the app's other routes, so that ``web/metrics.py`` imports no
FastAPI: the agent builds its ``AgentMetrics`` (its observer) before READY, and the web app
itself only after it (``web/serving``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from plantsync.web.metrics import metrics_of

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response, include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text format: every metric of this agent."""
    return Response(await metrics_of(request).exposition(), media_type=CONTENT_TYPE_LATEST)
