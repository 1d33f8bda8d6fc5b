"""How a schedule change becomes JobOrderReceiver method calls: planned from the job order's
state on the server just before, and from the methods the receiver offers (see the package
docstring for the table).
"""

from __future__ import annotations

from dataclasses import dataclass

from asyncua import ua

from plantsync.contracts.orders import JobOrderState
from plantsync.contracts.schedule import ProductionOrder, RequestState
from plantsync.drivers.base import OrderChange
from plantsync.drivers.jobcontrol import codec, isa95

_PREPARED = (JobOrderState.NOT_ALLOWED_TO_START, JobOrderState.ALLOWED_TO_START)
_STARTED = (JobOrderState.RUNNING, JobOrderState.INTERRUPTED)
_CONTENT_CHANGES = frozenset(
    {"schedule.release", "schedule.revision", "schedule.snapshot", "order.material-substitution"}
)
_TO_RELEASED = {
    JobOrderState.NOT_ALLOWED_TO_START: "Start",
    JobOrderState.INTERRUPTED: "Resume",
}
_TO_HELD = {JobOrderState.ALLOWED_TO_START: "RevokeStart", JobOrderState.RUNNING: "Pause"}
"""For an order that must not run (Held, Forecast): the call that stops it, by state."""
_ENDED = JobOrderState.ENDED
EVERY_METHOD = frozenset(
    {"Store", "StoreAndStart", "Update", *_TO_RELEASED.values(), *_TO_HELD.values()}
    | {"Stop", "Abort", "Cancel", "Clear"}
)


_AFTER = {
    "Store": JobOrderState.NOT_ALLOWED_TO_START,
    "StoreAndStart": JobOrderState.ALLOWED_TO_START,
    "Start": JobOrderState.ALLOWED_TO_START,
    "RevokeStart": JobOrderState.NOT_ALLOWED_TO_START,
    "Pause": JobOrderState.INTERRUPTED,
    "Resume": JobOrderState.RUNNING,
    "Stop": JobOrderState.ENDED,
    "Abort": JobOrderState.ABORTED,
}
"""The state each method leaves a job order in (Update keeps it; Cancel and Clear remove it)."""
_CARRY_CONTENT = frozenset({"Store", "StoreAndStart", "Update"})
_REMOVE = frozenset({"Cancel", "Clear"})


class MissingMethod(Exception):
    """The change needs a method the receiver does not offer, and nothing stands in for it."""

    def __init__(self, method: str) -> None:
        super().__init__(f"the job order receiver offers no {method} method")
        self.method = method


@dataclass(frozen=True, slots=True)
class Call:
    """One JobOrderReceiver method call: its name, the job order (Store, StoreAndStart,
    Update) or its id (every other), and why it is called (the Comment)."""

    method: str
    target: isa95.ISA95JobOrderDataType | str
    comment: str


def plan(
    change: OrderChange,
    order: ProductionOrder,
    current: isa95.ISA95JobOrderAndStateDataType | None,
    offered: frozenset[str] = EVERY_METHOD,
    release_method: str = "Store",
) -> list[Call]:
    """The calls that take the job order from ``current`` to what ``change`` asks for, with the
    methods ``offered``; MissingMethod when one it needs is not."""
    comment = _comment(change)
    content = isa95.job_order(order, change.idempotency_key)

    def call(method: str, target: isa95.ISA95JobOrderDataType | str = order.order_id) -> Call:
        if method not in offered:
            raise MissingMethod(method)
        return Call(method, target, comment)

    # An absent job order is one Store away from NotAllowedToStart.
    state = current.state if current is not None else JobOrderState.NOT_ALLOWED_TO_START
    if order.request_state is RequestState.CANCELLED:
        if current is not None and state is JobOrderState.ABORTED:
            return []
        method = "Abort" if state in _STARTED else "Clear" if state is _ENDED else "Cancel"
        return [call(method)]
    released = order.request_state is RequestState.RELEASED
    one_call = release_method == "StoreAndStart" and "StoreAndStart" in offered
    if current is None and released and one_call:
        return [call("StoreAndStart", content)]
    before: list[Call] = []
    after: list[Call] = []
    if current is None:
        before.append(call("Store", content))
    elif current.JobOrder.revision < order.revision and (
        state in _PREPARED or change.change_type in _CONTENT_CHANGES
    ):
        if "Update" in offered or state not in _PREPARED or "Cancel" not in offered:
            before.append(call("Update", content))
        else:  # the spec's other way to replace a job order that has not started
            before += [call("Cancel"), call("Store", content)]
            state = JobOrderState.NOT_ALLOWED_TO_START
    if released:
        if state in _TO_RELEASED and (current is not None or "Start" in offered):
            after.append(call(_TO_RELEASED[state]))
    elif state in _TO_HELD:
        # Stop it first: the machine may start it while the update is on its way.
        before.insert(0, call(_TO_HELD[state]))
    return before + after


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where accepted calls leave a job order: its state and revision, or ``state`` None when
    they removed it. The sink waits for the server's JobOrderList to show it (``seen_in``)
    before it plans that job order from its subscription again."""

    state: JobOrderState | None
    revision: int

    def seen_in(self, entry: isa95.ISA95JobOrderAndStateDataType | None) -> bool:
        """Whether ``entry`` (None: absent) reports this outcome or a state only the plant
        could have moved it to since."""
        if entry is None or self.state is None:
            return entry is None and self.state is None
        if entry.JobOrder.revision != self.revision:
            return entry.JobOrder.revision > self.revision
        return entry.state is self.state or (
            entry.state in _RUN_ONWARD and self.state not in _PREPARED_ONLY
        )


_RUN_ONWARD = frozenset(
    {
        JobOrderState.RUNNING,
        JobOrderState.INTERRUPTED,
        JobOrderState.ENDED,
        JobOrderState.ABORTED,
    }
)
_PREPARED_ONLY = frozenset({JobOrderState.NOT_ALLOWED_TO_START})
"""A job order left NotAllowedToStart waits for a Start; one left AllowedToStart or later may
run on by itself before the list reports it."""


def outcome(
    calls: list[Call],
    current: isa95.ISA95JobOrderAndStateDataType | None,
    revision: int,
) -> Outcome:
    """Where ``calls``, all accepted, leave the job order that was ``current``."""
    state = current.state if current is not None else None
    kept = current.JobOrder.revision if current is not None else revision
    for call in calls:
        if call.method in _REMOVE:
            state = None
        elif call.method in _AFTER:
            state = _AFTER[call.method]
        if call.method in _CARRY_CONTENT:
            kept = revision
    return Outcome(state, kept)


def _comment(change: OrderChange) -> str:
    """Why the method is called: the hold's or cancellation's reason, else the change type."""
    detail = change.body.get("detail")
    reason = detail.get("reason") if isinstance(detail, dict) else None
    return str(reason or change.change_type)[:500]


def arguments(call: Call) -> list[ua.Variant]:
    """(JobOrder: ISA95JobOrderDataType | JobOrderID: String, Comment: LocalizedText[])."""
    if isinstance(call.target, str):
        target = ua.Variant(call.target, ua.VariantType.String)
    else:
        target = ua.Variant(codec.encode_job_order(call.target), ua.VariantType.ExtensionObject)
    comment = ua.Variant([ua.LocalizedText(call.comment)], ua.VariantType.LocalizedText)
    return [target, comment]
