"""The end-of-run accounting and its table.

What is counted, precisely:

  up, by (epoch, stream, seq): the store's ``streams`` table gives the highest seq committed
  on every stream (read from the stopped agent's file at the end, and from each store before
  it was corrupted). Every seq from 1 to that one was committed once, so "sent" is their
  number, "delivered" the distinct seqs the checker received, "missing" the rest.
    - business (acks, resync requests, confirmations): never evicted, so lost = missing.
    - telemetry: evicted at the size cap by policy, and counted by the store; lost = missing
      minus evicted. Readings shed while the store could not be written (disk full) never got
      a seq: they are not "sent", and show apart as "shed" (the agent's counter, a lower
      bound: a SIGKILLed agent takes its count with it).
  confirmations the API answered 202: by message id, each must be delivered.
  duplicates: copies beyond the first of one message id; "seq reused" counts seqs that arrived
  with two different ids (must be 0: a duplicate must carry the same id).
  down: the MES records every change that took effect; "applied twice" is an (order, revision)
  that took effect more than once, under any key. "lost" is an order whose latest revision HQ
  published never took effect at the plant.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from chaos.checker import BUSINESS, CONFIRMATION, TELEMETRY, StreamTotals
from chaos.rig import Rig


@dataclass(frozen=True)
class Row:
    what: str
    sent: int
    delivered: int
    lost: int
    duplicates: int
    reused: int = 0
    note: str = ""


@dataclass
class ChaosReport:
    """One run's outcome; ``table()`` is what ``make chaos`` prints."""

    seed: int
    seconds: float
    faults: Counter[str]
    rows: list[Row]
    applied_twice: dict[tuple[str, int], int]
    checks: dict[str, list[str]]
    observations: dict[str, list[float]]
    notes: list[str] = field(default_factory=list)
    effect_types: dict[tuple[str, int], list[str]] = field(default_factory=dict)
    """For each (order, revision) applied twice, the change types that applied it."""

    @property
    def lost(self) -> int:
        return sum(row.lost for row in self.rows)

    @property
    def reused(self) -> int:
        return sum(row.reused for row in self.rows)

    @property
    def failed_checks(self) -> list[str]:
        return [f"{kind}: {problem}" for kind, items in self.checks.items() for problem in items]

    @property
    def passed(self) -> bool:
        return not (self.lost or self.reused or self.applied_twice or self.failed_checks)

    def table(self) -> str:
        lines = [f"chaos run: seed {self.seed}, {self.seconds / 60:.1f} min", ""]
        lines += [f"{'fault':<42}{'injected':>9}", "-" * 51]
        lines += [f"{kind:<42}{count:>9}" for kind, count in sorted(self.faults.items())]
        lines += ["-" * 51, f"{'total':<42}{sum(self.faults.values()):>9}", ""]
        header = f"{'messages':<40}{'sent':>8}{'deliv.':>8}{'lost':>6}{'dupl.':>7}{'reused':>7}"
        lines += [header, "-" * len(header)]
        for row in self.rows:
            line = f"{row.what:<40}{row.sent:>8}{row.delivered:>8}{row.lost:>6}"
            line += f"{row.duplicates:>7}{row.reused:>7}"
            lines.append(line + (f"  {row.note}" if row.note else ""))
        lines.append("")
        lines.append(f"applied twice at the plant: {sum(self.applied_twice.values())}")
        lines += [
            f"  {order}@{rev}: {n} times ({', '.join(self.effect_types.get((order, rev), []))})"
            for (order, rev), n in self.applied_twice.items()
        ]
        lines.append(f"lost: {self.lost}   seq reused with another id: {self.reused}")
        lines += ["", "fault checks:"]
        for kind in sorted(self.checks):
            problems = self.checks[kind]
            verdict = "ok" if not problems else f"FAILED {len(problems)}x: {problems[0]}"
            lines.append(f"  {kind:<40} {verdict}")
        if self.observations:
            lines += ["", "measured:"]
            for name, values in sorted(self.observations.items()):
                lines.append(
                    f"  {name:<44} n={len(values):<4} max {max(values):.2f}"
                    f"  mean {sum(values) / len(values):.2f}"
                )
        lines += ["", *self.notes, "", "PASSED" if self.passed else "FAILED"]
        return "\n".join(lines)


