"""The published contract: an AsyncAPI 3.0 document and one JSON Schema per message type.

    python -m plantsync.contracts.asyncapi --write docs/   regenerate docs/asyncapi.json and
                                                           docs/schemas/<type>.json
    python -m plantsync.contracts.asyncapi --check docs/   exit 1 if they are out of date

Everything comes from the pydantic models and from :class:`Topics`, so the documents cannot say
something the code does not do. Operations are seen from the agent: it ``send``s what goes up
and ``receive``s what comes down. Down schemas are validation schemas (what HQ must send), up
schemas serialization schemas (what HQ will get: every field present).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from plantsync.contracts.alarms import ALARM_ACK_TYPE, ALARM_TYPE, AlarmMessage
from plantsync.contracts.machine import (
    HISTORY_GAP_TYPE,
    MACHINE_STATE_TYPE,
    HistoryGapMessage,
    MachineStateMessage,
)
from plantsync.contracts.mes import MES_MESSAGES, mes_topic
from plantsync.contracts.orders import (
    ORDER_STATUS_TYPE,
    PRODUCTION_CONFIRMATION_TYPE,
    RESYNC_REQUEST_TYPE,
    SCHEDULE_ACK_TYPE,
    OrderStatusMessage,
    ProductionConfirmationMessage,
    ResyncRequestMessage,
    ScheduleAckMessage,
)
from plantsync.contracts.schedule import DOWN_MESSAGE_CLASSES, AlarmAckMessage
from plantsync.contracts.status import SiteStatus
from plantsync.contracts.topics import Topics

ASYNCAPI_VERSION = "3.0.0"
CONTRACT_VERSION = "1.0.0"
DEFAULT_PREFIX = "plantsync/v1"
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Topics builds the addresses, so the document and the agent cannot disagree; these stand-ins
# pass its validation and are then replaced by the AsyncAPI parameters.
_SITE_STAND_IN, _ORDER_STAND_IN = "SITE-PARAMETER", "ORDER-PARAMETER"
_TOPICS = Topics(DEFAULT_PREFIX, _SITE_STAND_IN)
_PARAMETERS = {
    "site": {"description": "the site id (the agent's site.id), one topic level"},
    "machine_id": {"description": "the machine id from the agent's config, one topic level"},
    "order_id": {"description": "the job order id, one topic level (no / + #)"},
    "work_order_id": {"description": "the MES work order id, one topic level (no / + #)"},
    "equipment_id": {"description": "the MES equipment (work center) id, one topic level"},
}


@dataclass(frozen=True)
class _Message:
    message_type: str
    model: type[BaseModel]
    summary: str

    @property
    def key(self) -> str:
        """'order.material-substitution' -> 'orderMaterialSubstitution'."""
        words = self.message_type.replace("-", ".").split(".")
        return words[0] + "".join(word.capitalize() for word in words[1:])


@dataclass(frozen=True)
class _Channel:
    key: str
    address: str
    action: Literal["send", "receive"]
    description: str
    messages: tuple[_Message, ...]
    retain: bool = False


def _address(topic: str) -> str:
    return topic.replace(_SITE_STAND_IN, "{site}").replace(_ORDER_STAND_IN, "{order_id}")


def _down_messages() -> tuple[_Message, ...]:
    return tuple(
        _Message(message_type, model, (model.__doc__ or message_type).strip())
        for message_type, model in DOWN_MESSAGE_CLASSES.items()
        if message_type != ALARM_ACK_TYPE  # a channel of its own
    )


def _channels() -> tuple[_Channel, ...]:
    return (
        _Channel(
            "siteStatus",
            _address(_TOPICS.status),
            "send",
            "Retained health of the site: online after every connect, offline as last will.",
            (_Message("site.status", SiteStatus, "The site's retained online/offline state."),),
            retain=True,
        ),
        _Channel(
            "machineState",
            _address(_TOPICS.machine_state("{machine_id}")),
            "send",
            "Machine state by exception, and periodic snapshots; stream machine/<machine_id>."
            " After an outage new states come at once and the backlog beside them, marked"
            " historical, with its original seq and event_time: per stream, live and historical"
            " seqs interleave on the wire; order by (site, stream, seq).",
            (_Message(MACHINE_STATE_TYPE, MachineStateMessage, "Changed tags of one machine."),),
        ),
        _Channel(
            "schedule",
            _address(_TOPICS.down_schedule),
            "receive",
            "Every schedule change HQ sends the site, on one topic so it keeps its order; "
            "stream 'schedule', seq is the site's down sequence number (a gap triggers a resync). "
            "Every message received counts as seen, whatever its verdict: only a seq that never "
            "arrived is a gap. seq counts from 1 within seq_epoch (0 when absent); a message with "
            "a higher seq_epoch than before is a sequence reset that starts a new count, and seqs "
            "are never compared across epochs. An order revision the site applied, sent again "
            "with other content, is rejected with reason_code 'conflict' naming the fields.",
            _down_messages(),
        ),
        _Channel(
            "ack",
            _address(_TOPICS.ack),
            "send",
            "Acknowledgements of down messages: at least one per message, each with its id.",
            (_Message(SCHEDULE_ACK_TYPE, ScheduleAckMessage, "What became of a down message."),),
        ),
        _Channel(
            "orderStatus",
            _address(_TOPICS.order_status(_ORDER_STAND_IN)),
            "send",
            "Job order state changes at the plant; stream order/<order_id>.",
            (_Message(ORDER_STATUS_TYPE, OrderStatusMessage, "A job order changed state."),),
        ),
        _Channel(
            "productionConfirmation",
            _address(_TOPICS.confirmation(_ORDER_STAND_IN)),
            "send",
            "What the plant produced; stream order/<order_id>, shared with the order's status.",
            (
                _Message(
                    PRODUCTION_CONFIRMATION_TYPE,
                    ProductionConfirmationMessage,
                    "Good and scrap quantities of an order.",
                ),
            ),
        ),
        _Channel(
            "alarm",
            _address(_TOPICS.alarm),
            "send",
            "OPC UA Alarms & Conditions events of the configured notifiers; stream"
            " alarm/<link>, never evicted; after every reconnect the retained conditions again,"
            " marked refresh.",
            (_Message(ALARM_TYPE, AlarmMessage, "A condition raised, acknowledged, cleared."),),
        ),
        _Channel(
            "alarmAck",
            _address(_TOPICS.down_alarm),
            "receive",
            "HQ acknowledges an alarm as it was published (source, condition_id, event_id):"
            " the agent calls the condition's Acknowledge method (OPC UA Part 9) on that server"
            " once, and answers on the ack channel (original_type 'alarm.ack'); the server's"
            " new event (acked: true) follows on the alarm channel. Stream 'alarm-acks'; its"
            " seq is not the schedule's down sequence. Held for a plant approval, applied, or"
            " refused per server ([[opcua]] acknowledge_from_hq).",
            (_Message(ALARM_ACK_TYPE, AlarmAckMessage, "Acknowledge one alarm."),),
        ),
        _Channel(
            "historyGap",
            _address(_TOPICS.gap),
            "send",
            "Values of a tag lost for good: not received live and not in the server's history;"
            " stream gap/<link>, never evicted.",
            (_Message(HISTORY_GAP_TYPE, HistoryGapMessage, "A hole HQ should not wait on."),),
        ),
        _Channel(
            "resync",
            _address(_TOPICS.resync),
            "send",
            "The agent asks HQ for a schedule.snapshot on the schedule channel.",
            (_Message(RESYNC_REQUEST_TYPE, ResyncRequestMessage, "Send me a snapshot."),),
        ),
        *_mes_channels(),
    )


def _mes_channels() -> tuple[_Channel, ...]:
    """One channel per MES message type (``contracts/mes.py``), read by polling the MES."""
    channels = []
    for kind in MES_MESSAGES.values():
        group = "workorder" if kind.message_type == "work.status" else "equipment"
        key = "{work_order_id}" if group == "workorder" else "{equipment_id}"
        lane = "business: never evicted" if kind.business else "telemetry: evicted oldest first"
        words = kind.message_type.replace("-", ".").split(".")
        channels.append(
            _Channel(
                "mes" + "".join(word.capitalize() for word in words),
                _address(mes_topic(_TOPICS, group, key, kind.leaf)),
                "send",
                f"{kind.summary} Read from the MES by polling; stream {group}/<id>"
                + ("" if group == "workorder" else f"/{kind.leaf}")
                + f"; {lane} at the plant.",
                (_Message(kind.message_type, kind.message, kind.summary),),
            )
        )
    return tuple(channels)


def _mode(channel: _Channel) -> JsonSchemaMode:
    return "validation" if channel.action == "receive" else "serialization"


def build_document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every channel, operation and message, as a dict."""
    channels = _channels()
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": _info(),
        "defaultContentType": "application/json",
        "servers": _servers(),
        "channels": {channel.key: _channel_object(channel) for channel in channels},
        "operations": _operations(channels),
        "components": {
            "messages": {
                message.key: _message_object(message)
                for channel in channels
                for message in channel.messages
            },
            "schemas": _component_schemas(channels),
        },
    }


