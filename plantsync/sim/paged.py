"""asyncua servers that page their Browse answers and hold few continuation points, as the
servers in plants do.

asyncua's server answers every Browse with all references at once, implements no BrowseNext,
and declares 10,000 for every operation limit, so a client tested only against it never meets
a continuation point or a limit. Inside ``browse_paged(page, continuation_points,
nodes_per_browse)`` the asyncua servers of this process:

- answer at most ``page`` references per node and hand back a continuation point for the rest
  (whatever the client asked as RequestedMaxReferencesPerNode: a server may send fewer);
- keep at most ``continuation_points`` per session: a node beyond them is refused with
  BadNoContinuationPoints (OPC UA Part 4, 5.8.2);
- refuse a Browse of more than ``nodes_per_browse`` nodes with BadTooManyOperations;
- answer BrowseNext (release included) from the points they hold.

``declare_limits`` writes the limits into the server's ServerCapabilities, where a client reads
them. ``PagingCounters`` (``paging.counters``) says what the server saw. Only the server side
changes; the client code in the same process is untouched.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.common.utils import ServiceError
from asyncua.server.internal_session import InternalSession
from asyncua.server.server import Server
from asyncua.server.uaprocessor import UaProcessor
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes
from asyncua.ua.ua_binary import struct_from_binary

_BROWSE_NEXT = ua.NodeId(ua.Int32(ObjectIds.BrowseNextRequest_Encoding_DefaultBinary))
_points = itertools.count(1)


@dataclass
class PagingCounters:
    """What the paging servers of this process saw."""

    browse_requests: int = 0
    browse_next_requests: int = 0
    largest_browse: int = 0
    refused_points: int = 0
    """Nodes answered BadNoContinuationPoints."""
    too_many_operations: int = 0
    """Browse requests refused with BadTooManyOperations."""


@dataclass
class _Paging:
    page: int
    continuation_points: int
    nodes_per_browse: int
    counters: PagingCounters


paging: _Paging | None = None
"""The settings in force (inside ``browse_paged``), else None."""


def _held(session: InternalSession) -> dict[bytes, list[ua.ReferenceDescription]]:
    held: dict[bytes, list[ua.ReferenceDescription]] = session.__dict__.setdefault(
        "_plantsync_continuation_points", {}
    )
    return held


def _page(
    session: InternalSession, references: list[ua.ReferenceDescription], settings: _Paging
) -> ua.BrowseResult:
    result = ua.BrowseResult(References=references[: settings.page])
    rest = references[settings.page :]
    if rest:
        held = _held(session)
        if len(held) >= settings.continuation_points:
            settings.counters.refused_points += 1
            return ua.BrowseResult(
                StatusCode=ua.StatusCode(ua.UInt32(StatusCodes.BadNoContinuationPoints))
            )
        point = next(_points).to_bytes(8, "big")
        held[point] = rest
        result.ContinuationPoint = point
    return result


async def _browse(session: InternalSession, params: ua.BrowseParameters) -> list[ua.BrowseResult]:
    settings = paging
    results: list[ua.BrowseResult] = session.iserver.view_service.browse(params)
    if settings is None or not session.external:  # the server's own browsing is not paged
        return results
    settings.counters.browse_requests += 1
    settings.counters.largest_browse = max(
        settings.counters.largest_browse, len(params.NodesToBrowse)
    )
    if len(params.NodesToBrowse) > settings.nodes_per_browse:
        settings.counters.too_many_operations += 1
        raise ServiceError(StatusCodes.BadTooManyOperations)
    return [
        _page(session, result.References, settings) if result.StatusCode.is_good() else result
        for result in results
    ]


async def _browse_next(
    session: InternalSession, params: ua.BrowseNextParameters
) -> list[ua.BrowseResult]:
    settings = paging
    if settings is None:
        raise ServiceError(StatusCodes.BadServiceUnsupported)
    settings.counters.browse_next_requests += 1
    held = _held(session)
    results = []
    for point in params.ContinuationPoints:
        references = held.pop(point, None)
        if references is None:
            results.append(
                ua.BrowseResult(
                    StatusCode=ua.StatusCode(ua.UInt32(StatusCodes.BadContinuationPointInvalid))
                )
            )
        elif params.ReleaseContinuationPoints:
            results.append(ua.BrowseResult())
        else:
            results.append(_page(session, references, settings))
    return results


async def _process_message(
    self: UaProcessor, typeid: ua.NodeId, requesthdr: Any, seqhdr: Any, body: Any
) -> bool:
    if typeid == _BROWSE_NEXT and paging is not None and self.session is not None:
        params = struct_from_binary(ua.BrowseNextParameters, body)
        response = ua.BrowseNextResponse()
        response.Parameters.Results = await _browse_next(self.session, params)
        self.send_response(requesthdr.RequestHandle, seqhdr, response)  # type: ignore[no-untyped-call]
        return True
    result: bool = await _ORIGINAL_PROCESS(self, typeid, requesthdr, seqhdr, body)  # type: ignore[no-untyped-call]
    return result


_ORIGINAL_PROCESS = UaProcessor._process_message


@contextlib.contextmanager
def browse_paged(
    page: int, *, continuation_points: int, nodes_per_browse: int
) -> Iterator[PagingCounters]:
    """Servers of this process page Browse answers inside the block; yields the counters."""
    global paging
    counters = PagingCounters()
    paging = _Paging(page, continuation_points, nodes_per_browse, counters)
    original_browse = InternalSession.browse
    InternalSession.browse = _browse  # type: ignore[method-assign,assignment]
    UaProcessor._process_message = _process_message  # type: ignore[method-assign]
    try:
        yield counters
    finally:
        InternalSession.browse = original_browse  # type: ignore[method-assign]
        UaProcessor._process_message = _ORIGINAL_PROCESS  # type: ignore[method-assign]
        paging = None


async def declare_limits(
    server: Server, *, nodes_per_browse: int, continuation_points: int
) -> None:
    """Write MaxNodesPerBrowse and MaxBrowseContinuationPoints where clients read them."""
    capabilities = {
        ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse: (
            nodes_per_browse,
            ua.VariantType.UInt32,
        ),
        ObjectIds.Server_ServerCapabilities_MaxBrowseContinuationPoints: (
            continuation_points,
            ua.VariantType.UInt16,
        ),
    }
    for node_id, (value, variant_type) in capabilities.items():
        await server.get_node(ua.NodeId(ua.Int32(node_id))).write_value(
            ua.Variant(value, variant_type)
        )
