"""Alarms: OPC UA Alarms & Conditions events, sent up in the business lane (never evicted).

One ``alarm`` message per condition event a configured notifier reported: a condition raised
(active), acknowledged, cleared (inactive), or any other state change the server announces;
events that are not about a condition (no ConditionId) are not sent (version 1). The fields
are the standard event fields (OPC UA Part 9); node ids are in their string form
(``ns=2;s=press-1.overtemperature``), the EventId in hex.

Ordering and de-duplication: stream ``alarm/<link>`` (``alarm/opcua:line-1``), one per OPC UA
server, numbered without gaps, in the order the server reported. After every (re)connect the
agent calls ConditionRefresh: the server reports again every condition it retains (active, or
not yet acknowledged), each marked ``refresh: true`` and carrying the EventId of the event
that last changed it — a consumer that has seen that EventId has nothing new; one that has not
(it missed the event while the link was down) learns the current state. The state of a
condition is its latest message by ``time``: ``active`` and ``acked`` as the server says them;
``retain: false`` means the server no longer reports it (cleared and acknowledged).

Acknowledging from HQ: ``alarm.ack`` (down, ``<prefix>/<site>/down/alarm``, stream
``alarm-acks``) names an alarm as it was published (``source`` = the link of its stream
``alarm/<link>``, its ``condition_id`` and ``event_id``) with a comment and who acknowledged.
The agent calls the condition's Acknowledge method (AcknowledgeableConditionType, OPC UA Part 9)
on that server, once, and answers with ``schedule.ack`` (``original_type`` "alarm.ack"):
``accepted``; then ``applied`` (the server's new event with ``acked: true`` follows on the
alarm stream), or ``rejected`` with ``reason_code`` "plant-rejected" and the server's status
name as ``reason`` (``BadEventIdUnknown``: the condition changed since that event, ack the
newer one; ``BadConditionBranchAlreadyAcked``), "unknown-source", "expired", or
"approval-rejected"; ``waiting-for-approval`` and ``pending`` (the server is unreachable) in
between. OPC UA's Acknowledge has no user argument: the server records the agent's session as
the one who acknowledged, and ``user`` travels in the comment as ``"<user>: <comment>"``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, Field

from plantsync.contracts.envelope import Contract, Envelope

ALARM_TYPE: Literal["alarm"] = "alarm"
ALARM_VERSION: Literal[1] = 1
ALARM_ACK_TYPE: Literal["alarm.ack"] = "alarm.ack"
ALARM_ACK_STREAM: Literal["alarm-acks"] = "alarm-acks"
"""The ordering key of HQ's alarm acknowledgements; its seq is not the schedule's down
sequence (a lost ack is not a schedule gap: HQ sees no answer and sends it again)."""

NODE_ID_PATTERN = r"^(ns=[0-9]{1,5};|nsu=[^;]{1,200};)?[isgb]=.{1,400}$"
"""An OPC UA node id in its string form (Part 6, 5.3.1.10), as the alarms carry them."""


class Alarm(Contract):
    """Payload of ``alarm``: one Alarms & Conditions event as the server reported it."""

    event_id: str = Field(description="the event's EventId, hex; the same in a refresh")
    event_type: str = Field(description="node id of the event type, e.g. 'i=2915'")
    condition_id: str = Field(description="node id of the condition instance (ConditionId)")
    condition_name: str | None = None
    source_node: str | None = Field(default=None, description="node id of what the event is about")
    source_name: str | None = None
    time: AwareDatetime = Field(description="when the event happened at the source")
    severity: int = Field(ge=0, le=1000, description="1 (lowest) to 1000 (highest)")
    message: str | None = None
    active: bool | None = Field(default=None, description="ActiveState/Id (alarms only)")
    acked: bool | None = Field(default=None, description="AckedState/Id (acknowledgeable)")
    retain: bool | None = Field(
        default=None, description="the server keeps reporting it in a ConditionRefresh"
    )
    refresh: bool = Field(
        default=False,
        description="re-reported by ConditionRefresh after a (re)connect: the current state,"
        " not a new transition",
    )
    notifier: str | None = Field(default=None, description="the configured notifier it came from")


class AlarmMessage(Envelope[Alarm]):
    """An ``alarm`` message, stream ``alarm/<link>``."""

    type: Literal["alarm"] = ALARM_TYPE
    schema_version: Literal[1] = ALARM_VERSION


def alarm_stream(link: str) -> str:
    """The ordering key of one link's alarms (``alarm/opcua:line-1``)."""
    return f"alarm/{link}"


class AlarmAck(Contract):
    """Payload of ``alarm.ack``: HQ acknowledges one alarm, as it was published."""

    source: str = Field(
        min_length=1,
        max_length=128,
        description="the link that published the alarm, e.g. 'opcua:line-1' (its stream is"
        " alarm/<source>)",
    )
    condition_id: str = Field(
        pattern=NODE_ID_PATTERN, description="the alarm's condition_id, as published"
    )
    event_id: str = Field(
        pattern=r"^([0-9a-f]{2}){1,256}$",
        description="the alarm's event_id (hex), as published: the event being acknowledged",
    )
    comment: str = Field(default="", max_length=500, description="OPC UA Acknowledge's Comment")
    user: str = Field(
        min_length=1, max_length=128, description="who acknowledged at HQ; joins the comment"
    )

    def comment_text(self) -> str:
        """The Comment the server records: ``"<user>: <comment>"`` (or the user alone)."""
        return f"{self.user}: {self.comment}" if self.comment else self.user
