"""The down sequence's mark, step by step: what a received seq does to it and when it is a gap
(the table in ``agent/resync/sequence.py``)."""

from __future__ import annotations

import pytest

from plantsync.agent.resync.sequence import step
from plantsync.buffer.inbox import DownSeqMark as Mark


@pytest.mark.parametrize(
    ("before", "seq", "epoch", "mark", "gap"),
    [
        (None, 7, 0, Mark(7), None),  # first ever: the start-up resync covers what came before
        (Mark(4), 5, 0, Mark(5), None),  # in order
        (Mark(4), 7, 0, Mark(7), (4, 7)),  # 5 and 6 never arrived
        (Mark(4), 3, 0, None, None),  # late, or a redelivery
        (Mark(4), 4, 0, None, None),  # the same seq again
        (Mark(5), 1, 1, Mark(1, 1), None),  # a reset, starting at 1
        (Mark(5), 3, 1, Mark(3, 1), (0, 3)),  # a reset whose seqs 1 and 2 never arrived
        (Mark(2, 1), 9, 0, None, None),  # from before the reset: says nothing about gaps
        (Mark(2, 1), 4, 1, Mark(4, 1), (2, 4)),  # gaps count within the new epoch
    ],
)
def test_a_received_seq_moves_the_mark_and_only_a_missing_one_is_a_gap(
    before: Mark | None, seq: int, epoch: int, mark: Mark | None, gap: tuple[int, int] | None
) -> None:
    seen = step(before, seq, epoch)
    assert (seen.mark, seen.gap) == (mark, gap)


@pytest.mark.parametrize(
    ("before", "seq", "epoch", "covers", "gap"),
    [
        (Mark(2), 4, 0, 3, None),  # seq 3 lost; the snapshot answering the resync covers it
        (Mark(2), 4, 0, 2, (2, 4)),  # the snapshot is as of 2: seq 3 is still missing
        (Mark(2), 6, 0, 4, (4, 6)),  # it covers 3 and 4; 5 is missing
        (Mark(5), 6, 0, 3, None),  # older than the mark: nothing to cover
        (Mark(5), 9, 0, 3, (5, 9)),  # older than the mark: the gap is from the mark
        (Mark(5), 3, 1, 2, None),  # a reset whose seqs 1 and 2 the snapshot covers
        (Mark(5), 4, 1, 2, (2, 4)),  # a reset whose seq 3 is missing
    ],
)
def test_a_snapshot_closes_the_gap_its_as_of_seq_covers(
    before: Mark, seq: int, epoch: int, covers: int, gap: tuple[int, int] | None
) -> None:
    seen = step(before, seq, epoch, covers=covers)
    assert (seen.mark, seen.gap) == (Mark(seq, epoch), gap)


def test_a_reset_and_a_message_from_before_it_are_told_apart() -> None:
    assert step(Mark(5), 1, 1).reset
    assert not step(Mark(5), 1, 1).before_reset
    assert step(Mark(1, 1), 6, 0).before_reset
    assert not step(Mark(4), 9, 0).reset
