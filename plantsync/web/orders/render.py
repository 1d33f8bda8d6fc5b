"""The HTML of the schedule's page, an approval's field-by-field diff, and an order's timeline.

Pure functions from view models to markup, like ``statusrender``; everything from outside
passes through ``html.escape``, and every URL is relative to the agent (the page's CSP).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from plantsync.contracts.schedule import ProductionOrder
from plantsync.web.apiviews import WaitingChange
from plantsync.web.orders.paging import Filters, SchedulePageView
from plantsync.web.orders.timeline import OrderTimelineView, TimelineEvent

_e = html.escape


def order_link(order_id: str) -> str:
    """The page's URL of one order's timeline."""
    return f"/status/orders/{quote(order_id, safe='')}"


def schedule(page: SchedulePageView, wanted: Filters) -> str:
    """The schedule section: the filters, one page of orders, the pager."""
    head = "<h2>Schedule <small>(last known good)</small></h2>"
    if not page.total:
        return head + "<p>No schedule received yet.</p>"
    first = (page.page - 1) * page.page_size + 1
    shown = (
        f"Orders {first:,}&ndash;{first + len(page.orders) - 1:,} of {page.matching:,} matching"
        if page.orders
        else f"No order on this page of {page.matching:,} matching"
    )
    single = (
        f' <a class="timeline-link" href="{order_link(page.orders[0].order_id)}">'
        f"timeline of {_e(page.orders[0].order_id)}</a>"
        if page.matching == 1 and page.orders
        else ""
    )
    return (
        f"{head}{_filters(page, wanted)}"
        f'<p class="count" data-matching="{page.matching}">{shown}'
        f" ({page.total:,} in the schedule).{single}</p>"
        f"{_orders(page)}{_pager(page, wanted)}"
    )


def _filters(page: SchedulePageView, wanted: Filters) -> str:
    def options(name: str, counts: dict[str, int], chosen: str | None, any_label: str) -> str:
        items = [f'<option value="">{any_label}</option>'] + [
            f'<option value="{_e(value)}"{" selected" if value == chosen else ""}>'
            f"{_e(value)} ({count:,})</option>"
            for value, count in counts.items()
        ]
        return f'<select name="{name}" aria-label="{any_label}">{"".join(items)}</select>'

    def date(name: str, value: Any, label: str) -> str:
        shown = value.isoformat() if value else ""
        return f'<label>{label} <input type="date" name="{name}" value="{shown}"></label>'

    return (
        '<form class="filters" id="schedule-filters" method="get" action="/">'
        f'<input type="search" name="q" value="{_e(wanted.q or "")}" maxlength="128"'
        ' placeholder="order id" aria-label="order id">'
        f"{options('state', page.statuses, wanted.state, 'any status')}"
        f"{options('work_center', page.work_centers, wanted.work_center, 'any work center')}"
        f"{date('from', wanted.starts_from, 'starts from')}"
        f"{date('to', wanted.starts_before, 'before')}"
        '<button type="submit">Show</button> <a href="/">all orders</a></form>'
    )


def _orders(page: SchedulePageView) -> str:
    rows = "".join(
        f'<tr data-order="{_e(o.order_id)}">'
        f'<td><a href="{order_link(o.order_id)}">{_e(o.order_id)}</a></td>'
        f"<td>{_e(o.work_center)}</td><td>{o.revision}</td><td>{_e(o.order.product_id)}</td>"
        f"<td>{_e(str(o.order.quantity.value))} {_e(o.order.quantity.unit)}</td>"
        f"<td>{_e(o.planned_start.isoformat(timespec='minutes') if o.planned_start else '-')}"
        f'</td><td class="order-status">{_e(o.status)}</td>'
        f'<td class="correlation">{_e(o.correlation_id or "-")}</td></tr>'
        for o in page.orders
    )
    return (
        '<table class="orders"><thead><tr><th>Order</th><th>Work center</th><th>Rev</th>'
        "<th>Product</th><th>Quantity</th><th>Planned start</th><th>Status</th>"
        '<th title="of the schedule message that applied it">Correlation</th></tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )


def _pager(page: SchedulePageView, wanted: Filters) -> str:
    if page.pages <= 1:
        return ""
    base = wanted.without_page()

    def link(number: int, label: str, rel: str) -> str:
        if number == page.page or not 1 <= number <= page.pages:
            return f'<span class="off">{label}</span>'
        return f'<a rel="{rel}" href="/?{_e(urlencode({**base, "page": number}))}">{label}</a>'

    return (
        '<nav class="pager" aria-label="schedule pages">'
        f"{link(1, '&laquo; first', 'first')}"
        f" {link(page.page - 1, '&lsaquo; previous', 'prev')}"
        f' <span class="where">page {page.page:,} of {page.pages:,}</span> '
        f"{link(page.page + 1, 'next &rsaquo;', 'next')}"
        f" {link(page.pages, 'last &raquo;', 'last')}</nav>"
    )


# ---- an approval: what changes, field by field ----------------------------------------------


def order_diff(current: ProductionOrder | None, proposed: ProductionOrder | None) -> str:
    """The fields a change would change, old → new, as a small table."""
    if proposed is None:
        return '<span class="change">cancels the order</span>'
    if current is None:
        return '<span class="change">a new order</span>'
    before, after = _flat(current.model_dump(mode="json")), _flat(proposed.model_dump(mode="json"))
    changed = [
        key for key in sorted(before.keys() | after.keys()) if before.get(key) != after.get(key)
    ]
    if not changed:
        return '<span class="change">no field changes</span>'
    rows = "".join(
        f'<tr data-field="{_e(key)}"><td>{_e(key)}</td>'
        f'<td class="old">{_e(_shown(before.get(key)))}</td><td>&rarr;</td>'
        f'<td class="new">{_e(_shown(after.get(key)))}</td></tr>'
        for key in changed
    )
    return (
        '<table class="diff"><thead><tr><th>Field</th><th>Now</th><th></th><th>Proposed</th>'
        f"</tr></thead><tbody>{rows}</tbody></table>"
    )


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {
            k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}.").items()
        }
    if isinstance(value, list):
        return {
            k: v
            for index, item in enumerate(value)
            for k, v in _flat(item, f"{prefix}{index}.").items()
        }
    return {prefix.rstrip("."): value}


def _shown(value: Any) -> str:
    """A value as a planner reads it: times to the minute, in UTC."""
    if value is None:
        return "-"
    if isinstance(value, str) and len(value) >= 16 and value[4] == "-" and value[10] == "T":
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        if moment.tzinfo is not None:
            return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(value)


# ---- one order's timeline --------------------------------------------------------------------


def timeline(view: OrderTimelineView) -> str:
    """The order as applied, then every event, oldest first."""
    order = view.order
    head = f"<h2>Order {_e(view.order_id)}</h2>" + (
        f'<p class="order-now">Revision {order.revision}, status {_e(order.status)},'
        f" work center {_e(order.work_center)}, planned start"
        f" {_e(order.planned_start.isoformat(timespec='minutes') if order.planned_start else '-')};"
        f" applied by {_e(order.applied_by or '-')}"
        f" (correlation {_e(order.correlation_id or '-')}).</p>"
        if order is not None
        else '<p class="order-now">The plant never applied this order.</p>'
    )
    if not view.events:
        return head + "<p>No message about this order is kept any more.</p>"
    rows = "".join(_event(event) for event in view.events)
    return (
        f"{head}<table class='timeline'><thead><tr><th>When (UTC)</th><th></th><th>Message</th>"
        "<th>Rev</th><th>What</th><th>Delivery</th><th>Correlation</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def _event(event: TimelineEvent) -> str:
    arrow = "HQ &rarr; plant" if event.direction == "down" else "plant &rarr; HQ"
    when = event.settled_at if event.direction == "down" else event.sent_at
    delivery = {
        "received": f"settled {_time(when)}" if when else "not settled",
        "queued": "queued for the hub",
        "in-flight": "sent, awaiting PUBACK",
        "sent": f"hub took it {_time(when)}" if when else "sent",
    }[event.delivery]
    reason = f'<br><small class="reason">{_e(event.reason)}</small>' if event.reason else ""
    return (
        f'<tr class="event {event.kind}" data-kind="{event.kind}"'
        f' data-message="{_e(event.message_id)}">'
        f"<td>{_time(event.at)}</td><td>{arrow}</td>"
        f"<td>{_e(event.type or '?')}<br><small>{_e(event.message_id)}</small></td>"
        f"<td>{event.revision if event.revision is not None else '-'}</td>"
        f"<td>{_e(event.summary)}{reason}</td><td>{_e(delivery)}</td>"
        f"<td>{_e(event.correlation_id or '-')}</td></tr>"
    )


def _time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def timeline_page(site: str, view: OrderTimelineView | None, order_id: str) -> str:
    """The whole document of ``/status/orders/{id}``: no script, the page's stylesheet."""
    body = (
        timeline(view)
        if view is not None
        else f"<h2>Order {_e(order_id)}</h2><p>The store holds nothing about this order.</p>"
    )
    back = f"/?{urlencode({'q': order_id})}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>plantsync · {_e(site)} · order {_e(order_id)}</title>"
        '<link rel="icon" href="/favicon.ico">'
        '<link rel="stylesheet" href="/status/static/status.css"></head><body>'
        f'<header><h1>plantsync <span class="site">{_e(site)}</span></h1>'
        f'<p><a href="{_e(back)}">← the schedule</a></p></header>'
        f'<main><section id="timeline">{body}</section></main></body></html>\n'
    )


