"""Which calls a change makes from each state the job order may be in, and ReturnStatus names."""

from __future__ import annotations

import pytest

from plantsync.contracts.orders import JobOrderState
from plantsync.contracts.schedule import ProductionOrder, RequestState
from plantsync.drivers.jobcontrol import isa95
from plantsync.drivers.jobcontrol.plan import EVERY_METHOD, Call, MissingMethod, outcome, plan
from tests.jobcontrol.support import change, order, revised

State = JobOrderState


def on_server(stored: ProductionOrder, state: State) -> isa95.ISA95JobOrderAndStateDataType:
    return isa95.ISA95JobOrderAndStateDataType(
        JobOrder=isa95.job_order(stored, "m-0:JO-1"),
        State=[isa95.ISA95StateDataType(StateText=state.value)],
    )


def methods(change_type: str, proposed: ProductionOrder, current: object) -> list[str]:
    assert current is None or isinstance(current, isa95.ISA95JobOrderAndStateDataType)
    return [call.method for call in plan(change(change_type, proposed), proposed, current)]


FIRST = order("JO-1")


@pytest.mark.parametrize(
    ("change_type", "request_state", "state", "expected"),
    [
        ("schedule.release", RequestState.RELEASED, None, ["Store", "Start"]),
        ("schedule.release", RequestState.FORECAST, None, ["Store"]),
        ("schedule.revision", RequestState.RELEASED, State.ALLOWED_TO_START, ["Update"]),
        ("schedule.revision", RequestState.RELEASED, State.RUNNING, ["Update"]),
        ("order.hold", RequestState.HELD, State.ALLOWED_TO_START, ["RevokeStart", "Update"]),
        ("order.hold", RequestState.HELD, State.RUNNING, ["Pause"]),
        ("order.hold", RequestState.HELD, State.INTERRUPTED, []),
        (
            "order.hold-release",
            RequestState.RELEASED,
            State.NOT_ALLOWED_TO_START,
            ["Update", "Start"],
        ),
        ("order.hold-release", RequestState.RELEASED, State.INTERRUPTED, ["Resume"]),
        ("order.cancel", RequestState.CANCELLED, State.ALLOWED_TO_START, ["Cancel"]),
        ("order.cancel", RequestState.CANCELLED, State.RUNNING, ["Abort"]),
        ("order.cancel", RequestState.CANCELLED, State.ABORTED, []),
        ("order.cancel", RequestState.CANCELLED, None, ["Cancel"]),
    ],
)
def test_a_change_plans_the_calls_from_the_job_orders_state(
    change_type: str, request_state: RequestState, state: State | None, expected: list[str]
) -> None:
    proposed = revised(FIRST, request_state=request_state)
    current = on_server(FIRST, state) if state is not None else None
    assert methods(change_type, proposed, current) == expected


def test_a_change_the_server_already_has_plans_no_calls() -> None:
    assert methods("schedule.release", FIRST, on_server(FIRST, State.ALLOWED_TO_START)) == []
    assert methods("schedule.snapshot", FIRST, on_server(FIRST, State.RUNNING)) == []


def test_return_status_bits_are_named_as_in_the_spec() -> None:
    status = isa95.ReturnStatus.UNKNOWN_JOB_ORDER_ID | isa95.ReturnStatus.INVALID_REQUEST
    assert isa95.describe(status) == "UnknownJobOrderId, InvalidRequest"
    assert isa95.describe(isa95.ReturnStatus.INVALID_JOB_ORDER_STATUS) == "InvalidJobOrderStatus"
    assert isa95.describe(1 << 40 | 1 << 2) == "bit 2, bit 40"


