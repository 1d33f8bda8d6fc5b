"""What a down message asks of each order, and the decision about it.

Every down message becomes a list of per-order changes, each at a revision:

    schedule.release / .revision / .snapshot   the order as HQ sends it
    order.hold / .hold-release / .cancel       the applied order with a new request state
    order.material-substitution                the applied order with one material replaced

``decide`` compares each change with the last-known-good schedule (stale? already applied?
the applied revision with other content, a conflict? unknown order? waits for approval?) and
returns a Decision; ``Decision.apply`` delivers the
changes through a plant system. A message is decided as a whole: if one of its orders is stale
or in conflict, the message is rejected and none of it is applied.

A conflict is the applied revision of an order arriving again with other content: two HQ
systems (or two versions of one) disagree about what revision N is. The applied content stays,
HQ hears "conflict" with the fields that differ, and settles it by sending a higher revision.
Content is compared as values, not as text: "12.5" and "12.500" kg, or one instant written in
two time zones, are the same order. A snapshot is no exception: it would otherwise overwrite
one side of the disagreement silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from plantsync.agent.policy import SchedulePolicy
from plantsync.buffer.inbox import Inbox, OrderState
from plantsync.contracts.orders import AckOutcome, OrderRef, ReasonCode
from plantsync.contracts.schedule import (
    AlarmAckMessage,
    DownMessage,
    MaterialRequirement,
    MaterialSubstitutionMessage,
    OrderCancelMessage,
    OrderHoldMessage,
    OrderHoldReleaseMessage,
    ProductionOrder,
    RequestState,
    ScheduleSnapshotMessage,
)
from plantsync.drivers.base import OrderChange, ScheduleSink

Transform = Callable[[ProductionOrder], ProductionOrder]


@dataclass(frozen=True)
class _OrderChange:
    order_id: str
    revision: int
    order: ProductionOrder | None = None
    """The whole order (releases, revisions, snapshots)."""
    transform: Transform | None = None
    """How the applied order changes (holds, cancellations, substitutions)."""
    detail: dict[str, Any] | None = None

    def proposed(self, current: ProductionOrder | None) -> ProductionOrder | None:
        if self.order is not None:
            return self.order
        if current is None or self.transform is None:
            return None
        return self.transform(current).model_copy(update={"revision": self.revision})


@dataclass(frozen=True)
class Decision:
    """What becomes of one down message: the ack's outcome and what to apply and record."""

    message_id: str
    message_type: str
    outcome: AckOutcome
    order_refs: tuple[OrderRef, ...]
    reason_code: ReasonCode | None = None
    reason: str | None = None
    changes: tuple[OrderChange, ...] = ()
    order_states: tuple[OrderState, ...] = ()

    async def apply(self, sink: ScheduleSink) -> Decision:
        """Deliver every change; the first refusal ends it (orders applied before it stay)."""
        for index, change in enumerate(self.changes):
            verdict = await sink.apply(change)
            if not verdict.applied:
                return replace(
                    self,
                    outcome=AckOutcome.REJECTED,
                    reason_code=ReasonCode.PLANT_REJECTED,
                    reason=verdict.reason,
                    order_states=self.order_states[:index],
                )
        return self

    def failed(self, code: ReasonCode, reason: str) -> Decision:
        return replace(
            self,
            outcome=AckOutcome.FAILED,
            reason_code=code,
            reason=reason,
            changes=(),
            order_states=(),
        )


@dataclass(frozen=True)
class ChangePlan:
    """The per-order changes one down message asks for."""

    message: DownMessage
    orders: list[_OrderChange] = field(default_factory=list)

    async def decide(
        self, inbox: Inbox, policy: SchedulePolicy, now: datetime, *, approved: bool
    ) -> Decision:
        """Decide against the last-known-good schedule; see the module docstring."""
        changes: list[OrderChange] = []
        states: list[OrderState] = []
        for item in self.orders:
            known = await inbox.order(item.order_id)
            current = ProductionOrder.model_validate_json(known.order_json) if known else None
            proposed = item.proposed(current)
            if known is not None and item.revision <= known.revision:
                if item.revision == known.revision and current is not None:
                    differing = differences(current, proposed)
                    if differing:
                        return self.refused(ReasonCode.CONFLICT, _conflict(item, differing))
                    continue  # applied already: a resend, or a snapshot of what we have
                if self._is_snapshot:
                    continue  # a snapshot older than what we have
                return self.refused(
                    ReasonCode.STALE,
                    f"order {item.order_id} revision "
                    f"{item.revision} is older than the applied {known.revision}",
                )
            if proposed is None:
                return self.refused(
                    ReasonCode.UNKNOWN_ORDER,
                    f"order {item.order_id} is not in the plant's schedule",
                )
            wait = (
                None
                if approved
                else policy.reason_to_wait(self.message.type, current, proposed, now)
            )
            if wait is not None:
                return self._decision(AckOutcome.WAITING_FOR_APPROVAL, reason=wait)
            changes.append(self._change(item, proposed))
            states.append(_state(proposed, self.message))
        return self._decision(AckOutcome.APPLIED, changes=tuple(changes), states=tuple(states))

    def refused(self, code: ReasonCode, reason: str) -> Decision:
        return self._decision(AckOutcome.REJECTED, code=code, reason=reason)

    @property
    def _is_snapshot(self) -> bool:
        return isinstance(self.message, ScheduleSnapshotMessage)

    def _change(self, item: _OrderChange, proposed: ProductionOrder) -> OrderChange:
        body: dict[str, object] = {"order": proposed.model_dump(mode="json")}
        if item.detail is not None:
            body["detail"] = item.detail
        return OrderChange(
            idempotency_key(item.order_id, item.revision),
            self.message.type,
            item.order_id,
            item.revision,
            body,
        )

    def _decision(
        self,
        outcome: AckOutcome,
        *,
        code: ReasonCode | None = None,
        reason: str | None = None,
        changes: tuple[OrderChange, ...] = (),
        states: tuple[OrderState, ...] = (),
    ) -> Decision:
        refs = tuple(OrderRef(order_id=o.order_id, revision=o.revision) for o in self.orders)
        return Decision(
            self.message.id, self.message.type, outcome, refs, code, reason, changes, states
        )


