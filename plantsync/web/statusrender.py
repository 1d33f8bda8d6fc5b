"""The status page's HTML: pure functions from the API's view models to markup, no I/O.

    Status, Schedule, WaitingChange, DeadLetterView, depth samples, latest readings
        ──▶ sections(...) ──▶ {"overview": html, "buffer": html, …}  (the fragment's JSON)
        ──▶ page(...)     ──▶ the whole document, the sections inside it

Everything from outside (link errors, reasons, topics, payloads, tag values) passes through
``html.escape``; free text has been scrubbed of secrets by the views already. No URL names a
host and the chart is inline SVG, so the page works air-gapped under its CSP.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from string import Template
from typing import TYPE_CHECKING, Any

from plantsync.agent.supervisor import LinkState
from plantsync.web.apiviews import (
    DeadLetterView,
    LinkView,
    Schedule,
    Status,
    WaitingChange,
)
from plantsync.web.depth import HISTORY_POINTS, SAMPLE_SECONDS, DepthSample

if TYPE_CHECKING:
    from plantsync.contracts import TagValue

POLL_SECONDS = 2
"""How often the page's script asks for the fragment."""
STALL_SECONDS = 60.0
"""A link that is up, has work waiting and exchanged nothing for this long is "stalled"."""

STARTING = {"overview": "<h2>Links</h2><p class='warn'>The agent is starting.</p>"}
"""The sections while the agent's store is not open yet."""


def sections(
    status: Status,
    schedule: Schedule,
    waiting: list[WaitingChange],
    letters: list[DeadLetterView],
    machines: dict[str, dict[str, TagValue]],
    samples: list[DepthSample],
    now: float,
) -> dict[str, str]:
    """Each section's HTML by its id; ``samples`` end with the current depth, at ``now``."""
    return {
        "overview": _store_alarms(status) + _overview(status),
        "buffer": _buffer(status, samples, now),
        "machines": _machines(machines),
        "schedule": _schedule(schedule),
        "approvals": _approvals(waiting),
        "dead-letters": _dead_letters(letters, status.dead_letters),
        "agent": _about(status),
    }


def page(*, csrf: str, site: str, login: str, sections: dict[str, str] | None) -> str:
    """The whole document around ``login`` (``login_form``); ``sections`` None: locked."""
    body = (
        _SECTION_LOCKED
        if sections is None
        else "\n".join(
            f'<section id="{name}" data-section="{name}">{content}</section>'
            for name, content in sections.items()
        )
    )
    return _PAGE.substitute(
        csrf=html.escape(csrf),
        site=html.escape(site),
        login=login,
        sections=body,
        poll=POLL_SECONDS * 1000,
    )


def link_level(name: str, link: LinkView, status: Status) -> tuple[str, str]:
    """(css level, label): ok (green), stalled (amber), down (red), starting (grey).

    Idle time is the monotonic time since the last exchange (or since the link came up): a
    wall-clock step neither makes every link look stalled nor hides a stalled one."""
    if link.state is LinkState.UP:
        if _work_waiting(name, status):
            idle = link.seconds_in_state
            if link.seconds_since_activity is not None:
                idle = min(idle, link.seconds_since_activity)
            if idle > STALL_SECONDS:
                return "stalled", f"connected, nothing flows for {_duration(idle)}"
        return "ok", "up"
    if link.state in (LinkState.BACKOFF, LinkState.FAILED):
        return "down", link.state.value
    if link.state is LinkState.STOPPED:
        return "down", "stopped"
    if link.failures:  # connecting again after a failure: still down
        return "down", "reconnecting"
    return "starting", link.state.value


def _losses(link: LinkView) -> str:
    """A warning when the link lost values this session, and why, for plant IT."""
    counters = link.counters
    parts = []
    if counters.get("overflows"):
        parts.append(f"{counters['overflows']} values overflowed the server's queues")
    if counters.get("dropped"):
        parts.append(f"{counters['dropped']} dropped by the agent (it fell behind)")
    if not parts:
        return ""
    if counters.get("more_notifications"):
        parts.append(
            f"the server capped {counters['more_notifications']} messages"
            f" ({counters.get('publish_requests', 1)} requests in flight)"
        )
    return f'<span class="warn loss">Data lost: {_e("; ".join(parts))}.</span>'