def _info() -> dict[str, Any]:
    return {
        "title": "plantsync site contract",
        "version": CONTRACT_VERSION,
        "description": (
            "Messages between one plant's plantsync agent and HQ over MQTT. Every topic of a "
            f"site is under '<prefix>/<site>/' (prefix '{DEFAULT_PREFIX}' by default). Every "
            "message except site.status is an envelope: de-duplicate by 'id', order by 'seq' "
            "per 'stream' (after an outage, telemetry's backlog arrives marked 'historical' beside"
            " newer messages; business messages are never historical and keep their order)."
            ' Quantities are decimal strings (e.g. "12.500"), never JSON numbers, '
            "so no consumer loses precision."
        ),
    }


def _servers() -> dict[str, Any]:
    return {
        "hub": {
            "host": "{host}",
            "protocol": "mqtt",
            "description": "The MQTT hub; QoS 1 both ways, a persistent session for the agent.",
            "variables": {"host": {"default": "localhost:1883", "description": "host:port"}},
        }
    }


def _channel_object(channel: _Channel) -> dict[str, Any]:
    parameters = {
        name: description
        for name, description in _PARAMETERS.items()
        if f"{{{name}}}" in channel.address
    }
    document: dict[str, Any] = {"address": channel.address, "description": channel.description}
    if parameters:
        document["parameters"] = parameters
    document["messages"] = {
        message.key: {"$ref": f"#/components/messages/{message.key}"}
        for message in channel.messages
    }
    return document


