"""Measure runnerctl's GitHub API budget with real worker processes and the loopback GitHub.

Each simulated worker is its own process, as in the manager: it builds a ``GitHub``
from the settings and the shared state folder, then respawns an ephemeral runner over
and over, fetching what a respawn needs (token mode: a registration token; JIT mode: a
JIT config). The sandbox shortens token lifetimes so that ``--hour`` seconds stand for
one hour; the figures are counted from the sandbox's own call log and scaled back.

    python bench/api_budget.py --workers 100 --hour 20 --hours 3 --job 0.5

Prints one JSON object per mode and a summary table.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from runnerctl.config.models import GitHubSettings
from runnerctl.sandbox import Sandbox

SCOPE = "octo/app"

# One worker process: respawn until the deadline, then report respawns and calls.
WORKER = """
import json, sys, time
from runnerctl.config.models import GitHubSettings
from runnerctl.github import GitHub
from runnerctl.scope import Scope

settings = GitHubSettings.model_validate_json(sys.argv[1])
state_dir, mode, name, job = sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
scope = Scope("repo", sys.argv[6])
github = GitHub.from_settings(settings, state_dir=state_dir)
print("ready", flush=True)
deadline = float(sys.stdin.readline())
respawns = 0
while time.time() < deadline:
    if mode == "token":
        github.registration_token(scope)
    else:
        github.jit_config(scope, f"{name}-{respawns}", ["self-hosted", "linux"])
    respawns += 1
    time.sleep(job)  # the runner takes its one job
print(json.dumps({"respawns": respawns, "calls": github.calls}), flush=True)
"""


def run_mode(sandbox: Sandbox, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run every worker in ``mode`` for ``args.hours`` simulated hours; count the calls."""
    settings = GitHubSettings(
        api_url=sandbox.api_url,
        server_url=sandbox.server_url,
        app_id=str(sandbox.app_id),
        private_key_file=Path(sandbox.private_key_file),
    )
    with tempfile.TemporaryDirectory(prefix="api-budget-") as state_dir:
        command = [sys.executable, "-c", WORKER, settings.model_dump_json(), state_dir, mode]
        workers = [
            subprocess.Popen(
                [*command, f"{mode}-w{number}", str(args.job), SCOPE],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for number in range(args.workers)
        ]
        try:
            reports = _drive(workers, sandbox, args.hour * args.hours)
        finally:
            for worker in workers:
                worker.kill()
                worker.wait()
    elapsed = args.hour * args.hours
    calls = [c for c in sandbox.calls() if not c["path"].startswith("/_")]
    rest = [
        c
        for c in calls
        if c["credential"] in ("app-jwt", "token") or "installation" in c["credential"]
    ]
    respawns = sum(report["respawns"] for report in reports)
    hours = elapsed / args.hour
    return {
        "mode": mode,
        "workers": args.workers,
        "simulated_hours": round(hours, 2),
        "respawns": respawns,
        "rest_calls": len(rest),
        "client_counted_calls": sum(report["calls"] for report in reports),
        "calls_per_respawn": round(len(rest) / max(respawns, 1), 4),
        "calls_per_hour": round(len(rest) / hours, 1),
        "by_endpoint": _by_endpoint(rest),
    }


def _drive(
    workers: list[subprocess.Popen[str]], sandbox: Sandbox, seconds: float
) -> list[dict[str, Any]]:
    """Start every worker at once (after their imports), run ``seconds``, collect reports."""
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
    sandbox.clear_calls()
    deadline = time.time() + seconds
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write(f"{deadline}\n")
        worker.stdin.flush()
    reports = []
    for worker in workers:
        output, _ = worker.communicate(timeout=seconds + 120)
        reports.append(json.loads(output))
    return reports


def _by_endpoint(calls: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in calls:
        key = f"{call['method']} {call['path'].split('?')[0].rsplit('/', 1)[-1]}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=100, help="worker processes (slots)")
    parser.add_argument("--hour", type=float, default=20.0, help="seconds that stand for 1 h")
    parser.add_argument("--hours", type=float, default=3.0, help="simulated hours per mode")
    parser.add_argument("--job", type=float, default=0.5, help="seconds per job (token mode)")
    parser.add_argument("--jit-job", type=float, default=2.0, help="seconds per job (JIT mode)")
    parser.add_argument("--modes", default="token,jit")
    args = parser.parse_args()

    results = []
    with Sandbox(repos=[SCOPE]) as sandbox:
        sandbox.configure(token_lifetime=args.hour, registration_token_lifetime=args.hour)
        for mode in args.modes.split(","):
            job = args.job if mode == "token" else args.jit_job
            result = run_mode(sandbox, mode, argparse.Namespace(**{**vars(args), "job": job}))
            results.append(result)
            print(json.dumps(result), flush=True)
    print()
    print(
        f"{'mode':<6} {'workers':>7} {'respawns':>9} {'REST calls':>10} "
        f"{'per respawn':>11} {'per hour':>8}"
    )
    for r in results:
        print(
            f"{r['mode']:<6} {r['workers']:>7} {r['respawns']:>9} {r['rest_calls']:>10} "
            f"{r['calls_per_respawn']:>11} {r['calls_per_hour']:>8}"
        )


if __name__ == "__main__":
    main()
