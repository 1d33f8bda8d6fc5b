"""What an OPC UA server says about itself: its namespaces and the limits it declares.

    read_server_info(client, config) ─▶ one Read of NamespaceArray, ServerCapabilities and
                                        OperationLimits ─▶ ServerInfo (endpoint, security,
                                        namespace URIs, ServerLimits)

Every client that sends many nodes in one request (browse, read, history read) splits its
requests by these limits: a server answers a request over its limit with BadTooManyOperations,
and a Browse of more nodes than it has continuation points with BadNoContinuationPoints. A
limit the server leaves at 0 (or does not expose) means "no limit declared"; ``batch`` then
falls back to a modest size so one request never carries the whole address space.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asyncua import ua
from asyncua.client.client import Client
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIds

from plantsync.config.plant import OpcUaClientConfig

DEFAULT_BATCH = 100
"""Nodes per request when the server declares no limit."""

_LIMITS = {
    "max_nodes_per_browse": ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
    "max_browse_continuation_points": (
        ObjectIds.Server_ServerCapabilities_MaxBrowseContinuationPoints
    ),
    "max_nodes_per_read": ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
    "max_nodes_per_history_read_data": (
        ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerHistoryReadData
    ),
    "max_history_continuation_points": (
        ObjectIds.Server_ServerCapabilities_MaxHistoryContinuationPoints
    ),
    "max_monitored_items_per_call": (
        ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall
    ),
    "max_nodes_per_method_call": (
        ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerMethodCall
    ),
}
"""ServerLimits field → the Server object's variable that declares it (Part 5, 6.3.2)."""


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """The limits a server declares; 0 where it declares none."""

    max_nodes_per_browse: int = 0
    max_browse_continuation_points: int = 0
    max_nodes_per_read: int = 0
    max_nodes_per_history_read_data: int = 0
    max_history_continuation_points: int = 0
    max_monitored_items_per_call: int = 0
    max_nodes_per_method_call: int = 0

    def browse_batch(self) -> int:
        """Nodes per Browse: within MaxNodesPerBrowse and the continuation points the server
        keeps per session, so no node of a batch is refused one."""
        return batch(self.max_nodes_per_browse, self.max_browse_continuation_points)

    def read_batch(self) -> int:
        return batch(self.max_nodes_per_read)

    def history_batch(self) -> int:
        return batch(self.max_nodes_per_history_read_data, self.max_history_continuation_points)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _LIMITS}


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """One server as the status page shows it."""

    endpoint: str
    security_mode: str
    security_policy: str | None
    namespaces: tuple[str, ...] = ()
    limits: ServerLimits = field(default_factory=ServerLimits)

    def as_dict(self) -> dict[str, object]:
        return {
            "endpoint": self.endpoint,
            "security_mode": self.security_mode,
            "security_policy": self.security_policy,
            "namespaces": list(self.namespaces),
            "limits": self.limits.as_dict(),
        }


def batch(*limits: int) -> int:
    """The smallest declared limit, or ``DEFAULT_BATCH`` when none is declared."""
    declared = [limit for limit in limits if limit > 0]
    return min(declared) if declared else DEFAULT_BATCH


async def read_server_info(client: Client, config: OpcUaClientConfig) -> ServerInfo:
    """Namespaces and limits in one Read (call inside ``map_asyncua_exceptions``)."""
    node_ids = [ObjectIds.Server_NamespaceArray, *_LIMITS.values()]
    params = ua.ReadParameters(
        NodesToRead=[
            ua.ReadValueId(NodeId=ua.NodeId(ua.Int32(node_id)), AttributeId=AttributeIds.Value)
            for node_id in node_ids
        ]
    )
    values = await client.uaclient.session.read(params)
    namespace_array = values[0].Value
    namespaces = namespace_array.Value if namespace_array is not None else None
    limits = {name: _count(value) for name, value in zip(_LIMITS, values[1:], strict=True)}
    policy = config.security_policy.value if config.security_mode.value != "None" else None
    return ServerInfo(
        endpoint=config.endpoint,
        security_mode=config.security_mode.value,
        security_policy=policy,
        namespaces=tuple(str(uri) for uri in namespaces or ()),
        limits=ServerLimits(**limits),
    )


def _count(value: ua.DataValue) -> int:
    if value.StatusCode is not None and not value.StatusCode.is_good():
        return 0
    number = value.Value.Value if value.Value is not None else None
    return int(number) if isinstance(number, int) and number > 0 else 0