def _work_waiting(name: str, status: Status) -> bool:
    if name == "hub":
        return status.outbox.depth > 0
    if name == "plant":
        return status.inbox.pending > 0
    return True  # a source link is expected to report


# ---- rendering -------------------------------------------------------------------------------

_e = html.escape


def _store_alarms(status: Status) -> str:
    """The store's alarms, above everything: they hold until their cause is gone."""
    return "".join(
        f'<p class="verdict down alarm" data-alarm="store">{_e(alarm)}</p>'
        for alarm in status.store.alarms
    )


def _overview(status: Status) -> str:
    rows = []
    worst = "ok"
    for name, link in status.links.items():
        level, label = link_level(name, link, status)
        if level in ("down", "stalled") and worst != "down":
            worst = level
        idle = link.seconds_since_activity
        rows.append(
            f'<tr class="link" data-link="{_e(name)}" data-level="{level}">'
            f'<td><span class="dot {level}"></span>{_e(_link_title(name))}{_peer(link)}'
            f"{_server(link)}</td>"
            f'<td class="state {level}">{_e(label)}</td>'
            f"<td>{f'{_duration(idle)} ago' if idle is not None else 'never'}</td>"
            f"<td>{_duration(link.seconds_in_state)}</td>"
            f'<td class="error {level}">{_e(link.last_error or "")}{_losses(link)}</td></tr>'
        )
    verdict = {
        "ok": "Data flows.",
        "stalled": "Connected, but data does not flow on a link.",
        "down": "A link is down: data stops there.",
    }[worst]
    return (
        f'<h2>Links</h2><p class="verdict {worst}" data-verdict="{worst}">{verdict}</p>'
        "<table><thead><tr><th>Link</th><th>State</th><th>Last exchange</th>"
        "<th>In state for</th><th>Last error</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _peer(link: LinkView) -> str:
    return f'<br><small class="peer">{_e(link.peer)}</small>' if link.peer else ""


def _server(link: LinkView) -> str:
    """An OPC UA server's endpoint and security, its namespaces and limits folded below."""
    server = link.server
    if server is None:
        return ""
    security = " ".join(filter(None, [server.security_mode, server.security_policy]))
    namespaces = "".join(
        f"<li>ns={index} {_e(uri)}</li>" for index, uri in enumerate(server.namespaces)
    )
    limits = ", ".join(f"{_e(k)} {v or 'none'}" for k, v in server.limits.items())
    return (
        f'<details class="server"><summary>{_e(server.endpoint)} · {_e(security)}</summary>'
        f"<ul>{namespaces}</ul><small>{limits}</small></details>"
    )


def _link_title(name: str) -> str:
    if name == "hub":
        return "MQTT hub"
    if name == "plant":
        return "MES / plant"
    return f"OPC UA {name.removeprefix('opcua:')}"


def _buffer(status: Status, samples: list[DepthSample], now: float) -> str:
    lanes = "".join(
        f"<tr><td>{_e(lane)}</td><td>{view.depth}</td>"
        f"<td>{_duration(view.oldest_age_seconds) if view.oldest_age_seconds else '-'}</td></tr>"
        for lane, view in status.outbox.lanes.items()
    )
    inbox = status.inbox
    return (
        "<h2>Buffer</h2><div class='cols'><div>"
        "<table><thead><tr><th>Outbox lane</th><th>Depth</th><th>Oldest</th></tr></thead>"
        f"<tbody>{lanes}</tbody></table>"
        f"<p>Outbox {status.outbox.depth} messages, {_bytes(status.outbox.size_bytes)}"
        f" of {_bytes(status.outbox.max_size_bytes)};"
        f" evicted since creation: {status.outbox.evicted_total}.</p>"
        f"<p>Inbox: {inbox.pending} pending"
        f"{f', oldest {_duration(inbox.oldest_pending_age_seconds)}' if inbox.oldest_pending_age_seconds else ''}"  # noqa: E501
        f"; {status.dead_letters} dead letter(s).</p></div>"
        f"<div>{depth_chart(samples, now)}</div></div>"
    )


_LANE_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")


def depth_chart(samples: list[DepthSample], now: float, width: int = 480, height: int = 140) -> str:
    """The outbox depth per lane over the last hour, as inline SVG (no script, no library)."""
    start = now - HISTORY_POINTS * SAMPLE_SECONDS
    points = [s for s in samples if s.at >= start]
    lanes = sorted({lane for s in points for lane in s.lanes})
    top = max([1, *(depth for s in points for depth in s.lanes.values())])
    pad = 24

    def x(at: float) -> float:
        return pad + (at - start) / (now - start) * (width - pad - 4)

    def y(depth: int) -> float:
        return height - pad - depth / top * (height - pad - 8)

    lines = []
    legend = []
    for index, lane in enumerate(lanes):
        color = _LANE_COLORS[index % len(_LANE_COLORS)]
        coords = " ".join(f"{x(s.at):.1f},{y(s.lanes.get(lane, 0)):.1f}" for s in points)
        lines.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{coords}"/>')
        legend.append(
            f'<text x="{pad + 8 + index * 90}" y="16" fill="{color}"'
            f' font-size="11">{_e(lane)}</text>'
        )
    return (
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}"'
        f' height="{height}" aria-label="outbox depth, last hour">'
        "<title>Outbox depth per lane, last hour</title>"
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - 4}" y2="{height - pad}"'
        ' stroke="#999"/>'
        f'<line x1="{pad}" y1="8" x2="{pad}" y2="{height - pad}" stroke="#999"/>'
        f'<text x="2" y="12" font-size="10" fill="#555">{top}</text>'
        f'<text x="2" y="{height - pad}" font-size="10" fill="#555">0</text>'
        f'<text x="{width - 60}" y="{height - pad + 12}" font-size="10" fill="#555">now</text>'
        f'<text x="{pad}" y="{height - pad + 12}" font-size="10" fill="#555">-60 min</text>'
        f"{''.join(lines)}{''.join(legend)}</svg>"
    )


