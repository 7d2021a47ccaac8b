"""Checks that span several keys: an item's name and scope, and the pool as a whole.

Each check returns ``(path, message)`` pairs; the loader adds the file name. The rules:

- an item has ``name`` or ``name_prefix`` (a pool), never both; ``count`` needs a prefix;
- names follow ``fields.check_runner_name``, also for the longest name a pool makes;
- ``scope`` may be left out when exactly one of ``repo``, ``org``, ``enterprise`` is
  given; otherwise the key for the scope must be there and the others must not;
- slot names are unique across the file, compared without case as GitHub does;
- ``registration: jit`` only for ephemeral runners (a JIT config serves one job);
- enterprise runners need GITHUB_TOKEN: GitHub Apps cannot manage them.
"""

from __future__ import annotations

from collections.abc import Iterator

from runnerctl.config.fields import check_runner_name, show
from runnerctl.config.models import GitHubSettings, RunnerItem, Slot
from runnerctl.scope import ENTERPRISE_PATTERN, LOGIN_PATTERN, REPO_PATTERN

Problem = tuple[str, str]
SCOPE_KEYS = ("repo", "org", "enterprise")


NAME_KEYS = {"name", "name_prefix", "count"}


def check_item(item: RunnerItem, path: str, skip: set[str]) -> list[Problem]:
    """Everything wrong with one item's name and scope; ``skip`` keys already failed."""
    found: list[Problem] = []
    if not skip & NAME_KEYS:
        found += _check_names(item, path)
    if not skip & {"scope", *SCOPE_KEYS}:
        found += _check_scope(item, path)
    return found


def _check_names(item: RunnerItem, path: str) -> Iterator[Problem]:
    if item.name is not None and item.name_prefix is not None:
        yield path, "give either name (one runner) or name_prefix (a pool), not both"
    elif item.name is None and item.name_prefix is None:
        yield path, "needs name (one runner) or name_prefix with count (a pool)"
    if item.name is not None:
        problem = check_runner_name(item.name)
        if problem:
            yield f"{path}.name", problem
    if item.name_prefix is not None:
        problem = check_runner_name(item.name_prefix, "name_prefix")
        longest = f"{item.name_prefix}-{item.count}"
        if not problem and check_runner_name(longest):
            problem = (
                f"makes names up to {len(longest)} characters ({show(longest)}); GitHub allows 64"
            )
        if problem:
            yield f"{path}.name_prefix", problem
    elif "count" in item.model_fields_set:
        yield f"{path}.count", "only applies to a pool; use name_prefix instead of name"


def _check_scope(item: RunnerItem, path: str) -> Iterator[Problem]:
    given = [key for key in SCOPE_KEYS if getattr(item, key) is not None]
    kind: str | None = item.scope
    if kind is None:
        if not given:
            yield path, "has no scope; add repo: owner/repo, org: NAME or enterprise: SLUG"
            return
        if len(given) > 1:
            yield path, f"{' and '.join(given)} both given; keep one, or say which with scope:"
            return
        kind = given[0]
    elif getattr(item, kind) is None:
        others = ", ".join(f"{key}: {getattr(item, key)}" for key in given)
        hint = f" (found {others}; is scope: {given[0]} meant?)" if given else ""
        yield f"{path}.{kind}", f"is required for scope: {kind}{hint}"
        return
    for key in given:
        if key != kind:
            yield f"{path}.{key}", f"does not apply to scope: {kind}; remove it"
    target = getattr(item, kind)
    problem = _check_target(kind, target, explicit=item.scope is not None)
    if problem:
        yield f"{path}.{kind}", problem


def _check_target(kind: str, target: str, explicit: bool) -> str | None:
    """Why ``target`` is not a valid repo, org or enterprise name, or None."""
    if kind == "repo" and not REPO_PATTERN.match(target):
        if LOGIN_PATTERN.match(target):
            fix = "scope: org" if explicit else f"org: {target}"
            return f"{show(target)} is not owner/repo (for an organization use {fix})"
        return f"{show(target)} is not owner/repo"
    if kind == "org" and not LOGIN_PATTERN.match(target):
        if REPO_PATTERN.match(target):
            fix = "scope: repo" if explicit else f"repo: {target}"
            return f"{show(target)} is not an organization login (for a repository use {fix})"
        return f"{show(target)} is not an organization login (letters, digits, single hyphens)"
    if kind == "enterprise" and not ENTERPRISE_PATTERN.match(target):
        return (
            f"{show(target)} is not an enterprise slug "
            "(lowercase letters, digits and hyphens, as in /enterprises/SLUG)"
        )
    return None


def check_pool(expanded: list[tuple[str, list[Slot]]]) -> list[Problem]:
    """Slot-level rules over every item's slots: ``(item path, slots)`` in file order."""
    found: list[Problem] = []
    owners: dict[str, str] = {}
    for path, slots in expanded:
        if slots and slots[0].registration == "jit" and not slots[0].ephemeral:
            found.append(
                (
                    path,
                    "registration: jit needs ephemeral: true (a JIT runner takes one job); "
                    "use registration: token for a persistent runner",
                )
            )
        for slot in slots:
            owner = owners.setdefault(slot.name.lower(), path)
            if owner != path:
                found.append(
                    (
                        path,
                        f"runner name {show(slot.name)} is also used by {owner}; "
                        "names must be unique (case-insensitive)",
                    )
                )
    return found


def check_credentials(github: GitHubSettings, enterprise_paths: list[str]) -> list[Problem]:
    """Incomplete App credentials, and enterprise runners without a token."""
    found: list[Problem] = []
    has_key = github.private_key is not None or github.private_key_file is not None
    if github.token is None and github.app_id and not has_key:
        found.append(
            (
                "github.app_id",
                "has no private key; set GITHUB_APP_PRIVATE_KEY_FILE, "
                "GITHUB_APP_PRIVATE_KEY or github.private_key_file",
            )
        )
    if github.token is None and has_key and not github.app_id:
        found.append(
            (
                "github",
                "a GitHub App private key is set but no app id; set GITHUB_APP_ID or github.app_id",
            )
        )
    if github.auth_method == "app":
        for path in enterprise_paths:
            found.append(
                (
                    f"{path}.enterprise",
                    "GitHub Apps cannot manage enterprise runners; "
                    "set GITHUB_TOKEN to a token with the manage_runners:enterprise scope",
                )
            )
    return found
