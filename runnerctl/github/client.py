"""The HTTP transport to GitHub's REST API: one ``requests.Session`` and its manners.

It sends the headers GitHub expects, puts a timeout on every call, retries 5xx answers
and dropped connections a bounded number of times with exponential backoff and jitter,
waits out rate limits (up to ``max_rate_wait``; longer waits raise ``RateLimited``),
makes list requests conditional on their ETag, and follows ``Link`` pagination.

It knows nothing about credentials beyond the ``Authorization`` value it is handed, and
it never logs headers, so no secret can reach a log line through it.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests

from runnerctl import __version__
from runnerctl.errors import RateLimited, Unreachable

log = logging.getLogger(__name__)

API_VERSION = "2022-11-28"
USER_AGENT = f"runnerctl/{__version__}"


@dataclass(frozen=True)
class Policy:
    """How patient the transport is; the defaults suit a service, tests shorten them."""

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    attempts: int = 4  # tries per request for 5xx answers and connection errors
    backoff: float = 1.0  # first retry delay; doubles each time, with jitter
    backoff_cap: float = 30.0
    max_rate_wait: float = 120.0  # longer rate-limit waits raise RateLimited
    rate_retries: int = 3  # rate-limit waits per request before giving up


@dataclass(frozen=True)
class Reply:
    """A decoded answer: status, JSON body (or None) and the headers that matter."""

    status: int
    body: Any
    headers: dict[str, str]
    from_cache: bool = False

    @property
    def message(self) -> str:
        if isinstance(self.body, dict):
            return str(self.body.get("message", ""))
        return ""


@dataclass
class _Cached:
    etag: str
    body: Any
    headers: dict[str, str]


class Transport:
    """Sends REST requests to ``api_url`` and counts what they cost."""

    def __init__(
        self,
        api_url: str,
        policy: Policy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.policy = policy or Policy()
        self._sleep = sleep
        self._clock = clock
        self._etags: dict[str, _Cached] = {}
        self.session = requests.Session()
        # Retries are ours (with backoff and logging); urllib3's own would hide them.
        self.session.mount("http://", requests.adapters.HTTPAdapter(max_retries=0))
        self.session.mount("https://", requests.adapters.HTTPAdapter(max_retries=0))
        self.session.headers.update(
            {
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": USER_AGENT,
            }
        )
        self.calls = 0  # answers that count against the rate limit
        self.rate_remaining: int | None = None  # GitHub's last word on the budget left
        self.not_modified = 0  # 304 answers, which GitHub does not count

    def url(self, path: str) -> str:
        """An absolute URL for an API path; absolute URLs pass through."""
        return path if "://" in path else f"{self.api_url}{path}"

    def request(
        self,
        method: str,
        path: str,
        authorization: str | None,
        json: Any = None,
        params: dict[str, Any] | None = None,
        conditional: bool = False,
    ) -> Reply:
        """One request with retries and rate-limit waits; any final status is returned."""
        url = self.url(path)
        key = _cache_key(url, params)
        headers = {"Authorization": authorization} if authorization else {}
        cached = self._etags.get(key) if conditional else None
        if cached is not None:
            headers["If-None-Match"] = cached.etag
        rate_waits = 0
        while True:
            reply = self._send_with_retries(method, url, headers, json, params)
            wait = self._rate_limit_wait(reply, rate_waits)
            if wait is None:
                break
            rate_waits += 1
            log.warning(
                "rate limited: %s %s (%d), waiting %.1fs", method, _path(url), reply.status, wait
            )
            self._sleep(wait)
        if reply.status == 304 and cached is not None:
            return Reply(200, cached.body, cached.headers, from_cache=True)
        if conditional and reply.status == 200 and "etag" in reply.headers:
            self._etags[key] = _Cached(reply.headers["etag"], reply.body, reply.headers)
        return reply

    def pages(
        self, path: str, authorization: str | None, params: dict[str, Any]
    ) -> Iterator[Reply]:
        """Every page of a list, following ``Link: <...>; rel="next"``, each conditional."""
        url: str | None = self.url(path)
        page_params: dict[str, Any] | None = params
        while url is not None:
            reply = self.request("GET", url, authorization, params=page_params, conditional=True)
            yield reply
            if reply.status != 200:
                return
            url = _next_link(reply.headers.get("link", ""))
            page_params = None  # the next link carries the query string

    def _send_with_retries(
        self, method: str, url: str, headers: dict[str, str], body: Any, params: Any
    ) -> Reply:
        attempts = self.policy.attempts
        for attempt in range(1, attempts + 1):
            try:
                reply = self._send(method, url, headers, body, params)
            except requests.RequestException as error:
                if attempt == attempts:
                    raise Unreachable(
                        f"GitHub at {self.api_url} did not answer {method} {_path(url)} after "
                        f"{attempts} attempts ({type(error).__name__}): check the network "
                        "and api_url"
                    ) from None
                log.warning(
                    "retrying: %s %s (%s, attempt %d)",
                    method,
                    _path(url),
                    type(error).__name__,
                    attempt,
                )
            else:
                if reply.status < 500:
                    return reply
                if attempt == attempts:
                    raise Unreachable(
                        f"GitHub at {self.api_url} answered {reply.status} to {method} "
                        f"{_path(url)} after {attempts} attempts: try again later"
                    )
                log.warning(
                    "retrying: %s %s (%d, attempt %d)", method, _path(url), reply.status, attempt
                )
            self._sleep(self._backoff(attempt))
        raise AssertionError("unreachable")  # the loop returns or raises

    def _send(
        self, method: str, url: str, headers: dict[str, str], body: Any, params: Any
    ) -> Reply:
        started = time.monotonic()
        response = self.session.request(
            method,
            url,
            headers=headers,
            json=body,
            params=params,
            timeout=(self.policy.connect_timeout, self.policy.read_timeout),
        )
        if response.status_code == 304:
            self.not_modified += 1
        else:
            self.calls += 1
        remaining = response.headers.get("x-ratelimit-remaining", "")
        if remaining.isdigit():
            self.rate_remaining = int(remaining)
        log.debug(
            "github: %s %s -> %d (%.3fs)",
            method,
            _path(url),
            response.status_code,
            time.monotonic() - started,
        )
        return Reply(
            response.status_code,
            _decode(response),
            {k.lower(): v for k, v in response.headers.items()},
        )

    def _rate_limit_wait(self, reply: Reply, waits_so_far: int) -> float | None:
        """Seconds to wait before retrying a rate-limited reply; None when it is not one."""
        if reply.status not in (403, 429):
            return None
        headers = reply.headers
        now = self._clock()
        if "retry-after" in headers:
            wait = _number(headers["retry-after"], 60.0)
        elif headers.get("x-ratelimit-remaining") == "0":
            wait = max(_number(headers.get("x-ratelimit-reset", ""), now) - now, 0.0) + 1.0
        elif reply.status == 429 or "rate limit" in reply.message.lower():
            wait = 60.0 * 2**waits_so_far  # GitHub's advice when it names no time
        else:
            return None  # a plain 403: a permission problem, not a limit
        if wait > self.policy.max_rate_wait or waits_so_far >= self.policy.rate_retries:
            raise RateLimited(
                f"GitHub rate limit reached (HTTP {reply.status}); it resets in {wait:.0f}s: "
                "runnerctl will retry later",
                retry_at=now + wait,
            )
        return wait

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.policy.backoff * 2 ** (attempt - 1), self.policy.backoff_cap)
        return random.uniform(ceiling / 2, ceiling)


def _decode(response: requests.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _number(text: str, default: float) -> float:
    try:
        return float(text)
    except ValueError:
        return default


def _cache_key(url: str, params: dict[str, Any] | None) -> str:
    if not params:
        return url
    query = "&".join(f"{name}={params[name]}" for name in sorted(params))
    return f"{url}?{query}"


def _next_link(link: str) -> str | None:
    for part in link.split(","):
        target, _, rest = part.partition(";")
        if 'rel="next"' in rest:
            return target.strip().strip("<>")
    return None


def _path(url: str) -> str:
    """The URL without scheme and host, for log lines."""
    rest = url.split("://", 1)[-1]
    return "/" + rest.split("/", 1)[1] if "/" in rest else "/"
