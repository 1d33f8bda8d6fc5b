"""The published AsyncAPI document and JSON Schemas: complete, consistent and checked in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from plantsync.contracts import DOWN_MESSAGE_CLASSES
from plantsync.contracts.asyncapi import build_document, main, rendered_files, stale_files, write

DOCS = Path(__file__).parents[2] / "docs"
UP_TYPES = {
    "site.status",
    "machine.state",
    "schedule.ack",
    "order.status",
    "production.confirmation",
    "resync.request",
    "work.status",
    "equipment.downtime",
    "equipment.capability",
    "production.throughput",
    "production.yield",
    "alarm",
    "history.gap",
}


def test_the_checked_in_documents_are_up_to_date() -> None:
    assert stale_files(DOCS) == [], (
        "regenerate with: .venv/bin/python -m plantsync.contracts.asyncapi --write docs/"
    )


def test_there_is_a_json_schema_for_every_message_type() -> None:
    schemas = {path for path in rendered_files() if path.startswith("schemas/")}

    assert schemas == {f"schemas/{name}.json" for name in set(DOWN_MESSAGE_CLASSES) | UP_TYPES}


def test_the_agent_receives_every_down_type_and_sends_every_up_type() -> None:
    document = build_document()
    actions: dict[str, set[str]] = {"send": set(), "receive": set()}
    for operation in document["operations"].values():
        for reference in operation["messages"]:
            message = _resolve(document, _resolve(document, reference["$ref"])["$ref"])
            actions[operation["action"]].add(message["name"])

    assert actions == {"send": UP_TYPES, "receive": set(DOWN_MESSAGE_CLASSES)}


def test_every_reference_in_the_document_resolves() -> None:
    document = build_document()

    for reference in _references(document):
        assert _resolve(document, reference) is not None, reference


def test_channel_parameters_match_the_address_placeholders() -> None:
    for channel in build_document()["channels"].values():
        placeholders = {part[1:-1] for part in channel["address"].split("/") if part[:1] == "{"}
        assert set(channel.get("parameters", {})) == placeholders


def test_check_fails_on_a_stale_document_and_write_repairs_it(tmp_path: Path) -> None:
    write(tmp_path)
    (tmp_path / "schemas" / "order.cancel.json").write_text("{}\n")
    (tmp_path / "schemas" / "order.retired.json").write_text("{}\n")

    assert main(["--check", str(tmp_path)]) == 1
    assert main(["--write", str(tmp_path)]) == 0
    assert main(["--check", str(tmp_path)]) == 0
    assert not (tmp_path / "schemas" / "order.retired.json").exists()


def _references(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [ref for value in node.values() for ref in _references(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _references(value)]
    return []


def _resolve(document: dict[str, Any], reference: str) -> Any:
    assert reference.startswith("#/")
    node: Any = document
    for part in reference[2:].split("/"):
        node = node.get(part) if isinstance(node, dict) else None
    return node


@pytest.mark.parametrize("path", sorted(rendered_files()))
def test_each_document_ends_with_one_newline(path: str) -> None:
    assert rendered_files()[path].endswith("}\n")
