"""Run the benchmark: ``python -m bench [--slots 10,100] [--only ...] [--json FILE]``.

``bench/run`` makes the venv (supervisor and circus from PyPI) and calls this. Every
process it starts lives under one temporary folder and in sessions of its own; all of
them are stopped at the end, on an error and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import procevents
from bench.measure import Machine
from bench.peers import KINDS, run_peer
from bench.pool import run_pool
from bench.procevents import ProcEvents
from bench.table import render

ALL = ("runnerctl", *KINDS)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--slots", default="10,100", help="comma-separated N (e.g. 10,100,300)")
    parser.add_argument("--only", default=",".join(ALL), help=f"subset of {','.join(ALL)}")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--window", type=float, default=30.0, help="seconds of churn measured")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of idle measured")
    parser.add_argument(
        "--churn", type=int, default=10, help="runnerctl: jobs queued at once (slots churning)"
    )
    parser.add_argument("--kills", type=int, default=20, help="workers SIGKILLed (runnerctl)")
    parser.add_argument(
        "--token-slots", type=int, default=10, help="slots of the token-mode pool (0: skip)"
    )
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--keep", action="store_true", help="keep the folder (logs, configs)")
    args = parser.parse_args(argv)
    args.sizes = [int(n) for n in args.slots.split(",") if n]
    args.kinds = [k for k in args.only.split(",") if k]
    unknown = set(args.kinds) - set(ALL)
    if unknown or not args.sizes or min(args.sizes) < 1:
        parser.error(f"bad --only {sorted(unknown)} or --slots {args.slots}")
    return args


def interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # a SIGTERM unwinds like Ctrl-C: every finally stops its tree


def main(argv: list[str]) -> int:
    args = parse(argv)
    problem = procevents.available()
    if problem:
        print(f"bench: {problem}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, interrupt)
    folder = Path(tempfile.mkdtemp(prefix="runnerctl-bench-"))
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "command": "bench/run " + shlex.join(argv),
        "machine": dataclasses.asdict(Machine.here()),
        "runs": [],
    }
    try:
        with procevents.ProcEvents() as events:
            if "runnerctl" in args.kinds:
                say("runnerctl: warming the tarball cache (1 slot)")
                run_pool(1, "jit", folder / "warm", folder / "cache", events, 0, 0.5, 0, 0, 1)
            for slots in args.sizes:
                for kind in args.kinds:
                    say(f"{kind}: {slots} slots")
                    report["runs"].append(measure_one(kind, slots, args, folder, events))
                    save(report, args.json)
            if "runnerctl" in args.kinds and args.token_slots > 0:
                say(f"runnerctl: {args.token_slots} slots, token registration")
                report["runs"].append(
                    measure_one("runnerctl-token", args.token_slots, args, folder, events)
                )
                save(report, args.json)
            report["lost_events"] = events.lost
    except KeyboardInterrupt:
        say("bench: interrupted; everything started was stopped")
        return 130
    finally:
        if args.keep:
            say(f"bench: kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    save(report, args.json)
    print(render(report))
    return 0


def measure_one(
    kind: str, slots: int, args: argparse.Namespace, folder: Path, events: ProcEvents
) -> dict[str, Any]:
    """One supervisor at one N; a failure is recorded and the next run goes on."""
    run: Any
    try:
        if kind in ("runnerctl", "runnerctl-token"):
            mode = "token" if kind == "runnerctl-token" else "jit"
            kills = min(args.kills, slots) if mode == "jit" else 0
            idle = args.idle if mode == "jit" else 0
            run = run_pool(
                slots, mode, folder / f"{kind}-{slots}", folder / "cache", events,
                args.warmup, args.window, idle, kills, args.churn,
            )  # fmt: skip
        else:
            run = run_peer(kind, slots, folder, events, args.warmup, args.window, args.idle)
    except (RuntimeError, OSError) as error:
        say(f"bench: {kind} at {slots} slots failed: {error}")
        return {"kind": kind, "slots": slots, "error": str(error)}
    return {"kind": kind, **dataclasses.asdict(run)}


def save(report: dict[str, Any], path: Path | None) -> None:
    """Write the figures so far (each run adds to them: an interrupted run keeps them)."""
    if path is not None:
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
