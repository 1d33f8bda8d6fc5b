"""The OPC UA source's monitored items: which tag of which machine at which node, browse paths
translated to node ids in one request, and the CreateMonitoredItems request of each (sampling,
queue, deadband). ``opcua.OpcUaSource`` creates them over as many subscriptions as it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from asyncua import ua
from asyncua.client.ua_session import UaSession
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds

from plantsync.config.plant import Deadband, TagConfig
from plantsync.errors import LinkMisconfigured

__all__ = ["Item", "monitored_item_request", "node_id_of", "resolve"]

_DEADBANDS = {"absolute": ua.DeadbandType.Absolute, "percent": ua.DeadbandType.Percent}


@dataclass(frozen=True, slots=True)
class Item:
    """One monitored item: which tag of which machine, at which node."""

    machine_id: str
    tag: TagConfig
    node_id: ua.NodeId | None = None

    @property
    def label(self) -> str:
        return f"{self.machine_id}.{self.tag.name} ({self.tag.node_id or self.tag.browse_path})"


async def resolve(session: UaSession, items: list[Item], link: str) -> list[Item]:
    """Node ids for every item; all browse paths are translated in one request."""
    by_path = [item for item in items if item.tag.browse_path is not None]
    translated: dict[str, ua.NodeId] = {}
    if by_path:
        paths = [_browse_path(item.tag.browse_path or "") for item in by_path]
        results = await session.translate_browsepaths_to_nodeids(paths)
        for item, result in zip(by_path, results, strict=True):
            if not result.StatusCode.is_good() or not result.Targets:
                raise LinkMisconfigured(
                    f"opcua {link}: tag {item.label}: browse path not found: "
                    f"{result.StatusCode.name}"
                )
            translated[item.tag.browse_path or ""] = result.Targets[0].TargetId
    return [
        Item(
            item.machine_id,
            item.tag,
            translated.get(item.tag.browse_path or "") or node_id_of(item.tag),
        )
        for item in items
    ]


def monitored_item_request(
    handle: int, item: Item, publishing_interval: timedelta
) -> ua.MonitoredItemCreateRequest:
    """The item's request: sampled at its tag's interval (else the publishing interval)."""
    tag = item.tag
    sampling = tag.sampling_interval or publishing_interval
    parameters = ua.MonitoringParameters(
        ClientHandle=handle,
        SamplingInterval=sampling.total_seconds() * 1000,
        QueueSize=tag.queue_size,
        DiscardOldest=True,
    )
    if tag.deadband is not None:
        parameters.Filter = _deadband_filter(tag.deadband)
    return ua.MonitoredItemCreateRequest(
        ItemToMonitor=ua.ReadValueId(NodeId=item.node_id, AttributeId=AttributeIds.Value),
        MonitoringMode=ua.MonitoringMode.Reporting,
        RequestedParameters=parameters,
    )


def node_id_of(tag: TagConfig) -> ua.NodeId:
    """The node id the config gives the tag (``node_id``; not a browse path)."""
    return ua.NodeId.from_string(tag.node_id or "")


def _deadband_filter(deadband: Deadband) -> ua.DataChangeFilter:
    return ua.DataChangeFilter(
        # The DataChangeFilter default trigger is Status only: values would never be reported.
        Trigger=ua.DataChangeTrigger.StatusValue,
        DeadbandType=_DEADBANDS[deadband.kind],
        DeadbandValue=deadband.value,
    )


def _browse_path(path: str) -> ua.BrowsePath:
    """``2:Press1/2:Speed``, followed from the Objects folder along hierarchical references."""
    return ua.BrowsePath(
        StartingNode=ua.NodeId(ua.Int32(ObjectIds.ObjectsFolder)),
        RelativePath=ua.RelativePath.from_string("/" + path),
    )