def idempotency_key(order_id: str, revision: int) -> str:
    """The plant system's key for one change: the order and the revision it brings the order to.

    HQ bumps an order's revision with every change, so ``order@revision`` names what is applied,
    not the message that carried it: the same revision arriving again in a snapshot (after a
    resync, or after a corrupt store was replaced by a fresh one that remembers nothing) is the
    same key, and a plant system that honours keys takes it effect once.
    """
    return f"{order_id}@{revision}"


MAX_FIELDS_NAMED = 6
"""A conflict's reason names at most this many differing fields, then says how many more."""


def differences(applied: ProductionOrder, proposed: ProductionOrder | None) -> list[str]:
    """The fields in which ``proposed`` differs from ``applied``, as dotted paths
    (``quantity.value``, ``materials[1].material_id``); empty when they are the same order."""
    if proposed is None:
        return []
    return _differing(applied.model_dump(), proposed.model_dump(), "")


def _differing(applied: object, proposed: object, path: str) -> list[str]:
    if isinstance(applied, dict) and isinstance(proposed, dict):
        keys = [*applied, *(key for key in proposed if key not in applied)]
        return [
            found
            for key in keys
            for found in _differing(applied.get(key), proposed.get(key), _join(path, key))
        ]
    if isinstance(applied, list) and isinstance(proposed, list) and len(applied) == len(proposed):
        return [
            found
            for index, (one, other) in enumerate(zip(applied, proposed, strict=True))
            for found in _differing(one, other, f"{path}[{index}]")
        ]
    return [] if applied == proposed else [path]


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _conflict(item: _OrderChange, differing: list[str]) -> str:
    named = ", ".join(differing[:MAX_FIELDS_NAMED])
    more = len(differing) - MAX_FIELDS_NAMED
    if more > 0:
        named += f" (and {more} more)"
    return (
        f"conflict: order {item.order_id} revision {item.revision} is applied with other"
        f" content; differs in {named}; the applied content stays (send a higher revision)"
    )


def plan_changes(message: DownMessage) -> ChangePlan:
    """The per-order changes ``message`` asks for (none: an ``alarm.ack``)."""
    if isinstance(message, AlarmAckMessage):
        return ChangePlan(message, [])
    if isinstance(message, OrderHoldMessage | OrderHoldReleaseMessage | OrderCancelMessage):
        state = _REQUEST_STATE[message.type]
        detail = message.payload.model_dump(mode="json")
        item = _OrderChange(
            message.payload.order_id,
            message.payload.revision,
            transform=lambda order: order.model_copy(update={"request_state": state}),
            detail=detail,
        )
        return ChangePlan(message, [item])
    if isinstance(message, MaterialSubstitutionMessage):
        payload = message.payload
        item = _OrderChange(
            payload.order_id,
            payload.revision,
            transform=lambda order: _substitute(order, message),
            detail=payload.model_dump(mode="json"),
        )
        return ChangePlan(message, [item])
    return ChangePlan(
        message, [_OrderChange(o.order_id, o.revision, order=o) for o in message.payload.orders]
    )


_REQUEST_STATE = {
    "order.hold": RequestState.HELD,
    "order.hold-release": RequestState.RELEASED,
    "order.cancel": RequestState.CANCELLED,
}


def _substitute(order: ProductionOrder, message: MaterialSubstitutionMessage) -> ProductionOrder:
    payload = message.payload
    materials = [
        MaterialRequirement(
            material_id=payload.substitute_material_id, quantity=payload.quantity, use=material.use
        )
        if material.material_id == payload.replaced_material_id
        else material
        for material in order.materials
    ]
    return order.model_copy(update={"materials": materials})


def _state(order: ProductionOrder, message: DownMessage) -> OrderState:
    """The order as it enters the last-known-good schedule, with the message applying it: its
    correlation id then follows the order's status and confirmations to HQ, across restarts."""
    return OrderState(
        order_id=order.order_id,
        revision=order.revision,
        work_center=order.work_center,
        status=order.request_state.value,
        order_json=order.model_dump_json().encode(),
        updated_at=datetime.now(UTC).timestamp(),
        planned_start=order.planned_start.astimezone(UTC).isoformat(),
        correlation_id=message.correlation_id or message.id,
        message_id=message.id,
    )
