"""Discovery: walk an OPC UA server's address space for the variables a plant would read.

    start (Objects) ─▶ Browse, level by level to ``depth`` (batches of ServerLimits.browse_batch)
                        └▶ BrowseNext while the server hands back continuation points
                   ─▶ variables (not in namespace 0) and their EngineeringUnits / EURange properties
                   ─▶ Read DataType, ValueRank, AccessLevel, Historizing, the properties' values
                      (batches of ServerLimits.read_batch)
                   ─▶ FoundMachine: an Object with the variables below it, as ``FoundTag``s

A variable belongs to the nearest Object above it; its tag path is the browse names from that
Object down. Every continuation point is drained before the next Browse, so the server never
holds more than one Browse's worth, and a node refused one (BadNoContinuationPoints) is asked
again in a smaller batch. Used by ``plantsync opcua browse``; reads only, changes nothing.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from asyncua import ua
from asyncua.client.ua_session import UaSession
from asyncua.ua.attribute_ids import AttributeIds
from asyncua.ua.object_ids import ObjectIdNames, ObjectIds
from asyncua.ua.status_codes import StatusCodes

from plantsync.drivers.common.uaserver import ServerLimits

_logger = logging.getLogger(__name__)

MAX_REFERENCES_PER_NODE = 1000
"""References asked per node and Browse; a server may hand back fewer and a continuation point."""

_HAS_PROPERTY = ua.NodeId(ua.Int32(ObjectIds.HasProperty))
_METADATA = ("EngineeringUnits", "EURange")
_ATTRIBUTES = (
    AttributeIds.DataType,
    AttributeIds.ValueRank,
    AttributeIds.AccessLevel,
    AttributeIds.Historizing,
)


@dataclass(frozen=True, slots=True)
class FoundTag:
    """One variable, with what plant IT needs to decide whether to read it."""

    node_id: str
    path: tuple[str, ...]
    """Browse names from its machine's Object down (one name for a direct child)."""
    browse_path: str
    """From Objects, as ``browse_path`` in the config takes it: ``2:press-1/2:speed``."""
    data_type: str
    value_rank: int
    units: str | None = None
    eu_range: tuple[float, float] | None = None
    history: bool = False
    """AccessLevel has HistoryRead: the server keeps (and serves) its past values."""


@dataclass(slots=True)
class FoundMachine:
    """An Object with variables below it."""

    node_id: str
    name: str
    browse_path: str
    tags: list[FoundTag] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class _Node:
    node_id: ua.NodeId
    name: ua.QualifiedName
    node_class: ua.NodeClass
    parent: _Node | None = None
    properties: dict[str, ua.NodeId] = field(default_factory=dict)

    def names(self) -> list[ua.QualifiedName]:
        """Browse names from the start node (excluded) down to this one."""
        node: _Node | None = self
        names: list[ua.QualifiedName] = []
        while node is not None and node.parent is not None:
            names.append(node.name)
            node = node.parent
        return names[::-1]


