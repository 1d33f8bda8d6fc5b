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
from string import Template
from typing import TYPE_CHECKING

from plantsync.agent.supervisor import LinkState
from plantsync.web.apiviews import (
    DeadLetterView,
    LinkView,
    OutboxView,
    Status,
)
from plantsync.web.depth import DepthSample, depth_chart
from plantsync.web.progress import backfill_card

if TYPE_CHECKING:
    from plantsync.contracts import TagValue

POLL_SECONDS = 2
"""How often the page's script asks for the fragment."""
STALL_SECONDS = 60.0
"""A link that is up, has work waiting and exchanged nothing for this long is "stalled"."""

BACKLOG_SECONDS = 300.0
"""Data that waits this long turns the banner amber, links up or not: the oldest schedule
message not yet applied (down), the oldest ack, status or confirmation not yet sent (up)."""
PREVIEW_CHARS = 300
"""How much of a dead letter the page shows (the API has more): its cards stay light."""

STARTING = {"overview": "<h2>Links</h2><p class='warn'>The agent is starting.</p>"}
"""The sections while the agent's store is not open yet."""


def sections(
    status: Status,
    schedule: str,
    approvals: str,
    letters: list[DeadLetterView],
    machines: dict[str, dict[str, TagValue]],
    samples: list[DepthSample],
    now: float,
) -> dict[str, str]:
    """Each section's HTML by its id; ``samples`` end with the current depth, at ``now``;
    ``schedule`` and ``approvals`` arrive rendered (``web/orders/render.py``)."""
    return {
        "overview": _store_alarms(status) + _certificate_warnings(status) + _overview(status),
        "buffer": _buffer(status, samples, now) + backfill_card(status.backfill),
        "machines": _machines(machines),
        "schedule": schedule,
        "approvals": approvals,
        "dead-letters": _dead_letters(letters, status.dead_letters),
        "agent": _about(status),
    }


def page(
    *, csrf: str, site: str, login: str, sections: dict[str, str] | None, etag: str = ""
) -> str:
    """The whole document around ``login`` (``login_form``); ``sections`` None: locked.
    ``etag`` tags the sections, so the page's first poll is conditional too."""
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
        etag=html.escape(etag),
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


def _certificate_warnings(status: Status) -> str:
    """A certificate that expires within 30 days (or cannot be read), above the links."""
    return "".join(
        f'<p class="verdict warn alarm" data-alarm="certificate">Certificate'
        f" {_e(c.file)} ({_e(c.link)}, {_e(c.role)}): {_e(c.warning)}</p>"
        for c in status.certificates
        if c.warning is not None
    )


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
        elif level == "starting" and worst == "ok":
            worst = "starting"  # no link has failed, but not every one carries data yet
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
        "starting": "Links are connecting: data does not flow everywhere yet.",
    }[worst]
    waits = backlog(status)
    if waits and worst == "ok":
        worst, verdict = "stalled", "Links are up, but data waits."
    return (
        f'<h2>Links</h2><p class="verdict {worst}" data-verdict="{worst}">{verdict}</p>'
        + "".join(
            f'<p class="backlog" data-backlog="{side}">{_e(text)}</p>' for side, text in waits
        )
        + "<table><thead><tr><th>Link</th><th>State</th><th>Last exchange</th>"
        "<th>In state for</th><th>Last error</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def backlog(status: Status) -> list[tuple[str, str]]:
    """What waits longer than ``BACKLOG_SECONDS``, each direction: (down|up, sentence)."""
    waits = []
    down = status.inbox.oldest_pending_age_seconds
    if down is not None and down > BACKLOG_SECONDS:
        waits.append(
            (
                "down",
                f"Schedules wait: the oldest schedule message not yet applied arrived"
                f" {_duration(down)} ago ({status.inbox.pending} waiting; threshold"
                f" {_duration(BACKLOG_SECONDS)}).",
            )
        )
    business = status.outbox.lanes.get("business")
    up = business.oldest_age_seconds if business is not None else None
    if business is not None and up is not None and up > BACKLOG_SECONDS:
        waits.append(
            (
                "up",
                f"Confirmations wait: the oldest ack, status or confirmation not yet sent to the"
                f" hub is {_duration(up)} old ({business.depth} waiting; threshold"
                f" {_duration(BACKLOG_SECONDS)}).",
            )
        )
    return waits


def _peer(link: LinkView) -> str:
    text, until = link.peer or "", link.peer_certificate_not_after
    text += f", its certificate valid until {until:%Y-%m-%d %H:%M} UTC" if until else ""
    return f'<br><small class="peer">{_e(text)}</small>' if text else ""


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
        f" of {_bytes(status.outbox.max_size_bytes)}"
        f"{_dead_letter_bytes(status.outbox.dead_letter_bytes)}{_held(status.outbox)};"
        f" evicted since creation: {status.outbox.evicted_total}.</p>"
        f"<p>Inbox: {inbox.pending} pending"
        f"{f', oldest {_duration(inbox.oldest_pending_age_seconds)}' if inbox.oldest_pending_age_seconds else ''}"  # noqa: E501
        f"; {status.dead_letters} dead letter(s)"
        f"{_conflicts(status.downlink.get('conflicts', 0))}{_alarm_acks(status.downlink)}.</p>"
        f"{_plant_input(status.plant_input)}</div>"
        f"<div>{depth_chart(samples, now)}</div></div>"
    )


