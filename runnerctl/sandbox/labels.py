"""The runner label endpoints: list, add, replace custom, remove all custom, remove one."""

from __future__ import annotations

import re
from urllib.parse import unquote

from runnerctl.sandbox.rest import check_labels, scoped
from runnerctl.sandbox.state import ApiError, Runner
from runnerctl.sandbox.wire import Context, Request, Response


def _labels_body(runner: Runner) -> Response:
    labels = [label.as_json() for label in runner.labels]
    return Response(200, {"total_count": len(labels), "labels": labels})


def _runner(ctx: Context, request: Request, match: re.Match[str], level: str) -> Runner:
    scope = scoped(ctx, request, match, level)
    return ctx.world.runner_in(scope, int(match["id"]))


def list_labels(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    with ctx.world.lock:
        return _labels_body(_runner(ctx, request, match, "read"))


def add_labels(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    body = request.json()
    names = check_labels(body.get("labels") if isinstance(body, dict) else None, 1)
    with ctx.world.lock:
        runner = _runner(ctx, request, match, "write")
        for name in names:
            if all(label.name.lower() != name.lower() for label in runner.labels):
                runner.labels.append(ctx.world.custom_label(name))
        return _labels_body(runner)


def set_labels(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    body = request.json()
    names = check_labels(body.get("labels") if isinstance(body, dict) else None, 0)
    with ctx.world.lock:
        runner = _runner(ctx, request, match, "write")
        runner.labels = [label for label in runner.labels if label.type == "read-only"]
        for name in names:
            if all(label.name.lower() != name.lower() for label in runner.labels):
                runner.labels.append(ctx.world.custom_label(name))
        return _labels_body(runner)


def remove_all_labels(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    with ctx.world.lock:
        runner = _runner(ctx, request, match, "write")
        runner.labels = [label for label in runner.labels if label.type == "read-only"]
        return _labels_body(runner)


def remove_label(ctx: Context, request: Request, match: re.Match[str]) -> Response:
    """404 when the custom label is not on the runner; 422 for a read-only label."""
    name = unquote(match["name"])
    with ctx.world.lock:
        runner = _runner(ctx, request, match, "write")
        found = [label for label in runner.labels if label.name.lower() == name.lower()]
        if not found:
            raise ApiError(404, "Not Found")
        if found[0].type == "read-only":
            raise ApiError(422, f"Cannot remove read-only label {name}", errors=["read-only label"])
        runner.labels.remove(found[0])
        return _labels_body(runner)
