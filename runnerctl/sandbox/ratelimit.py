"""The primary rate limit: an hourly budget per credential, reported in headers."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

WINDOW_SECONDS = 3600


@dataclass
class Window:
    limit: int
    used: int
    reset: int

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.used)

    def headers(self) -> dict[str, str]:
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(self.remaining),
            "x-ratelimit-used": str(self.used),
            "x-ratelimit-reset": str(self.reset),
            "x-ratelimit-resource": "core",
        }


class RateLimiter:
    """Budgets keyed by credential (an installation, the token, the app, or anonymous)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, Window] = {}

    def window(self, key: str, limit: int) -> Window:
        """The current window of ``key``, opened afresh once the previous one ended."""
        with self._lock:
            window = self._windows.get(key)
            now = time.time()
            if window is None or window.reset <= now:
                window = Window(limit, 0, int(now) + WINDOW_SECONDS)
                self._windows[key] = window
            window.limit = limit
            return Window(window.limit, window.used, window.reset)

    def spend(self, key: str, limit: int) -> Window:
        """Count one call against ``key``; returns the window after it."""
        self.window(key, limit)
        with self._lock:
            window = self._windows[key]
            window.used += 1
            return Window(window.limit, window.used, window.reset)

    def reset(self) -> None:
        """Forget every budget, as when the limits change."""
        with self._lock:
            self._windows.clear()


def budget_of(kind: str, label: str, limit: int, anonymous_limit: int) -> tuple[str, int]:
    """The budget key and hourly limit of a credential (anonymous callers share one)."""
    if kind == "none":
        return "none", anonymous_limit
    return label, limit