class Browser:
    """Walks one server's address space within its declared limits."""

    def __init__(self, session: UaSession, limits: ServerLimits) -> None:
        self._session, self._limits = session, limits
        self.requests = 0
        """Browse and BrowseNext requests sent; a test reads it to see the limits at work."""

    async def machines(
        self,
        *,
        start: ua.NodeId | None = None,
        depth: int = 3,
        filters: Sequence[str] = (),
    ) -> list[FoundMachine]:
        """Objects down to ``depth`` levels below ``start`` (Objects) with their variables;
        with ``filters``, only variables whose name path (``press-1/speed``) matches one."""
        root = _Node(
            start or ua.NodeId(ua.Int32(ObjectIds.ObjectsFolder)),
            ua.QualifiedName(),
            ua.NodeClass.Object,
        )
        variables = await self._walk(root, depth)
        wanted = [node for node in variables if _matches(node, filters)]
        return await self._describe(wanted)

    async def _walk(self, root: _Node, depth: int) -> list[_Node]:
        seen = {root.node_id}
        variables: list[_Node] = []
        level = [root]
        for step in range(depth + 1):
            last = step == depth  # one more level only for the properties of variables
            if last:
                level = [node for node in level if node.node_class == ua.NodeClass.Variable]
            next_level: list[_Node] = []
            for parent, ref in await self.children(level):
                node_id = ua.NodeId(ref.NodeId.Identifier, ref.NodeId.NamespaceIndex)
                if ref.ReferenceTypeId == _HAS_PROPERTY:
                    if (
                        parent.node_class == ua.NodeClass.Variable
                        and ref.BrowseName.Name in _METADATA
                    ):
                        parent.properties[ref.BrowseName.Name] = node_id
                    continue
                if last or node_id in seen or node_id.NamespaceIndex == 0:
                    continue
                seen.add(node_id)
                node = _Node(node_id, ref.BrowseName, ref.NodeClass, parent)
                if node.node_class == ua.NodeClass.Variable:
                    variables.append(node)
                next_level.append(node)
            level = next_level
        return variables

    async def children(self, nodes: Sequence[_Node]) -> list[tuple[_Node, ua.ReferenceDescription]]:
        """Every hierarchical forward reference of ``nodes`` to Objects and Variables."""
        found: list[tuple[_Node, ua.ReferenceDescription]] = []
        pending, size = list(nodes), self._limits.browse_batch()
        while pending:
            chunk, pending = pending[:size], pending[size:]
            refused = await self._browse(chunk, found)
            if refused:
                if size == 1:
                    _logger.warning("browse: %s refused a continuation point", refused[0].node_id)
                    refused = refused[1:]
                size = max(1, min(size, len(chunk)) // 2)
                pending = refused + pending
        return found

    async def _browse(
        self, chunk: list[_Node], found: list[tuple[_Node, ua.ReferenceDescription]]
    ) -> list[_Node]:
        """One Browse and the BrowseNext calls it needs; returns the nodes refused a
        continuation point (BadNoContinuationPoints), to ask again."""
        params = ua.BrowseParameters(
            NodesToBrowse=[_description(node.node_id) for node in chunk],
            RequestedMaxReferencesPerNode=MAX_REFERENCES_PER_NODE,
        )
        self.requests += 1
        results = await self._session.browse(params)
        refused: list[_Node] = []
        continuing: list[tuple[_Node, bytes]] = []
        for node, result in zip(chunk, results, strict=True):
            if result.StatusCode.value == StatusCodes.BadNoContinuationPoints:
                refused.append(node)
                continue
            self._take(node, result, found, continuing)
        while continuing:
            continuing = await self._next(continuing, found)
        return refused

    async def _next(
        self,
        continuing: list[tuple[_Node, bytes]],
        found: list[tuple[_Node, ua.ReferenceDescription]],
    ) -> list[tuple[_Node, bytes]]:
        params = ua.BrowseNextParameters(
            ReleaseContinuationPoints=False,
            ContinuationPoints=[point for _, point in continuing],
        )
        self.requests += 1
        results = await self._session.browse_next(params)
        still: list[tuple[_Node, bytes]] = []
        for (node, _), result in zip(continuing, results, strict=True):
            self._take(node, result, found, still)
        return still

    @staticmethod
    def _take(
        node: _Node,
        result: ua.BrowseResult,
        found: list[tuple[_Node, ua.ReferenceDescription]],
        continuing: list[tuple[_Node, bytes]],
    ) -> None:
        if not result.StatusCode.is_good():
            _logger.info("browse %s: %s", node.node_id.to_string(), result.StatusCode.name)
            return
        found.extend((node, ref) for ref in result.References)
        if result.ContinuationPoint:
            continuing.append((node, result.ContinuationPoint))

    # -- describing --------------------------------------------------------------------------

    async def _describe(self, variables: list[_Node]) -> list[FoundMachine]:
        reads = [(node.node_id, attribute) for node in variables for attribute in _ATTRIBUTES] + [
            (prop, AttributeIds.Value)
            for node in variables
            for prop in (node.properties.get(name) for name in _METADATA)
            if prop is not None
        ]
        values = dict(zip(reads, await self.read(reads), strict=True))
        type_names = await self._type_names(
            {values[(node.node_id, AttributeIds.DataType)] for node in variables}
        )
        machines: dict[int, FoundMachine] = {}
        for node in variables:
            owner = _owner(node)
            machine = machines.get(id(owner))
            if machine is None:
                machine = machines[id(owner)] = FoundMachine(
                    owner.node_id.to_string(), owner.name.Name or "objects", _path(owner)
                )
            machine.tags.append(_tag(node, owner, values, type_names))
        return list(machines.values())

    async def read(self, reads: Sequence[tuple[ua.NodeId, AttributeIds]]) -> list[object]:
        """Attribute values in batches of the server's MaxNodesPerRead; None where bad."""
        out: list[object] = []
        size = self._limits.read_batch()
        for start in range(0, len(reads), size):
            chunk = reads[start : start + size]
            params = ua.ReadParameters(
                NodesToRead=[
                    ua.ReadValueId(NodeId=node_id, AttributeId=attribute)
                    for node_id, attribute in chunk
                ]
            )
            for value in await self._session.read(params):
                good = value.StatusCode is None or value.StatusCode.is_good()
                out.append(value.Value.Value if good and value.Value is not None else None)
        return out

    async def _type_names(self, data_types: set[object]) -> dict[ua.NodeId, str]:
        """Standard types by their name in the spec, the server's own by their BrowseName."""
        names: dict[ua.NodeId, str] = {}
        custom = []
        for data_type in data_types:
            if not isinstance(data_type, ua.NodeId):
                continue
            if data_type.NamespaceIndex == 0 and isinstance(data_type.Identifier, int):
                names[data_type] = ObjectIdNames.get(data_type.Identifier, data_type.to_string())
            else:
                custom.append(data_type)
        read = await self.read([(data_type, AttributeIds.BrowseName) for data_type in custom])
        for data_type, name in zip(custom, read, strict=True):
            names[data_type] = (
                name.Name if isinstance(name, ua.QualifiedName) else data_type.to_string()
            )
        return names


def _description(node_id: ua.NodeId) -> ua.BrowseDescription:
    return ua.BrowseDescription(
        NodeId=node_id,
        BrowseDirection=ua.BrowseDirection.Forward,
        ReferenceTypeId=ua.NodeId(ua.Int32(ObjectIds.HierarchicalReferences)),
        IncludeSubtypes=True,
        NodeClassMask=ua.NodeClass.Object | ua.NodeClass.Variable,
        ResultMask=ua.BrowseResultMask.All,
    )


def _owner(node: _Node) -> _Node:
    """The nearest Object above a variable (the start node when there is none)."""
    owner = node.parent
    while (
        owner is not None and owner.parent is not None and owner.node_class != ua.NodeClass.Object
    ):
        owner = owner.parent
    assert owner is not None
    return owner


def _path(node: _Node) -> str:
    return "/".join(f"{name.NamespaceIndex}:{name.Name}" for name in node.names())


def _matches(node: _Node, filters: Sequence[str]) -> bool:
    if not filters:
        return True
    names = "/".join(name.Name for name in node.names())
    return any(fnmatch.fnmatchcase(names, pattern) for pattern in filters)


def _tag(
    node: _Node,
    owner: _Node,
    values: dict[tuple[ua.NodeId, AttributeIds], object],
    type_names: dict[ua.NodeId, str],
) -> FoundTag:
    data_type = values[(node.node_id, AttributeIds.DataType)]
    access = values[(node.node_id, AttributeIds.AccessLevel)]
    rank = values[(node.node_id, AttributeIds.ValueRank)]
    units = _value(values, node, "EngineeringUnits")
    eu_range = _value(values, node, "EURange")
    depth = len(owner.names())
    return FoundTag(
        node_id=node.node_id.to_string(),
        path=tuple(name.Name for name in node.names()[depth:]),
        browse_path=_path(node),
        data_type=type_names.get(data_type, "?") if isinstance(data_type, ua.NodeId) else "?",
        value_rank=rank if isinstance(rank, int) else -1,
        units=units.DisplayName.Text if isinstance(units, ua.EUInformation) else None,
        eu_range=(eu_range.Low, eu_range.High) if isinstance(eu_range, ua.Range) else None,
        history=isinstance(access, int) and bool(access & ua.AccessLevel.HistoryRead.mask),
    )


def _value(values: dict[tuple[ua.NodeId, AttributeIds], object], node: _Node, name: str) -> object:
    prop = node.properties.get(name)
    return None if prop is None else values.get((prop, AttributeIds.Value))
