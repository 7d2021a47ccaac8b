"""Faults a test injects, and the log of every call the server answered."""

from __future__ import annotations

import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

KINDS = ("latency", "status", "drop", "secondary")


@dataclass
class Fault:
    """Applies to requests whose path matches ``pattern`` (and ``method`` when given).

    ``count`` limits how many requests it hits (None: unlimited); ``fraction`` makes it
    hit only that share of matching requests.
    """

    pattern: re.Pattern[str]
    kind: str
    method: str | None = None
    status: int = 503
    seconds: float = 1.0
    count: int | None = None
    fraction: float = 1.0

    @classmethod
    def from_json(cls, spec: dict[str, Any]) -> Fault:
        """Build a fault from the ``/_sandbox/faults`` body; ValueError on a bad spec."""
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError(f"fault kind {kind!r} unknown: use one of {', '.join(KINDS)}")
        try:
            pattern = re.compile(str(spec["pattern"]))
        except (KeyError, re.error) as error:
            raise ValueError(f"fault pattern missing or not a regex: {error}") from None
        default_status = 403 if kind == "secondary" else 503
        count = spec.get("count")
        return cls(
            pattern=pattern,
            kind=kind,
            method=str(spec["method"]).upper() if spec.get("method") else None,
            status=int(spec.get("status") or default_status),
            seconds=float(spec.get("seconds", 1.0)),
            count=None if count is None else int(count),
            fraction=float(spec.get("fraction", 1.0)),
        )


class FaultBook:
    """The active faults; ``take`` picks the one (if any) that hits a request."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._random = random.Random(seed)

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, method: str, path: str) -> Fault | None:
        """The first live fault matching the request, spending one of its count."""
        with self._lock:
            for fault in self._faults:
                if fault.method and fault.method != method:
                    continue
                if fault.count is not None and fault.count <= 0:
                    continue
                if not fault.pattern.search(path):
                    continue
                if fault.fraction < 1.0 and self._random.random() >= fault.fraction:
                    continue
                if fault.count is not None:
                    fault.count -= 1
                return fault
        return None


class CallLog:
    """Every answered call: method, path, credential, status, and the JSON body sent."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[dict[str, Any]] = []

    def record(
        self, method: str, path: str, credential: str, status: int, body: Any = None
    ) -> None:
        entry = {
            "method": method,
            "path": path,
            "credential": credential,
            "status": status,
            "time": time.time(),
            "body": body,
        }
        with self._lock:
            self._calls.append(entry)

    def calls(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()