def _operations(channels: Sequence[_Channel]) -> dict[str, Any]:
    operations: dict[str, Any] = {}
    for channel in channels:
        key = f"{channel.action}{channel.key[0].upper()}{channel.key[1:]}"
        operations[key] = {
            "action": channel.action,
            "channel": {"$ref": f"#/channels/{channel.key}"},
            "summary": channel.description,
            "messages": [
                {"$ref": f"#/channels/{channel.key}/messages/{message.key}"}
                for message in channel.messages
            ],
            "bindings": {"mqtt": {"qos": 1, "retain": channel.retain, "bindingVersion": "0.2.0"}},
        }
    operations["receiveSchedule"]["reply"] = {
        "channel": {"$ref": "#/channels/ack"},
        "messages": [{"$ref": "#/channels/ack/messages/scheduleAck"}],
    }
    operations["sendResync"]["reply"] = {
        "channel": {"$ref": "#/channels/schedule"},
        "messages": [{"$ref": "#/channels/schedule/messages/scheduleSnapshot"}],
    }
    return operations


def _message_object(message: _Message) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": message.message_type,
        "title": message.message_type,
        "summary": message.summary,
        "contentType": "application/json",
        "payload": {"$ref": f"#/components/schemas/{message.model.__name__}"},
    }
    if "correlation_id" in message.model.model_fields:
        document["correlationId"] = {"location": "$message.payload#/correlation_id"}
    return document


def _component_schemas(channels: Sequence[_Channel]) -> dict[str, Any]:
    models = [
        (message.model, _mode(channel)) for channel in channels for message in channel.messages
    ]
    _, definitions = models_json_schema(models, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = definitions["$defs"]
    return dict(sorted(schemas.items()))


def message_schemas() -> dict[str, dict[str, Any]]:
    """One self-contained JSON Schema per message type, keyed by type."""
    schemas: dict[str, dict[str, Any]] = {}
    for channel in _channels():
        for message in channel.messages:
            schema = message.model.model_json_schema(mode=_mode(channel))
            schemas[message.message_type] = {"$schema": JSON_SCHEMA_DIALECT, **schema}
    return schemas


def rendered_files() -> dict[str, str]:
    """Path (relative to the docs directory) -> the exact text that belongs there."""
    files = {"asyncapi.json": _render(build_document())}
    for message_type, schema in message_schemas().items():
        files[f"schemas/{message_type}.json"] = _render(schema)
    return files


def _render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def stale_files(directory: Path) -> list[str]:
    """Files under ``directory`` that differ from, lack or outlive the generated documents."""
    expected = rendered_files()
    stale = [
        relative
        for relative, text in expected.items()
        if not (directory / relative).is_file()
        or (directory / relative).read_text(encoding="utf-8") != text
    ]
    schema_dir = directory / "schemas"
    if schema_dir.is_dir():
        stale += [
            f"schemas/{path.name}"
            for path in sorted(schema_dir.glob("*.json"))
            if f"schemas/{path.name}" not in expected
        ]
    return stale


def write(directory: Path) -> None:
    """Write every document, and remove schema files of message types that no longer exist."""
    expected = rendered_files()
    (directory / "schemas").mkdir(parents=True, exist_ok=True)
    for relative, text in expected.items():
        (directory / relative).write_text(text, encoding="utf-8")
    for path in (directory / "schemas").glob("*.json"):
        if f"schemas/{path.name}" not in expected:
            path.unlink()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m plantsync.contracts.asyncapi")
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", metavar="DIR", type=Path, help="regenerate the documents")
    action.add_argument("--check", metavar="DIR", type=Path, help="exit 1 if they are stale")
    arguments = parser.parse_args(argv)
    if arguments.write is not None:
        write(arguments.write)
        return 0
    stale = stale_files(arguments.check)
    for relative in stale:
        print(f"{arguments.check / relative}: out of date", file=sys.stderr)
    if stale:
        print("regenerate: python -m plantsync.contracts.asyncapi --write docs/", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
