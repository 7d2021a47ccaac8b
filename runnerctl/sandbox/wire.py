"""What handlers see and return: a parsed request, a response, and the shared context."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from runnerctl.sandbox.auth import NOBODY, Credential
from runnerctl.sandbox.faults import CallLog, FaultBook
from runnerctl.sandbox.ratelimit import RateLimiter
from runnerctl.sandbox.releases import Distribution
from runnerctl.sandbox.state import ApiError, World


@dataclass
class Context:
    """Everything the handlers share; one per sandbox."""

    world: World
    public_key: Any
    limiter: RateLimiter
    faults: FaultBook
    calls: CallLog
    distribution: Distribution
    server_url: str = ""


@dataclass
class Request:
    method: str
    path: str
    query_string: str
    headers: dict[str, str]
    body: bytes
    prefix: str
    server_url: str
    credential: Credential = NOBODY
    kind: str = ""

    @property
    def api_url(self) -> str:
        """The API base this request used (root or ``/api/v3``)."""
        return self.server_url + self.prefix

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())

    def param(self, name: str) -> str | None:
        values = parse_qs(self.query_string).get(name)
        return values[0] if values else None

    def json(self, required: bool = True) -> Any:
        """The body as JSON: 400 "Problems parsing JSON" when it is not."""
        if not self.body.strip():
            if required:
                raise ApiError(400, "Problems parsing JSON")
            return {}
        try:
            return json.loads(self.body)
        except ValueError:
            raise ApiError(400, "Problems parsing JSON") from None


@dataclass
class Response:
    status: int
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.body is None:
            return b""
        return json.dumps(self.body).encode()


Handler = Callable[[Context, Request, "re.Match[str]"], Response]


@dataclass(frozen=True)
class Route:
    """``kind`` decides the checks: rest (auth, rate limit), protocol or control.

    ``counted`` is False for the one REST call that costs nothing (``/rate_limit``).
    """

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    kind: str = "rest"
    counted: bool = True


def route(
    method: str, pattern: str, handler: Handler, kind: str = "rest", counted: bool = True
) -> Route:
    return Route(method, re.compile(f"^{pattern}$"), handler, kind, counted)