def _alarm_acks(counts: dict[str, int]) -> str:
    applied, rejected = counts.get("alarm_acks_applied", 0), counts.get("alarm_acks_rejected", 0)
    return (
        f"; HQ's alarm acks: {applied} applied, {rejected} rejected" if applied or rejected else ""
    )


def _conflicts(count: int) -> str:
    if not count:
        return ""
    return (
        f'; <span class="warn" title="an applied order revision arrived with other content;'
        f' rejected, the applied content stays">{count} revision conflict(s) since start</span>'
    )


def _dead_letter_bytes(held: int) -> str:
    return f" (dead letters {_bytes(held)} of it)" if held else ""


def _held(outbox: OutboxView) -> str:
    keys = f" (idempotency keys {_bytes(outbox.idempotency_key_bytes)})"
    evicted = outbox.dead_letters_evicted
    return (keys if outbox.idempotency_key_bytes else "") + (
        f'; <span class="warn" title="dead letters beyond their share of the cap'
        f' ({_bytes(outbox.dead_letter_cap_bytes)}), oldest first">{evicted} dead letter(s)'
        " evicted for room</span>"
        if evicted
        else ""
    )


def _plant_input(counted: dict[str, int]) -> str:
    """Orders the plant reported that HQ never sent, and retries of its posts, since start."""
    if not any(counted.values()):
        return ""
    return (
        f"<p class='plant-input'>From the plant since start: unplanned orders in"
        f" {counted.get('unplanned_confirmations', 0)} confirmation(s) and"
        f" {counted.get('unplanned_statuses', 0)} status report(s);"
        f" {counted.get('replayed', 0)} retried post(s) answered again,"
        f" {counted.get('conflicts', 0)} refused (key reused).</p>"
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


def _dead_letters(letters: list[DeadLetterView], total: int) -> str:
    if not letters:
        return '<h2>Dead letters</h2><p class="none">None.</p>'
    items = "".join(
        f'<div class="card dead-letter" data-letter="{d.id}">'
        f"<p><b>{_e(d.reason_code)}</b> {_e(d.reason or '')}"
        f" <small>{_e(d.topic)}, {_e(d.dead_at.isoformat(timespec='seconds'))},"
        f" {d.size_bytes} bytes{_kept(d)}</small></p>"
        f"<pre>{_e(d.payload_preview[:PREVIEW_CHARS])}</pre>"
        f'<form method="post" action="/status/dead-letters/{d.id}/retry" data-action>'
        '<button type="submit">Retry</button></form>'
        f'<form method="post" action="/status/dead-letters/{d.id}/discard" data-action>'
        '<button type="submit" class="reject">Discard</button></form></div>'
        for d in letters
    )
    more = f"<p>{total - len(letters)} more not shown.</p>" if total > len(letters) else ""
    return f"<h2>Dead letters</h2>{items}{more}"


def _kept(letter: DeadLetterView) -> str:
    kept = letter.kept_bytes
    return f", the first {kept} kept" if kept is not None and kept < letter.size_bytes else ""


def _about(status: Status) -> str:
    return (
        f"<p class='about'>site {_e(status.site)} · plantsync {_e(status.version)} ·"
        f" config {_e(status.config_hash)} · up {_duration(status.uptime_seconds)}"
        "</p>"
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
<meta name="sections-etag" content="$etag">
<title>plantsync · $site</title>
<link rel="icon" type="image/svg+xml" href="/status/static/favicon.svg">
<link rel="stylesheet" href="/status/static/status.css">
<script src="/status/static/status.js" defer></script>
</head><body>
<header><h1>plantsync <span class="site">$site</span></h1>$login
<p id="updated" class="updated"></p>
<p id="message" role="status"></p></header>
<main>
$sections
</main></body></html>
"""
)