def _machines(latest: dict[str, dict[str, TagValue]]) -> str:
    if not latest:
        return "<h2>Machines</h2><p>No reading received since the agent started.</p>"
    rows = []
    for machine, tags in sorted(latest.items()):
        values = ", ".join(
            f'<span class="tag q-{_e(str(v.quality))}">{_e(tag)}={_e(str(v.value))}</span>'
            for tag, v in sorted(tags.items())
        )
        times = [v.source_time for v in tags.values() if v.source_time is not None]
        last = max(times).isoformat(timespec="seconds") if times else "-"
        rows.append(
            f'<tr data-machine="{_e(machine)}"><td>{_e(machine)}</td>'
            f"<td>{values}</td><td>{_e(last)}</td></tr>"
        )
    return (
        "<h2>Machines</h2><table><thead><tr><th>Machine</th><th>Latest values</th>"
        f"<th>Source time</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _schedule(schedule: Schedule) -> str:
    if not schedule.work_centers:
        return "<h2>Schedule</h2><p>No schedule received yet.</p>"
    parts = ["<h2>Schedule <small>(last known good)</small></h2>"]
    for center in schedule.work_centers:
        rows = "".join(
            f'<tr data-order="{_e(o.order_id)}"><td>{_e(o.order_id)}</td><td>{o.revision}</td>'
            f"<td>{_e(o.order.product_id)}</td>"
            f"<td>{_e(o.planned_start.isoformat(timespec='minutes') if o.planned_start else '-')}"
            f'</td><td class="order-status">{_e(o.status)}</td>'
            f'<td class="correlation">{_e(o.correlation_id or "-")}</td></tr>'
            for o in center.orders
        )
        parts.append(
            f"<h3>{_e(center.work_center)}</h3><table><thead><tr><th>Order</th><th>Rev</th>"
            "<th>Product</th><th>Planned start</th><th>Status</th>"
            '<th title="of the schedule message that applied it">Correlation</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
        )
    return "".join(parts)


def _approvals(waiting: list[WaitingChange]) -> str:
    if not waiting:
        return '<h2>Approvals</h2><p class="none">No change waits for a planner.</p>'
    items = []
    for change in waiting:
        orders = "".join(
            f"<li>{_e(o.order_id)} rev {o.revision}: {_order_change(o.current, o.proposed)}</li>"
            for o in change.orders
        )
        action = f"/status/approvals/{change.row_id}"
        items.append(
            f'<div class="card approval" data-row="{change.row_id}">'
            f"<p><b>{_e(change.type or 'change')}</b> {_e(', '.join(change.order_ids))}"
            f" received {_e(change.received_at.isoformat(timespec='seconds'))}"
            f"{f' - {_e(change.reason)}' if change.reason else ''}</p><ul>{orders}</ul>"
            f'<form method="post" action="{action}/approve" data-action>'
            '<button type="submit" class="approve">Approve</button></form>'
            f'<form method="post" action="{action}/reject" data-action>'
            '<input name="reason" required maxlength="500" placeholder="reason">'
            '<button type="submit" class="reject">Reject</button></form></div>'
        )
    return f"<h2>Approvals</h2>{''.join(items)}"


def _order_change(current: Any, proposed: Any) -> str:
    if proposed is None:
        return "cancel"
    if current is None:
        return "new"
    changed = [
        key
        for key, value in proposed.model_dump(mode="json").items()
        if current.model_dump(mode="json").get(key) != value
    ]
    return _e(", ".join(changed) or "no field changes")


def _dead_letters(letters: list[DeadLetterView], total: int) -> str:
    if not letters:
        return '<h2>Dead letters</h2><p class="none">None.</p>'
    items = "".join(
        f'<div class="card dead-letter" data-letter="{d.id}">'
        f"<p><b>{_e(d.reason_code)}</b> {_e(d.reason or '')}"
        f" <small>{_e(d.topic)}, {_e(d.dead_at.isoformat(timespec='seconds'))},"
        f" {d.size_bytes} bytes</small></p>"
        f"<pre>{_e(d.payload_preview[:1000])}</pre>"
        f'<form method="post" action="/status/dead-letters/{d.id}/retry" data-action>'
        '<button type="submit">Retry</button></form>'
        f'<form method="post" action="/status/dead-letters/{d.id}/discard" data-action>'
        '<button type="submit" class="reject">Discard</button></form></div>'
        for d in letters
    )
    more = f"<p>{total - len(letters)} more not shown.</p>" if total > len(letters) else ""
    return f"<h2>Dead letters</h2>{items}{more}"


def _about(status: Status) -> str:
    return (
        f"<p class='about'>site {_e(status.site)} · plantsync {_e(status.version)} ·"
        f" config {_e(status.config_hash)} · up {_duration(status.uptime_seconds)}"
        f" · page updated {datetime.now(UTC).strftime('%H:%M:%S')} UTC</p>"
    )


def login_form(*, token_configured: bool, logged_in: bool) -> str:
    """The header's form: log in to act, log out, or why actions are off."""
    if not token_configured:
        return "<p class='login'>No API token is configured: actions are off.</p>"
    if logged_in:
        return (
            '<form class="login" id="logout" method="post" action="/status/logout">'
            '<button type="submit">Log out</button></form>'
        )
    return (
        '<form class="login" id="login" method="post" action="/status/login">'
        '<input type="password" name="token" autocomplete="off" placeholder="API token"'
        ' required><button type="submit">Log in to act</button></form>'
    )


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def _bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"


_SECTION_LOCKED = (
    '<section id="locked"><p>This agent serves its status to the network only after'
    " login: enter the API token above.</p></section>"
)

_PAGE = Template(
    """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf-token" content="$csrf">
<meta name="poll-ms" content="$poll">
<title>plantsync · $site</title>
<link rel="stylesheet" href="/status/static/status.css">
<script src="/status/static/status.js" defer></script>
</head><body>
<header><h1>plantsync <span class="site">$site</span></h1>$login
<p id="message" role="status"></p></header>
<main>
$sections
</main></body></html>
"""
)
