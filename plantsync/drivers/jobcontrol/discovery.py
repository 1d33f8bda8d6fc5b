"""Finding a server's Job Control: the ISA95JobOrderReceiverObjectType instance (with the
methods it offers and its JobOrderList) and the ISA95JobResponseProviderObjectType instance.

    configured node id ──────────────────────────────┐
    else: Objects ─browse (hierarchical, objects)─▶ instances of the type or a subtype
                                                      ▼
                     its children: methods offered, JobOrderList / JobOrderResponseList

Every receiver method is optional in the nodeset, so what a receiver offers is read here and
``jobcontrol.plan`` falls back or refuses by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.uaerrors import UaStringParsingError

from plantsync.drivers.jobcontrol import codec
from plantsync.errors import LinkMisconfigured

MAX_DEPTH = 4
MAX_NODES = 2000
"""How far a browse for the instances goes below Objects; the Server object is never entered."""
_SERVER = ua.NodeId(ua.Int32(ObjectIds.Server))


@dataclass(frozen=True, slots=True)
class JobControlNodes:
    """What the sink talks to; ``methods`` are the receiver's methods the server offers."""

    receiver: ua.NodeId
    methods: dict[str, ua.NodeId]
    job_order_list: ua.NodeId
    response_provider: ua.NodeId | None
    job_order_response_list: ua.NodeId | None


async def discover(
    client: Client,
    link: str,
    receiver: str | None,
    provider: str | None,
) -> JobControlNodes:
    """The configured nodes, or the instances found by browsing for their types."""
    try:
        namespace_index = await client.get_namespace_index(codec.NAMESPACE_URI)
    except ValueError as exc:
        raise LinkMisconfigured(
            f"opcua {link}: the server has no {codec.NAMESPACE_URI} namespace "
            "(no ISA-95 Job Control v2)"
        ) from exc
    if receiver is not None:
        receiver_id = node_id(link, receiver)
    else:
        receiver_id = await _one(client, link, namespace_index, codec.RECEIVER_TYPE, "receiver")
    children = await _children(client, receiver_id)
    if "JobOrderList" not in children:
        raise LinkMisconfigured(
            f"opcua {link}: {receiver_id.to_string()} has no JobOrderList: "
            "is it an ISA95JobOrderReceiverObjectType?"
        )
    if provider is not None:
        provider_id: ua.NodeId | None = node_id(link, provider)
    else:
        found = await _instances(client, namespace_index, codec.RESPONSE_PROVIDER_TYPE)
        provider_id = found[0] if found else None
    responses = (
        (await _children(client, provider_id)).get("JobOrderResponseList")
        if provider_id is not None
        else None
    )
    return JobControlNodes(
        receiver=receiver_id,
        methods=await _methods(client, receiver_id),
        job_order_list=children["JobOrderList"],
        response_provider=provider_id,
        job_order_response_list=responses,
    )


def node_id(link: str, text: str) -> ua.NodeId:
    try:
        return ua.NodeId.from_string(text)
    except (ValueError, UaStringParsingError) as exc:
        raise LinkMisconfigured(f"opcua {link}: {text!r} is not a node id") from exc


async def _one(
    client: Client, link: str, namespace_index: int, type_id: int, what: str
) -> ua.NodeId:
    found = await _instances(client, namespace_index, type_id)
    if len(found) != 1:
        listed = ", ".join(n.to_string() for n in found) or "none"
        raise LinkMisconfigured(
            f"opcua {link}: found {len(found)} job order {what}s ({listed}): "
            "set job_order_receiver to the one to use"
        )
    return found[0]


async def _instances(client: Client, namespace_index: int, type_id: int) -> list[ua.NodeId]:
    """Objects below Objects whose type is ``type_id`` or one of its subtypes."""
    types = await _subtypes(client, ua.NodeId(ua.Int32(type_id), ua.Int16(namespace_index)))
    found: list[ua.NodeId] = []
    level = [client.nodes.objects]
    seen = 0
    for _ in range(MAX_DEPTH):
        following = []
        for parent in level:
            references = await parent.get_children_descriptions(
                refs=ObjectIds.HierarchicalReferences, nodeclassmask=ua.NodeClass.Object
            )
            for reference in references:
                if reference.NodeId == _SERVER:
                    continue
                if reference.TypeDefinition in types:
                    found.append(reference.NodeId)
                else:
                    following.append(client.get_node(reference.NodeId))
            seen += len(references)
        if seen > MAX_NODES or not following:
            break
        level = following
    return found


async def _subtypes(client: Client, type_id: ua.NodeId) -> set[ua.NodeId]:
    types, pending = {type_id}, [type_id]
    while pending:
        node = client.get_node(pending.pop())
        for child in await node.get_children(refs=ObjectIds.HasSubtype):
            if child.nodeid not in types:
                types.add(child.nodeid)
                pending.append(child.nodeid)
    return types


async def _methods(client: Client, node: ua.NodeId) -> dict[str, ua.NodeId]:
    references = await client.get_node(node).get_children_descriptions(
        refs=ObjectIds.HasComponent, nodeclassmask=ua.NodeClass.Method
    )
    return {reference.BrowseName.Name: reference.NodeId for reference in references}


async def _children(client: Client, node: ua.NodeId) -> dict[str, ua.NodeId]:
    references = await client.get_node(node).get_children_descriptions()
    return {reference.BrowseName.Name: reference.NodeId for reference in references}
