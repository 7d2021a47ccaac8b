"""The HTTP side: routing, GitHub's request checks, rate-limit headers, faults, the call log.

Every REST path is served at the root and under ``/api/v3``. A request passes, in order:
an injected fault, the User-Agent and API-version checks, authentication, the rate-limit
budget, then its handler. ``/_sandbox`` control calls skip all of it and are not logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from runnerctl.sandbox.auth import identify
from runnerctl.sandbox.faults import Fault
from runnerctl.sandbox.ratelimit import budget_of
from runnerctl.sandbox.routes import ROUTES
from runnerctl.sandbox.state import ApiError
from runnerctl.sandbox.wire import Context, Request, Response, Route

logger = logging.getLogger(__name__)

GHES_PREFIX = "/api/v3"
DOWNLOADS = "/_downloads/"
SUPPORTED_API_VERSIONS = ("2022-11-28", "2026-03-10")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
NO_USER_AGENT = (
    "Request forbidden by administrative rules. Every API request needs a User-Agent "
    "header naming the client (docs.github.com: REST API, user agent required).\n"
)


class SandboxServer(ThreadingHTTPServer):
    """A threading server that can also cut every open connection when it stops."""

    daemon_threads = True
    request_queue_size = 1024  # 300 runners reconnect at once in the benchmark

    def __init__(self, address: tuple[str, int], context: Context) -> None:
        super().__init__(address, SandboxHandler)
        self.context = context
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-request (a killed runner, a dropped-connection fault)
        # is routine here; socketserver would print a traceback for it.
        logger.debug("connection error from %s", client_address, exc_info=True)

    def close_connections(self) -> None:
        with self._open_lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


def find_route(method: str, path: str) -> tuple[Route, re.Match[str]] | None:
    for candidate in ROUTES:
        if candidate.method == method:
            match = candidate.pattern.match(path)
            if match:
                return candidate, match
    return None


def _etag(payload: bytes) -> str:
    return 'W/"' + hashlib.sha256(payload).hexdigest()[:40] + '"'


def _etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    wanted = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") in (wanted, "*") for tag in header.split(","))


class SandboxHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle on, each answer would wait
    # for the client's delayed ACK (about 40 ms).
    disable_nagle_algorithm = True
    server: SandboxServer

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("http: " + format, *args)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_PATCH(self) -> None:
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    # -- one request -------------------------------------------------------------------

    def _serve(self, method: str) -> None:
        ctx = self.server.context
        raw_path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        prefix = GHES_PREFIX if raw_path.startswith(GHES_PREFIX + "/") else ""
        request = Request(
            method,
            raw_path[len(prefix) :] or "/",
            query,
            {key.lower(): value for key, value in self.headers.items()},
            body,
            prefix,
            ctx.server_url,
        )
        if raw_path.startswith("/_sandbox/"):
            self._send(self._handle(request), record=False)
            return
        fault = ctx.faults.take(method, raw_path)
        if fault is not None and self._inject(fault, request):
            return
        if raw_path.startswith(DOWNLOADS):
            response = self._download(raw_path[len(DOWNLOADS) :])
        else:
            response = self._handle(request)
        self._send(response, request=request, raw_path=raw_path)

    def _inject(self, fault: Fault, request: Request) -> bool:
        """Apply a fault; True when it answered (or dropped) the request itself."""
        logger.info("fault: %s on %s %s", fault.kind, request.method, request.path)
        if fault.kind == "latency":
            time.sleep(fault.seconds)
            return False
        if fault.kind == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            self._record(request, "none", 0, None, self.path.partition("?")[0])
            return True
        if fault.kind == "secondary":
            error = ApiError(
                fault.status,
                "You have exceeded a secondary rate limit. Please wait a few minutes "
                "before you try again.",
                headers={"retry-after": str(max(1, round(fault.seconds)))},
            )
        else:
            error = ApiError(fault.status, f"Server Error (injected {fault.status})")
        self._send(self._error(error), request=request, raw_path=self.path.partition("?")[0])
        return True

    def _download(self, filename: str) -> Response:
        try:
            data = self.server.context.distribution.served_bytes(filename)
        except ApiError as error:
            return self._error(error)
        return Response(200, raw=data, content_type="application/gzip")

    def _handle(self, request: Request) -> Response:
        found = find_route(request.method, request.path)
        if found is None:
            return self._error(ApiError(404, "Not Found"))
        route, match = found
        request.kind = route.kind
        try:
            if route.kind == "rest":
                return self._rest(route, match, request)
            return route.handler(self.server.context, request, match)
        except ApiError as error:
            return self._error(error)
        except Exception:
            logger.exception("handler failed: %s %s", request.method, request.path)
            return self._error(ApiError(500, "Server Error"))

    def _rest(self, route: Route, match: re.Match[str], request: Request) -> Response:
        """GitHub's checks around a REST handler: agent, version, auth, budget, ETag."""
        ctx = self.server.context
        if not request.header("user-agent"):
            return Response(403, raw=NO_USER_AGENT.encode(), content_type="text/plain")
        version = request.header("x-github-api-version")
        if version is not None and version not in SUPPORTED_API_VERSIONS:
            status = 410 if _DATE.match(version) else 400
            raise ApiError(status, f"API version {version} is not supported.")
        request.credential = identify(ctx.world, ctx.public_key, request.header("authorization"))
        if not route.counted:
            return route.handler(ctx, request, match)
        settings = ctx.world.settings
        credential = request.credential
        key, limit = budget_of(
            credential.kind, credential.label, settings.rate_limit, settings.anonymous_rate_limit
        )
        window = ctx.limiter.window(key, limit)
        if window.remaining <= 0:
            raise ApiError(
                settings.rate_limit_status,
                f"API rate limit exceeded for {credential.label}.",
                headers=window.headers(),
            )
        try:
            response = route.handler(ctx, request, match)
        except ApiError as error:
            error.headers.update(ctx.limiter.spend(key, limit).headers())
            raise
        if response.status == 200 and request.method == "GET" and response.raw is None:
            etag = _etag(response.payload())
            response.headers["ETag"] = etag
            if _etag_matches(request.header("if-none-match"), etag):
                # A 304 is free: it does not count against the budget.
                response = Response(304, headers={"ETag": etag})
                response.headers.update(window.headers())
                return response
        response.headers.update(ctx.limiter.spend(key, limit).headers())
        response.headers["X-GitHub-Api-Version-Selected"] = version or SUPPORTED_API_VERSIONS[0]
        return response

    def _error(self, error: ApiError) -> Response:
        return Response(error.status, error.body(), headers=dict(error.headers))

    def _send(
        self,
        response: Response,
        record: bool = True,
        request: Request | None = None,
        raw_path: str = "",
    ) -> None:
        payload = b"" if response.status in (204, 304) else response.payload()
        if record and request is not None:
            # Logged before it is sent: a client that saw the answer finds it recorded.
            body = response.body if response.raw is None else None
            self._record(request, request.credential.label, response.status, body, raw_path)
        self.send_response(response.status)
        if payload:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-GitHub-Media-Type", "github.v3; format=json")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def _record(
        self, request: Request, credential: str, status: int, body: Any, raw_path: str
    ) -> None:
        if request.kind == "protocol":
            # Protocol calls name their credential by the scheme they used; their bodies
            # carry secrets and follow no GitHub schema, so they are not kept.
            scheme = (request.header("authorization") or "").partition(" ")[0].lower()
            credential = {"bearer": "agent", "remoteauth": "remote-auth"}.get(scheme, "none")
            body = None
        self.server.context.calls.record(request.method, raw_path, credential, status, body)
