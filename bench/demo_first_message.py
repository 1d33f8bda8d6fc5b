"""Time from ``make demo`` (or any command) to the first machine message at the hub.

    .venv/bin/python -m bench.demo_first_message [--cwd DIR] -- make demo

Starts the command in its own process group with unbuffered Python output, reads its output,
prints the seconds to the first ``machine.state`` line the demo's hub tail shows, then stops
the whole group. Warm: in a checkout whose venv exists. Cold: in a fresh ``git clone`` (the
venv is made by the command; pip's download cache is what this machine has).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

TIMEOUT_SECONDS = 600.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cwd", default=".")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args()
    began = time.monotonic()
    process = subprocess.Popen(
        args.command,
        cwd=args.cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
    )
    assert process.stdout is not None
    try:
        for line in process.stdout:
            if "machine.state machine/" in line:
                print(f"first machine message after {time.monotonic() - began:.1f} s")
                return 0
            if time.monotonic() - began > TIMEOUT_SECONDS:
                break
        print("no machine message", file=sys.stderr)
        return 1
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        process.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
