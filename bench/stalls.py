"""Where in time the slow live messages of a drain lie: read a ``BENCH_LIVE_DUMP`` file.

    BENCH_LIVE_DUMP=/tmp/live.json python -m bench.run --scenario drain
    python -m bench.stalls /tmp/live.json [--over 0.8]

Prints, per envelope type, the live messages sent during the drain, the worst latency in each
10 s of it, and the stalls: runs of messages slower than ``--over`` seconds that arrived within
a second of each other (one stall holds every lane back at once, then releases them together).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("dump", type=Path)
    parser.add_argument("--over", type=float, default=0.8, help="seconds: a slow message")
    args = parser.parse_args()
    document = json.loads(args.dump.read_text())
    start, end = document["matched"]
    print(f"drain: {end - start:.1f} s")
    for kind, rows in document["live"].items():
        during = sorted((at - start, late) for at, late in rows if start <= at - late <= end)
        if not during:
            continue
        worst: dict[int, float] = defaultdict(float)
        for at, late in during:
            worst[int(at // 10)] = max(worst[int(at // 10)], late)
        stalls: list[list[float]] = []  # [first arrival, last arrival, worst latency, count]
        for at, late in during:
            if late <= args.over:
                continue
            if stalls and at - stalls[-1][1] <= 1.0:
                stalls[-1][1:] = [at, max(stalls[-1][2], late), stalls[-1][3] + 1]
            else:
                stalls.append([at, at, late, 1])
        slow = sum(1 for _, late in during if late > args.over)
        print(f"\n{kind}: {len(during)} live, {slow} slower than {args.over} s")
        per_ten = " ".join(f"{k * 10}s:{v:.1f}" for k, v in sorted(worst.items()))
        print(f"  worst per 10 s: {per_ten}")
        for first, _, late, count in stalls:
            print(f"  stall at {first:7.1f} s: {int(count)} messages, worst {late:.2f} s")


if __name__ == "__main__":
    main()
