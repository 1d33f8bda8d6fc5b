"""Profile the agent process under ingest load with py-spy (sampling, from outside).

    python -m bench.profile_ingest [--items 10000] [--rate 10000] [--seconds 20]
                                   [--subject plantsync|bridge]

Starts the ingest rig (bench/ingest.py), lets the subject settle, then records it with
``py-spy record --format raw`` while the source changes items, and prints the run's figures and
the functions holding the most samples, inclusive and self. The collapsed stacks are kept in
``bench/results/profile-<subject>-<items>-<rate>.txt`` (feed them to speedscope or flamegraph.pl).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.ingest import Rig, Subject, describe
from bench.report import RESULTS


async def profile(items: int, rate: float, seconds: float, subject_name: str) -> Path:
    output = RESULTS / f"profile-{subject_name}-{items}-{int(rate)}.txt"
    RESULTS.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as directory:
        async with Rig(Path(directory), items) as rig:
            subject: Subject = rig.plantsync() if subject_name == "plantsync" else rig.bridge()
            await rig.start(subject)
            try:
                recorder = await asyncio.create_subprocess_exec(
                    *(py_spy, "record", "--format", "raw", "--rate", "200", "--nonblocking"),
                    *("--duration", str(int(seconds)), "--pid", str(subject.pid)),
                    *("--output", str(output)),
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL,
                )
                print(describe(await rig.measure(subject, rate, seconds)), flush=True)
                await recorder.wait()
            finally:
                await subject.stop()
    return output


def summary(collapsed: Path, top: int = 25) -> str:
    """The functions with the most samples: inclusive (anywhere on the stack) and self."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples"]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        lines.append(f"-- {title}")
        lines += [f"{100 * n / total:5.1f}%  {name}" for name, n in counter.most_common(top)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    """``func (path/to/module.py:12)`` → ``func (module.py)``: lines merged per function."""
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.split(':')[0]).name})"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--subject", choices=("plantsync", "bridge"), default="plantsync")
    args = parser.parse_args()
    output = asyncio.run(profile(args.items, args.rate, args.seconds, args.subject))
    print(summary(output))
    print(f"collapsed stacks: {output}")


if __name__ == "__main__":
    main()
