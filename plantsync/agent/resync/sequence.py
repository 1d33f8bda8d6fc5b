"""Gap detection on the site's down stream: where its sequence stands, and when to ask HQ.

Every down message the agent receives moves the mark, whatever becomes of it: applied,
rejected, a duplicate, or a dead letter whose ``seq`` could be read (``contracts.inbound``).
What was received is not a gap, so it never causes a resync; HQ hears what became of it from
its ack. Only a seq that never arrived does.

    message (epoch e, seq s)   mark (E, S)      new mark     gap (last seen, received)
    first ever                 none             (e, s)       none: the start-up resync covers it
    e == E, s == S + 1         (E, S)           (E, s)       none
    e == E, s  > S + 1         (E, S)           (E, s)       (S, s): S+1 … s-1 were lost
    e == E, s <= S             (E, S)           (E, S)       none: late, or a redelivery
    e  > E                     (E, S)           (e, s)       a reset; (0, s) if s > 1
    e  < E                     (E, S)           (E, S)       none: from before a reset

A ``schedule.snapshot`` holds every change up to its ``as_of_seq`` (A): the seqs it covers are
not missing even if they never arrived, so it is a gap only beyond them. A snapshot that answers
a resync after a lost seq therefore closes the gap instead of asking for a second snapshot:

    snapshot (e, s, A)         mark (E, S)      new mark     gap
    e == E, s  > max(S, A) + 1 (E, S)           (E, s)       (max(S, A), s)
    e == E, s == max(S, A) + 1 (E, S)           (E, s)       none: the snapshot covers S+1 … A
    e  > E, s  > A + 1         (E, S)           (e, s)       a reset; (A, s)

A reset is HQ starting its count again with a higher ``seq_epoch`` (the contract:
``contracts.schedule.DownEnvelope``); seqs are never compared across epochs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from plantsync.buffer.inbox import DownSeqMark
from plantsync.contracts import DownMessage
from plantsync.contracts.schedule import SCHEDULE_STREAM, ScheduleSnapshotMessage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SeqStep:
    """What one received seq does to the mark."""

    before: DownSeqMark | None
    received: DownSeqMark
    mark: DownSeqMark | None
    """The mark to store; None keeps it."""
    gap: tuple[int, int] | None = None
    """(the last seq seen in the epoch, the seq received): ask HQ for a snapshot."""

    @property
    def reset(self) -> bool:
        return self.before is not None and self.received.epoch > self.before.epoch

    @property
    def before_reset(self) -> bool:
        """The message belongs to an epoch older than the mark's."""
        return self.before is not None and self.received.epoch < self.before.epoch


def step(before: DownSeqMark | None, seq: int, epoch: int, *, covers: int = 0) -> SeqStep:
    """The step ``seq`` of ``epoch`` takes from the mark ``before``; see the module's tables.
    ``covers``: the last seq whose changes the message holds (a snapshot's ``as_of_seq``)."""
    received = DownSeqMark(seq, epoch)
    if before is None:
        return SeqStep(before, received, received)
    if epoch > before.epoch:
        return SeqStep(before, received, received, (covers, seq) if seq > covers + 1 else None)
    if epoch < before.epoch or seq <= before.seq:
        return SeqStep(before, received, None)
    last = max(before.seq, covers)
    gap = (last, seq) if seq > last + 1 else None
    return SeqStep(before, received, received, gap)


def covered(message: DownMessage) -> int:
    """The last seq whose changes ``message`` holds besides its own: a snapshot's
    ``as_of_seq``; 0 for every other message."""
    if isinstance(message, ScheduleSnapshotMessage):
        return message.payload.as_of_seq
    return 0


def report(found: SeqStep) -> None:
    """One log line for a gap (the resync it asked for is committed), a reset or a message
    from before a reset; nothing for a seq in order."""
    received = found.received
    if found.reset:
        assert found.before is not None
        log.info(
            "down stream %r: sequence reset by HQ to epoch %d at seq %d (was epoch %d, seq %d)",
            SCHEDULE_STREAM,
            received.epoch,
            received.seq,
            found.before.epoch,
            found.before.seq,
        )
    elif found.before_reset:
        assert found.before is not None
        log.info(
            "down stream %r: seq %d of epoch %d is from before the reset to epoch %d;"
            " not used for gap detection",
            SCHEDULE_STREAM,
            received.seq,
            received.epoch,
            found.before.epoch,
        )
    if found.gap is not None:
        last, seq = found.gap
        log.warning(
            "down stream %r: gap in epoch %d: expected seq %d, received %d (%d missing);"
            " asked HQ for a snapshot",
            SCHEDULE_STREAM,
            received.epoch,
            last + 1,
            seq,
            seq - last - 1,
        )
