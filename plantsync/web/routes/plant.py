"""What the plant reports for HQ through the API: production confirmations and order status.

    POST /api/v1/confirmations   committed to the outbox, then 202
    POST /api/v1/order-status    committed to the outbox, then 202

202 means durable: HQ will receive the message with the id answered, across outages and
restarts. A full outbox (503) or a full disk (507) stores nothing; ``create_app``'s error
handlers answer those with Retry-After, and the MES keeps the message and sends it again.

Each post is committed once per key: an ``Idempotency-Key`` header, else a confirmation's
``confirmation_id``, else an order status's content. A retry under a kept key is answered 200
with the first answer's body (the same message id, header ``Idempotent-Replayed: true``), and
HQ gets no second message, also after a restart; the same key with other content is a 409
naming the fields that differ (the key's owner: ``agent.business``; kept for
``store.keep_idempotency_keys``).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, Response

from plantsync.agent.business import ClientKey, KeyConflict, Written
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
    200: {
        "model": Accepted,
        "description": "a retry under a kept key: the first answer, the same message id;"
        " nothing is sent again (header Idempotent-Replayed: true)",
    },
    409: {"description": "the key was used before for other content; the reason names it"},
    422: {"description": "invalid input, or an order id that cannot be a topic level"},
    503: {"description": "the outbox is full of business messages: retry after Retry-After"},
    507: {"description": "the disk under the store is full: retry after Retry-After"},
}


IdempotencyKey = Annotated[
    str | None, Header(alias="Idempotency-Key", min_length=1, max_length=128)
]


@writes.post(
    "/confirmations",
    status_code=202,
    response_model=Accepted,
    tags=["plant"],
    responses=_COMMIT_ERRORS,
)
async def confirmation(
    request: Request,
    parts: RunningParts,
    body: ProductionConfirmation,
    correlation_id: Annotated[str | None, Header(alias="X-Correlation-Id", max_length=128)] = None,
    idempotency_key: IdempotencyKey = None,
) -> Accepted | Response:
    """A production confirmation from the MES; 202 once it is committed to the outbox. It
    carries the correlation id of the schedule that applied its order (else X-Correlation-Id).
    Its key is the Idempotency-Key header, else its confirmation_id: a retry is answered 200
    with the first answer, other content under the same key is 409."""
    if idempotency_key is not None:
        key = ClientKey("api:confirmations:Idempotency-Key", idempotency_key, _accepted)
    else:
        key = ClientKey("api:confirmation_id", body.confirmation_id, _accepted)
    correlation_id = await parts.view.correlation_of(body.order_id) or correlation_id
    with correlation(correlation_id):
        written = await _committed(
            parts.business.confirmation(
                body, source=API_SOURCE, correlation_id=correlation_id, key=key
            )
        )
        if written.replayed is not None:
            return _replay(written)
        metrics_of(request).confirmed(final=body.final)
        log.info(
            "confirmation %s for order %s committed%s",
            written.message_id,
            body.order_id,
            " (unplanned order)" if written.unplanned else "",
        )
    return Accepted(message_id=written.message_id)


@writes.post(
    "/order-status",
    status_code=202,
    response_model=Accepted,
    tags=["plant"],
    responses=_COMMIT_ERRORS,
)
async def order_status(
    parts: RunningParts, body: OrderStatus, idempotency_key: IdempotencyKey = None
) -> Accepted | Response:
    """A job order's state changed at the plant; 202 once it is committed to the outbox. Its
    key is the Idempotency-Key header, else its content: the same status posted again is
    answered 200 with the first answer, other content under the same header is 409."""
    if idempotency_key is not None:
        key = ClientKey("api:order-status:Idempotency-Key", idempotency_key, _accepted)
    else:
        content = hashlib.sha256(body.model_dump_json().encode()).hexdigest()
        key = ClientKey("api:order-status:content", content, _accepted)
    written = await _committed(parts.business.order_status(body, source=API_SOURCE, key=key))
    if written.replayed is not None:
        return _replay(written)
    return Accepted(message_id=written.message_id)


async def _committed(writing: Awaitable[Written]) -> Written:
    try:
        return await writing
    except KeyConflict as exc:
        raise HTTPException(409, str(exc)[:1000]) from exc
    except ValueError as exc:  # e.g. an order id that cannot be a topic level
        raise HTTPException(422, str(exc)[:300]) from exc


def _accepted(message_id: str) -> tuple[int, bytes]:
    """The first answer, kept with the key for its retries."""
    return 202, Accepted(message_id=message_id).model_dump_json().encode()


def _replay(written: Written) -> Response:
    kept = written.replayed
    assert kept is not None
    body = kept.body if kept.body is not None else _accepted(kept.message_id)[1]
    return Response(
        body, 200, headers={"Idempotent-Replayed": "true"}, media_type="application/json"
    )
