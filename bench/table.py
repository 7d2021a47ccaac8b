"""The benchmark's printed report: one table per N, ratios against the peers and the
floor, and the runnerctl-only figures (supervision, online, kills, API)."""

from __future__ import annotations

from typing import Any

PEERS = ("floor", "supervisord", "circus")


def fmt(value: Any, digits: int = 1) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def ratio(mine: Any, theirs: Any) -> str:
    if not isinstance(mine, (int, float)) or not isinstance(theirs, (int, float)) or not theirs:
        return "-"
    return f"{mine / theirs:.2f}x"


def render(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"{report['date']}; {machine['cpus']} CPUs ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB, Linux {machine['kernel']}, Python {machine['python']}",
        f"command: {report['command']}",
        "",
    ]
    runs = report["runs"]
    for slots in sorted({r["slots"] for r in runs if r["kind"] != "runnerctl-token"}):
        rows = {r["kind"]: r for r in runs if r["slots"] == slots}
        rows.pop("runnerctl-token", None)
        lines += table(slots, rows)
    token = [r for r in runs if r["kind"] == "runnerctl-token"]
    jit = [r for r in runs if r["kind"] == "runnerctl"]
    if jit or token:
        lines.append("REST calls per ephemeral respawn (window counts)")
        for r in jit + token:
            if "error" in r:
                continue
            lines.append(
                f"  {r['mode']:<5} N={r['slots']:<4} {r['rest_calls']} calls / "
                f"{r['respawns']} respawns = {r['calls_per_respawn']}"
            )
    return "\n".join(lines)


def table(slots: int, rows: dict[str, dict[str, Any]]) -> list[str]:
    head = (
        f"{'N=' + str(slots):<12} {'respawn ms p50':>14} {'p95':>7} {'p99':>7} {'max':>7} "
        f"{'CPU s/min churn':>15} {'idle':>6} {'PSS MiB':>8} {'/slot':>6} {'cold ms':>8}"
    )
    lines = [head, "-" * len(head)]
    for kind in ("runnerctl", *PEERS):
        r = rows.get(kind)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"{kind:<12} failed: {r['error']}")
            continue
        s = r["respawn"]
        lines.append(
            f"{kind:<12} {fmt(s.get('p50'), 2):>14} {fmt(s.get('p95'), 2):>7} "
            f"{fmt(s.get('p99'), 2):>7} {fmt(s.get('max'), 1):>7} {fmt(r['cpu_churn'], 3):>15} "
            f"{fmt(r['cpu_idle'], 3):>6} {fmt(r['pss'], 1):>8} {fmt(r['pss'] / slots, 2):>6} "
            f"{fmt(r['cold_start'], 0):>8}"
        )
    mine = rows.get("runnerctl")
    if mine is not None and "error" not in mine:
        sup, uss = mine["supervision"], mine["uss_worker"]
        lines += [
            f"  runnerctl: {mine['churn']} of {slots} slots churning; cold start to all runners "
            f"forked {fmt(mine['cold_forked'], 0)} ms (online: {fmt(mine['cold_start'], 0)} ms); "
            f"idle runners (not counted above) use {fmt(mine['cpu_idle_runners'], 2)} CPU s/min",
            f"  runnerctl exit -> worker acts ms: p50 {fmt(mine['reaction'].get('p50'), 2)}, "
            f"p99 {fmt(mine['reaction'].get('p99'), 2)}",
            "  runnerctl supervision (exit -> registration starts) ms: "
            f"p50 {fmt(sup.get('p50'), 2)}, "
            f"p95 {fmt(sup.get('p95'), 2)}, p99 {fmt(sup.get('p99'), 2)}, "
            f"max {fmt(sup.get('max'), 2)} (n={sup.get('n', 0)})",
            f"  runnerctl exit -> next runner online ms: p50 {fmt(mine['online'].get('p50'), 1)}, "
            f"p99 {fmt(mine['online'].get('p99'), 1)}; API time per call ms: p50 "
            f"{fmt(mine['api_time'].get('p50'), 1)}, p99 {fmt(mine['api_time'].get('p99'), 1)}; "
            f"per respawn {fmt(mine['api_seconds_per_respawn'] * 1000, 1)} ms",
            f"  runnerctl worker SIGKILLed -> replacement forked ms: p50 "
            f"{fmt(mine['kill'].get('p50'), 2)}, p99 {fmt(mine['kill'].get('p99'), 2)} "
            f"(n={mine['kill'].get('n', 0)}); USS per worker MiB: median "
            f"{fmt(uss.get('median'), 2)}, max {fmt(uss.get('max'), 2)}",
        ]
        for peer in PEERS:
            theirs = rows.get(peer)
            if theirs is None or "error" in theirs:
                continue
            lines.append(
                f"  runnerctl / {peer}: respawn p50 "
                f"{ratio(mine['respawn'].get('p50'), theirs['respawn'].get('p50'))}, p99 "
                f"{ratio(mine['respawn'].get('p99'), theirs['respawn'].get('p99'))}; supervision "
                f"p50 {ratio(sup.get('p50'), theirs['respawn'].get('p50'))}, p99 "
                f"{ratio(sup.get('p99'), theirs['respawn'].get('p99'))}; CPU churn "
                f"{ratio(mine['cpu_churn'], theirs['cpu_churn'])}, idle "
                f"{ratio(mine['cpu_idle'], theirs['cpu_idle'])}; PSS "
                f"{ratio(mine['pss'], theirs['pss'])}; cold start forked "
                f"{ratio(mine['cold_forked'], theirs['cold_start'])}, online "
                f"{ratio(mine['cold_start'], theirs['cold_start'])}"
            )
    lines.append("")
    return lines
