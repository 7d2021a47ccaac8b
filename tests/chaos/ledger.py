"""What the soak counts: faults it injected, checks it made, violations it found."""

from __future__ import annotations

import threading
from collections import Counter

#: Examples kept per violation kind; the count covers them all.
EXAMPLES = 3


class Ledger:
    """Thread-safe tallies, printed as one table at the end of the soak."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.faults: Counter[str] = Counter()
        self.checks: Counter[str] = Counter()
        self.violations: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def checked(self, invariant: str, count: int = 1) -> None:
        with self._lock:
            self.checks[invariant] += count

    def violated(self, invariant: str, detail: str) -> None:
        with self._lock:
            self.violations[invariant] += 1
            kept = self.examples.setdefault(invariant, [])
            if len(kept) < EXAMPLES:
                kept.append(detail)

    def table(self, header: str) -> str:
        """The summary: one line per fault kind and per invariant, then examples."""
        with self._lock:
            lines = [header, "", f"{'fault injected':<44} {'count':>7}"]
            lines += [f"{kind:<44} {n:>7}" for kind, n in sorted(self.faults.items())]
            lines += ["", f"{'invariant':<44} {'checks':>7} {'violations':>10}"]
            for name in sorted(set(self.checks) | set(self.violations)):
                lines.append(f"{name:<44} {self.checks[name]:>7} {self.violations[name]:>10}")
            for name, kept in sorted(self.examples.items()):
                lines += ["", f"{name}:"] + [f"  - {detail}" for detail in kept]
            return "\n".join(lines)

    def total_violations(self) -> int:
        with self._lock:
            return sum(self.violations.values())
