"""parse_down_message: valid bytes become a message, any other bytes a MessageRejected."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plantsync.contracts import (
    MAX_DOWN_MESSAGE_BYTES,
    ReasonCode,
    ScheduleReleaseMessage,
    parse_down_message,
    payload_fingerprint,
)
from plantsync.errors import MessageRejected, PlantsyncError
from tests.contracts.examples import ORDER, PAYLOADS, SITE, down_message, encoded

ORIGINAL_ID = "0193a1c2-7c42-7000-8eb4-cb2acc6a4ece"


def rejection(payload: bytes, **keywords: Any) -> MessageRejected:
    with pytest.raises(MessageRejected) as caught:
        parse_down_message(payload, site=SITE, **keywords)
    return caught.value


@pytest.mark.parametrize("message_type", sorted(PAYLOADS))
def test_every_valid_down_message_is_accepted(message_type: str) -> None:
    message = parse_down_message(encoded(down_message(message_type)), site=SITE)

    assert (message.type, message.id, message.seq) == (message_type, ORIGINAL_ID, 42)


def test_a_rejection_is_a_plantsync_error_that_names_its_reason() -> None:
    rejected = rejection(b"{")

    assert isinstance(rejected, PlantsyncError)
    assert str(rejected).startswith("malformed-json: ")


BAD_PAYLOADS: dict[str, tuple[bytes, ReasonCode]] = {
    "oversized": (
        encoded(down_message("schedule.release", source="x" * MAX_DOWN_MESSAGE_BYTES)),
        ReasonCode.OVERSIZED,
    ),
    "not JSON": (b'{"id": "a", ', ReasonCode.MALFORMED_JSON),
    "not UTF-8": (b'{"id": "\xff\xfe"}', ReasonCode.MALFORMED_JSON),
    "a JSON array": (b"[1, 2]", ReasonCode.MALFORMED_JSON),
    "NaN": (b'{"type": NaN}', ReasonCode.MALFORMED_JSON),
    "nested too deep": (b"[" * 5000 + b"]" * 5000, ReasonCode.MALFORMED_JSON),
    "no type": (encoded({"id": ORIGINAL_ID}), ReasonCode.UNKNOWN_TYPE),
    "an up type": (
        encoded(down_message("order.cancel", type="schedule.ack")),
        ReasonCode.UNKNOWN_TYPE,
    ),
    "version 2": (
        encoded(down_message("order.cancel", schema_version=2)),
        ReasonCode.UNKNOWN_VERSION,
    ),
    "version as text": (
        encoded(down_message("order.cancel", schema_version="1")),
        ReasonCode.SCHEMA_VIOLATION,
    ),
    "another site": (encoded(down_message("order.cancel", site="plant-02")), ReasonCode.WRONG_SITE),
    "a float quantity": (
        encoded(
            down_message(
                "schedule.release",
                payload={"orders": [{**ORDER, "quantity": {"value": 1.5, "unit": "kg"}}]},
            )
        ),
        ReasonCode.SCHEMA_VIOLATION,
    ),
}


@pytest.mark.parametrize("case", BAD_PAYLOADS)
def test_each_kind_of_bad_input_has_its_reason_code(case: str) -> None:
    payload, expected = BAD_PAYLOADS[case]

    assert rejection(payload).reason_code == expected


def test_every_reason_code_of_the_parser_is_reachable() -> None:
    reachable = {expected for _, expected in BAD_PAYLOADS.values()}

    assert reachable == {
        ReasonCode.OVERSIZED,
        ReasonCode.MALFORMED_JSON,
        ReasonCode.UNKNOWN_TYPE,
        ReasonCode.UNKNOWN_VERSION,
        ReasonCode.SCHEMA_VIOLATION,
        ReasonCode.WRONG_SITE,
    }


def test_size_is_checked_before_parsing() -> None:
    rejected = rejection(b"not json at all", max_bytes=8)

    assert rejected.reason_code == ReasonCode.OVERSIZED
    assert rejected.detail == "the message has 15 bytes, the limit is 8"


def test_an_oversized_message_is_still_named_when_its_id_comes_first() -> None:
    payload, _ = BAD_PAYLOADS["oversized"]

    assert rejection(payload).message_id == ORIGINAL_ID


def test_rejections_carry_the_originals_id_correlation_id_and_type() -> None:
    rejected = rejection(encoded(down_message("order.hold", site="plant-02")))

    assert (rejected.message_id, rejected.correlation_id) == (ORIGINAL_ID, "plan-2026-48")
    assert rejected.message_type == "order.hold"


def test_unreadable_ids_are_left_out_rather_than_echoed() -> None:
    wire = down_message("order.hold", id="x" * 10_000, correlation_id=17, payload={})

    rejected = rejection(encoded(wire))

    assert (rejected.message_id, rejected.correlation_id) == (None, None)


def test_a_schema_violation_names_the_key_path_and_the_reason_in_one_line() -> None:
    order = {**ORDER, "planned_end": ORDER["planned_start"], "revision": 0}

    rejected = rejection(encoded(down_message("schedule.release", payload={"orders": [order]})))

    assert rejected.reason_code == ReasonCode.SCHEMA_VIOLATION
    assert (
        "payload.orders.0.revision: Input should be greater than or equal to 1" in rejected.detail
    )
    assert "\n" not in rejected.detail


def test_a_schema_violation_never_repeats_a_huge_input() -> None:
    huge_key = "k" * 50_000
    wire = down_message("order.cancel", payload={**PAYLOADS["order.cancel"], huge_key: 1})

    rejected = rejection(encoded(wire))

    assert rejected.reason_code == ReasonCode.SCHEMA_VIOLATION
    assert len(rejected.detail) < 600


def test_a_message_for_the_site_with_extra_top_level_keys_is_a_schema_violation() -> None:
    rejected = rejection(encoded(down_message("order.cancel", priority=1)))

    assert rejected.detail == "priority: Extra inputs are not permitted"


def test_an_unreadable_message_is_named_by_its_fingerprint() -> None:
    assert payload_fingerprint(b"{") == (
        "sha256:021fb596db81e6d02bf3d2586ee3981fe519f275c0ac9ca76bbcf2ebb4097d96"
    )


def test_parsing_returns_the_model_of_the_type() -> None:
    message = parse_down_message(encoded(down_message("schedule.release")), site=SITE)

    assert isinstance(message, ScheduleReleaseMessage)
    assert str(message.payload.orders[0].quantity.value) == "1200.000"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_are_parsed_or_rejected_never_crash(payload: bytes) -> None:
    _parse_or_reject(payload)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@st.composite
def mutated_messages(draw: st.DrawFn) -> dict[str, Any]:
    """Valid messages with keys dropped or replaced by arbitrary JSON: near misses."""
    message_type = draw(st.sampled_from(sorted(PAYLOADS)))
    message = down_message(message_type)
    _mutate(draw, message, sorted(message))
    payload = message.get("payload")
    if isinstance(payload, dict):
        _mutate(draw, payload, sorted(PAYLOADS[message_type]))
    return message


def _mutate(draw: st.DrawFn, document: dict[str, Any], keys: list[str]) -> None:
    for key in draw(st.lists(st.sampled_from(keys), max_size=3)):
        if draw(st.booleans()):
            document.pop(key, None)
        else:
            document[key] = draw(JSON_VALUES)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=15), JSON_VALUES, max_size=8) | mutated_messages())
def test_arbitrary_json_objects_are_parsed_or_rejected_never_crash(document: Any) -> None:
    _parse_or_reject(json.dumps(document).encode())


def _parse_or_reject(payload: bytes) -> None:
    rejected: MessageRejected | None = None
    try:
        parse_down_message(payload, site=SITE)
    except MessageRejected as exc:
        rejected = exc
    if rejected is not None:
        assert rejected.reason_code in set(ReasonCode)
        assert "\n" not in rejected.detail