@dataclass(frozen=True)
class Rules:
    """The configured approval rules, as the page names them."""

    frozen_horizon: str
    quantity_threshold: str

    def held_by(self, reason: str) -> str:
        """The rule behind ``reason`` (the policy's words), with its configured value."""
        if "frozen horizon" in reason:
            return f"rule: frozen horizon, {self.frozen_horizon} from now"
        if "threshold" in reason:
            return f"rule: quantity threshold, {self.quantity_threshold} of the applied quantity"
        if " acknowledges " in reason:  # an alarm.ack (``agent/sourcing/acks.py``)
            return 'rule: acknowledge_from_hq = "approval" for this OPC UA server'
        return "rule: the schedule policy"


def approvals(waiting: list[WaitingChange], rules: Rules) -> str:
    """The approvals section: each held change, the rule that held it, old → new per field."""
    if not waiting:
        return '<h2>Approvals</h2><p class="none">No change waits for a planner.</p>'
    items = []
    for change in waiting:
        orders = "".join(
            f'<li data-order="{_e(o.order_id)}">{_e(o.order_id)} rev {o.revision}:'
            f" {order_diff(o.current, o.proposed)}</li>"
            for o in change.orders
        )
        action = f"/status/approvals/{change.row_id}"
        held = (
            f'<p class="rule">Held: {_e(change.reason)} ({_e(rules.held_by(change.reason))}).</p>'
            if change.reason
            else ""
        )
        items.append(
            f'<div class="card approval" data-row="{change.row_id}">'
            f"<p><b>{_e(change.type or 'change')}</b> {_e(', '.join(change.order_ids))}"
            f" received {_e(change.received_at.isoformat(timespec='seconds'))}</p>"
            f"{held}<ul>{orders}</ul>"
            f'<form method="post" action="{action}/approve" data-action>'
            '<button type="submit" class="approve">Approve</button></form>'
            f'<form method="post" action="{action}/reject" data-action>'
            '<input name="reason" required maxlength="500" placeholder="reason">'
            '<button type="submit" class="reject">Reject</button></form></div>'
        )
    return f"<h2>Approvals</h2>{''.join(items)}"
