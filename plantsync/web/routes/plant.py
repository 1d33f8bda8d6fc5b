"""What the plant reports for HQ through the API: production confirmations and order status.

    POST /api/v1/confirmations   committed to the outbox, then 202
    POST /api/v1/order-status    committed to the outbox, then 202

202 means durable: HQ will receive the message with the id answered, across outages and
restarts. A full outbox (503) or a full disk (507) stores nothing; ``create_app``'s error
handlers answer those with Retry-After, and the MES keeps the message and sends it again.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request

from plantsync.agent.logs import correlation
from plantsync.contracts.orders import OrderStatus, ProductionConfirmation
from plantsync.web.apiviews import Accepted
from plantsync.web.metrics import metrics_of
from plantsync.web.routes.common import REFUSED, UNREADABLE_BODY, RunningParts

log = logging.getLogger(__name__)

API_SOURCE = "mes-api"
"""The ``source`` of messages the MES posts here."""

writes = APIRouter(prefix="/api/v1", responses=REFUSED)
_COMMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    **UNREADABLE_BODY,
    422: {"description": "invalid input, or an order id that cannot be a topic level"},
    503: {"description": "the outbox is full of business messages: retry after Retry-After"},
    507: {"description": "the disk under the store is full: retry after Retry-After"},
}


@writes.post("/confirmations", status_code=202, tags=["plant"], responses=_COMMIT_ERRORS)
async def confirmation(
    request: Request,
    parts: RunningParts,
    body: ProductionConfirmation,
    correlation_id: Annotated[str | None, Header(alias="X-Correlation-Id", max_length=128)] = None,
) -> Accepted:
    """A production confirmation from the MES; 202 once it is committed to the outbox. It
    carries the correlation id of the schedule that applied its order (else X-Correlation-Id)."""
    correlation_id = await parts.view.correlation_of(body.order_id) or correlation_id
    with correlation(correlation_id):
        try:
            message_id = await parts.business.confirmation(
                body, source=API_SOURCE, correlation_id=correlation_id
            )
        except ValueError as exc:  # e.g. an order id that cannot be a topic level
            raise HTTPException(422, str(exc)[:300]) from exc
        metrics_of(request).confirmed(final=body.final)
        log.info("confirmation %s for order %s committed", message_id, body.order_id)
    return Accepted(message_id=message_id)


@writes.post("/order-status", status_code=202, tags=["plant"], responses=_COMMIT_ERRORS)
async def order_status(parts: RunningParts, body: OrderStatus) -> Accepted:
    """A job order's state changed at the plant; 202 once it is committed to the outbox."""
    try:
        message_id = await parts.business.order_status(body, source=API_SOURCE)
    except ValueError as exc:
        raise HTTPException(422, str(exc)[:300]) from exc
    return Accepted(message_id=message_id)