@pytest.mark.parametrize(
    ("change_type", "request_state", "state", "offered", "expected"),
    [
        ("schedule.release", RequestState.RELEASED, None, {"StoreAndStart"}, ["StoreAndStart"]),
        ("schedule.release", RequestState.RELEASED, None, {"Store", "Start"}, ["Store", "Start"]),
        ("schedule.release", RequestState.RELEASED, None, {"Store"}, ["Store"]),
        (
            "schedule.revision",
            RequestState.RELEASED,
            State.NOT_ALLOWED_TO_START,
            {"Store", "Cancel", "Start"},
            ["Cancel", "Store", "Start"],
        ),
        ("order.cancel", RequestState.CANCELLED, State.ENDED, {"Clear"}, ["Clear"]),
    ],
)
def test_a_missing_optional_method_falls_back_where_the_spec_allows(
    change_type: str,
    request_state: RequestState,
    state: State | None,
    offered: set[str],
    expected: list[str],
) -> None:
    proposed = revised(FIRST, request_state=request_state)
    current = on_server(FIRST, state) if state is not None else None
    calls = plan(
        change(change_type, proposed), proposed, current, frozenset(offered), "StoreAndStart"
    )
    assert [call.method for call in calls] == expected


@pytest.mark.parametrize(
    ("change_type", "request_state", "state", "missing"),
    [
        ("schedule.revision", RequestState.RELEASED, State.RUNNING, "Update"),
        ("order.hold", RequestState.HELD, State.RUNNING, "Pause"),
        ("order.hold", RequestState.HELD, State.ALLOWED_TO_START, "RevokeStart"),
        ("order.hold-release", RequestState.RELEASED, State.INTERRUPTED, "Resume"),
        ("order.cancel", RequestState.CANCELLED, State.RUNNING, "Abort"),
    ],
)
def test_a_missing_method_without_a_stand_in_is_named(
    change_type: str, request_state: RequestState, state: State, missing: str
) -> None:
    proposed = revised(FIRST, request_state=request_state)
    offered = EVERY_METHOD - {missing}
    with pytest.raises(MissingMethod, match=f"offers no {missing} method"):
        plan(change(change_type, proposed), proposed, on_server(FIRST, state), offered)


def test_every_return_status_bit_has_a_reason() -> None:
    status = isa95.ReturnStatus.UNABLE_TO_ACCEPT_JOB_ORDER | 1 << 40
    assert isa95.explain(status) == (
        "UnableToAcceptJobOrder (the server cannot take the job order (already stored, or "
        "full)); bit 40 (implementation-specific)"
    )
    for bit in isa95.ReturnStatus:
        if bit is not isa95.ReturnStatus.NO_ERROR:
            assert "bit" not in isa95.explain(bit)


@pytest.mark.parametrize(
    ("state", "methods_called", "reported", "seen"),
    [
        (None, ["Store", "Start"], None, False),
        (None, ["Store", "Start"], State.NOT_ALLOWED_TO_START, False),
        (None, ["Store", "Start"], State.ALLOWED_TO_START, True),
        (None, ["Store", "Start"], State.RUNNING, True),
        (None, ["Store"], State.RUNNING, False),
        (State.ALLOWED_TO_START, ["Cancel"], State.ALLOWED_TO_START, False),
        (State.ALLOWED_TO_START, ["Cancel"], None, True),
        (State.RUNNING, ["Pause"], State.INTERRUPTED, True),
    ],
)
def test_the_sink_waits_for_the_list_to_show_what_its_calls_did(
    state: State | None, methods_called: list[str], reported: State | None, seen: bool
) -> None:
    """Until the subscribed JobOrderList shows a call's outcome, the sink reads the list."""
    current = on_server(FIRST, state) if state is not None else None
    calls = [Call(method, FIRST.order_id, "test") for method in methods_called]
    expected = outcome(calls, current, FIRST.revision)
    assert expected.seen_in(on_server(FIRST, reported) if reported else None) is seen


def test_a_report_of_an_older_revision_is_not_the_outcome_of_an_update() -> None:
    second = revised(FIRST)
    calls = [Call("Update", isa95.job_order(second, "k"), "test")]
    expected = outcome(calls, on_server(FIRST, State.ALLOWED_TO_START), second.revision)
    assert not expected.seen_in(on_server(FIRST, State.ALLOWED_TO_START))
    assert expected.seen_in(on_server(second, State.ALLOWED_TO_START))