def account(rig: Rig, seed: int, seconds: float) -> ChaosReport:
    """Compare what was committed with what arrived; see the module docstring."""
    tally = rig.tally
    totals = rig.checker.totals(tally.expected, tally.destroyed)
    evicted = sum(tally.evicted.values())
    rows = [
        _row("confirmations (order streams)", totals[CONFIRMATION]),
        _row("acks, resync requests (business)", totals[BUSINESS]),
        _telemetry_row(totals[TELEMETRY], evicted, sum(tally.shed_telemetry.values())),
        _accepted_row(rig),
        _down_row(rig),
    ]
    notes = [
        f"confirmation POSTs: {tally.posted}; answered 202: {len(tally.committed)};"
        f" no agent listening: {tally.unreachable}; cut by a kill: {len(tally.cut)}"
        f" (of which delivered, i.e. committed before the kill:"
        f" {len(tally.cut & rig.checker.confirmation_ids())})",
        "refused: "
        + (", ".join(f"{n}x {reason!r}" for reason, n in tally.refused.most_common(4)) or "none"),
        f"agent starts: {rig.agent.starts}; exits on its own: {len(rig.agent.exits_on_its_own)}"
        f" (codes {dict(Counter(rig.agent.exits_on_its_own))})",
        *(f"  {n}x exited after: {why}" for why, n in Counter(rig.agent.exit_reasons).items()),
        f"MES: {rig.mes.state.requests} requests, {rig.mes.state.replays} answered 409 (a retry"
        f" of a change already applied), {rig.mes.state.failed} failed on purpose;"
        f" HQ answered {rig.hq.resyncs_answered} resync requests with a snapshot;"
        f" HQ held a change back {rig.hq.held_back}x (at most {rig.hq.max_ahead} revisions"
        " ahead of the plant)",
        "outbox rows a corrupted store held undelivered (lost with it, not counted as lost):"
        f" {len(tally.destroyed)}, by kind: "
        + ", ".join(f"{kind} {total.destroyed}" for kind, total in totals.items()),
    ]
    return ChaosReport(
        seed,
        seconds,
        tally.faults,
        rows,
        rig.mes.state.applied_twice(),
        dict(tally.checks),
        dict(tally.observations),
        notes,
        {key: rig.mes.state.effect_types(*key) for key in rig.mes.state.applied_twice()},
    )


def _row(what: str, total: StreamTotals) -> Row:
    sent = sum(total.highest.values())
    return Row(
        what, sent, total.distinct, total.missing, total.copies - total.distinct, total.reused
    )


def _telemetry_row(total: StreamTotals, evicted: int, shed: float) -> Row:
    sent = sum(total.highest.values())
    lost = max(0, total.missing - evicted)
    note = f"missing {total.missing}, evicted by policy {evicted}; shed (no seq) >= {shed:.0f}"
    return Row(
        "telemetry (machine.state)",
        sent,
        total.distinct,
        lost,
        total.copies - total.distinct,
        total.reused,
        note,
    )


def _accepted_row(rig: Rig) -> Row:
    committed = rig.tally.committed
    delivered = sum(1 for message_id in committed if rig.checker.seen(message_id))
    return Row(
        "confirmations the API answered 202",
        len(committed),
        delivered,
        len(committed) - delivered,
        0,
        note="by message id",
    )


def _down_row(rig: Rig) -> Row:
    wanted = rig.hq.latest_revisions()
    applied = rig.mes.state.latest_revisions()
    behind = [order for order, revision in wanted.items() if applied.get(order, 0) < revision]
    acks = rig.checker.ack_outcomes()
    final = {"applied", "rejected", "failed", "waiting-for-approval"}
    unanswered = sum(1 for r in rig.hq.published if not final & set(acks.get(r.message_id, [])))
    return Row(
        "down: HQ orders at latest revision",
        len(wanted),
        len(wanted) - len(behind),
        len(behind),
        0,
        note=f"{len(rig.hq.published)} down messages, {unanswered} without a final ack",
    )
