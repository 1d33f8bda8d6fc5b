"""Run the bench scenarios and write bench/results/latest.json and latest.md.

    python -m bench.run [--scenario enqueue,drain,roundtrip,ingest,peer,capped,nodeopcua,…]
                        [--quick]

Each scenario is a module ``bench/scenario_<name>.py`` with ``run(quick: bool) -> list[Figure]``,
imported only when selected, so a scenario that is missing or broken does not stop the others.
``--quick`` makes every scenario small (under a minute each): a smoke test, not a figure to
quote. ``footprint`` (the long soak) runs only when named, as ``make soak`` does; so does
``fleet`` (20 agent processes for about five minutes), as ``make fleet`` does.
"""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
import traceback

from bench.report import RESULTS, Figure, markdown, write_results

SCENARIOS = (
    "enqueue",
    "drain",
    "roundtrip",
    "ingest",
    "footprint",
    "peer",
    "capped",
    "nodeopcua",
    "fleet",
    "mespoll",
    "backfill",
)
DEFAULT = (
    "enqueue",
    "drain",
    "roundtrip",
    "ingest",
    "peer",
    "capped",
    "nodeopcua",
    "mespoll",
    "backfill",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--scenario",
        default=",".join(DEFAULT),
        help=f"comma-separated, of {', '.join(SCENARIOS)} (default: {','.join(DEFAULT)})",
    )
    parser.add_argument("--quick", action="store_true", help="small runs, for a smoke test")
    args = parser.parse_args(argv)
    selected = [name.strip() for name in args.scenario.split(",") if name.strip()]
    unknown = sorted(set(selected) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    command = "python -m bench.run " + shlex.join(sys.argv[1:] if argv is None else argv)
    figures: list[Figure] = []
    failed: list[str] = []
    for name in selected:
        print(f"== {name}{' (quick)' if args.quick else ''}", flush=True)
        started = time.monotonic()
        try:
            module = importlib.import_module(f"bench.scenario_{name}")
            figures += module.run(args.quick)
        except Exception:  # one broken scenario must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
        print(f"   {time.monotonic() - started:.0f} s", flush=True)
    write_results(figures, command.strip())
    fresh = {figure.scenario for figure in figures}
    print(markdown(_only(fresh)))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _only(scenarios: set[str]) -> dict[str, object]:
    """This run's scenarios from latest.json (write_results has just merged them)."""
    import json

    everything = json.loads((RESULTS / "latest.json").read_text())["scenarios"]
    return {name: run for name, run in everything.items() if name in scenarios}


if __name__ == "__main__":
    raise SystemExit(main())
