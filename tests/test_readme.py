"""The README's promises: its example parses, and its opening commands are the real ones."""

from __future__ import annotations

import re
from pathlib import Path

from runnerctl.config import load_config

README = Path(__file__).resolve().parent.parent / "README.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_the_readme_opens_with_the_demo_and_the_test_command() -> None:
    opening = blocks("sh")[0].splitlines()

    assert opening[0].endswith("runnerctl-manager demo")
    assert opening[1].endswith("scripts/test")
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "\nscripts/test\n" in ci, ".ci/run must run the README's test command"


def test_the_readme_example_declares_the_pool_it_describes(tmp_path: Path) -> None:
    config_file = tmp_path / "runnerctl.yaml"
    config_file.write_text(blocks("yaml")[0], encoding="utf-8")

    slots = load_config(config_file, environ={}).slots()

    assert [slot.name for slot in slots] == ["ci-1", "ci-2", "ci-3", "ci-4", "builder"]
    assert [slot.registration for slot in slots] == ["jit"] * 4 + ["token"]
    assert slots[-1].scope.kind == "org" and not slots[-1].ephemeral
