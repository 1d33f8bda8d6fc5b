"""``plantsync check-config --probe``: read one page of every ``[[mes_poll]]`` endpoint and print
the messages its mapping makes of it, as Telegraf's ``--test`` does; the store is not touched.

    mes-poll:downtime  GET http://mes.local/api/v1/downtime
      3 records, 3 mapped to equipment.downtime, 0 did not map; cursor '2026-…Z'
      plantsync/v1/plant-01/up/mes/equipment/press-1/downtime {"downtime_id": "DT-1", …}

The page is the first one the agent would read on a fresh store (the configured initial cursor).
Exit 1 when an endpoint cannot be read or a record does not map: the reason names the field and
the JSON pointer it came from.
"""

from __future__ import annotations

import json
from typing import TextIO

from plantsync.config.model import AgentConfig
from plantsync.config.plant import PollEndpointConfig
from plantsync.contracts import Topics
from plantsync.contracts.mes import MES_MESSAGES
from plantsync.drivers.mespoll import BadAnswer
from plantsync.drivers.mespoll.source import MesPollSource, Page
from plantsync.errors import LinkError, LinkMisconfigured

SHOWN = 5
"""Messages (and unmapped records) printed per endpoint."""


async def probe(config: AgentConfig, out: TextIO) -> int:
    """Probe every endpoint; 0 when all were read and every record mapped, else 1."""
    if not config.mes_poll:
        print("no [[mes_poll]] endpoints to probe", file=out)
        return 0
    topics = Topics(config.hub.topic_prefix, config.site.id)
    results = [await _probe_one(endpoint, topics, out) for endpoint in config.mes_poll]
    return 0 if all(results) else 1


async def _probe_one(endpoint: PollEndpointConfig, topics: Topics, out: TextIO) -> bool:
    print(f"mes-poll:{endpoint.name}  {endpoint.method} {endpoint.url}", file=out)
    try:
        async with MesPollSource(endpoint) as source:
            page = await source.fetch(None)
    except BadAnswer as exc:
        print(f"  bad answer ({exc.reason_code}): {exc.detail}", file=out)
        return False
    except (LinkError, LinkMisconfigured) as exc:
        print(f"  cannot be read: {exc}", file=out)
        return False
    _print_page(endpoint, page, topics, out)
    return not page.rejected


def _print_page(endpoint: PollEndpointConfig, page: Page, topics: Topics, out: TextIO) -> None:
    more = ", more pages waiting" if page.more else ""
    print(
        f"  {page.records} records, {len(page.payloads)} mapped to {endpoint.message},"
        f" {len(page.rejected)} did not map; cursor {page.cursor!r}{more}",
        file=out,
    )
    if page.records == 0:
        print("  no records: nothing to check the mapping against", file=out)
    kind = MES_MESSAGES[endpoint.message]
    for payload in page.payloads[:SHOWN]:
        print(f"  {kind.topic(topics, payload)} {payload.model_dump_json()}", file=out)
    for rejected in page.rejected[:SHOWN]:
        record = json.dumps(json.loads(rejected.excerpt)) if _is_json(rejected.excerpt) else ""
        print(f"  DOES NOT MAP: {rejected.reason}\n    record: {record[:300]}", file=out)


def _is_json(excerpt: bytes) -> bool:
    try:
        json.loads(excerpt)
    except ValueError:
        return False
    return True
