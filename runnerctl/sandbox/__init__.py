"""The loopback GitHub double: ``Sandbox`` starts it in-process (see docs/sandbox.md).

::

    with Sandbox(repos=["octo/app"], root=tmp_path) as sandbox:
        sandbox.api_url, sandbox.app_id, sandbox.private_key_file, sandbox.token
        job = sandbox.enqueue_job(["self-hosted", "linux"], duration=1)
        sandbox.wait_for_job(job["id"], "succeeded", timeout=30)
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from runnerctl.sandbox import jobs
from runnerctl.sandbox.control import Controls
from runnerctl.sandbox.faults import CallLog, FaultBook
from runnerctl.sandbox.ratelimit import RateLimiter
from runnerctl.sandbox.releases import Distribution
from runnerctl.sandbox.server import SandboxServer
from runnerctl.sandbox.state import World, random_text
from runnerctl.sandbox.wire import Context

logger = logging.getLogger(__name__)

__all__ = ["Sandbox"]

SWEEP_INTERVAL = 0.2


@functools.lru_cache(maxsize=1)
def app_key() -> rsa.RSAPrivateKey:
    """The app's RSA key, made once per process: generating one costs a good part of a
    second on a loaded machine, and sandboxes already differ by app id and port."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Sandbox:
    """The double on 127.0.0.1, plus the controls a test uses to drive it.

    ``repos``/``orgs`` say where the app is installed (neither: everywhere);
    ``enterprises`` which enterprises exist (none given: any). ``root`` holds the app's
    private key and the tarball cache; without it a temporary folder is made and removed.
    ``permissions`` replaces what the installation holds (default: administration and
    organization_self_hosted_runners write, metadata read).
    """

    def __init__(
        self,
        repos: Iterable[str] = (),
        orgs: Iterable[str] = (),
        enterprises: Iterable[str] = (),
        root: Path | None = None,
        port: int = 0,
        permissions: dict[str, str] | None = None,
    ) -> None:
        self.repos = list(repos)
        self.permissions = dict(permissions) if permissions is not None else None
        self.orgs = list(orgs)
        self.enterprises = list(enterprises)
        self.port = port
        self._root = root
        self._own_root = False
        self._server: SandboxServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self.controls: Controls | None = None

    # -- life ----------------------------------------------------------------------------

    def start(self) -> Sandbox:
        """Generate the app key, open the port and serve in background threads."""
        if self._root is None:
            self._root = Path(tempfile.mkdtemp(prefix="runnerctl-sandbox-"))
            self._own_root = True
        try:
            return self._start(self._root)
        except BaseException:
            if self._own_root:
                shutil.rmtree(self._root, ignore_errors=True)
            raise

    def _start(self, root: Path) -> Sandbox:
        root.mkdir(parents=True, exist_ok=True)
        key = app_key()
        self.private_key_file = root / "app-private-key.pem"
        self._write_key(key)
        self.app_id = 100000 + secrets.randbelow(900000)
        self.client_id = "Iv23li" + random_text(14).lower()
        self.installation_id = 10_000_000 + secrets.randbelow(90_000_000)
        self.token = "ghp_" + random_text(36)
        world = World(
            self.repos,
            self.orgs,
            self.enterprises,
            self.app_id,
            self.client_id,
            self.installation_id,
            self.token,
        )
        if self.permissions is not None:
            world.installation.permissions = dict(self.permissions)
        context = Context(
            world,
            key.public_key(),
            RateLimiter(),
            FaultBook(),
            CallLog(),
            Distribution(root / "tarballs"),
        )
        server = SandboxServer(("127.0.0.1", self.port), context)
        self._server = server
        self.port = server.server_address[1]
        context.server_url = f"http://127.0.0.1:{self.port}"
        self.controls = Controls(context)
        # A short poll interval lets stop() return quickly.
        self._spawn(lambda: server.serve_forever(poll_interval=0.05), "sandbox-http")
        self._spawn(self._sweep, "sandbox-sweep")
        logger.info("serving: sandbox on %s (app %s)", context.server_url, self.app_id)
        return self

    def _write_key(self, key: rsa.RSAPrivateKey) -> None:
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
        descriptor = os.open(self.private_key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(pem)

    def _spawn(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _sweep(self) -> None:
        assert self.controls is not None
        while not self._stopping.wait(SWEEP_INTERVAL):
            jobs.sweep(self.controls.world)

    def stop(self) -> None:
        """Stop serving, cut open connections and remove a temporary root."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._server = None
        if self._own_root and self._root is not None:
            shutil.rmtree(self._root, ignore_errors=True)
        logger.info("stopped: sandbox on port %s", self.port)

    def __enter__(self) -> Sandbox:
        return self.start() if self._server is None else self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Sandbox(server_url={self.server_url!r}, app_id={getattr(self, 'app_id', None)})"

    # -- where it is ---------------------------------------------------------------------

    @property
    def server_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return self.server_url

    @property
    def ghes_api_url(self) -> str:
        return self.server_url + "/api/v3"

    @property
    def admin_url(self) -> str:
        return self.server_url + "/_sandbox"

    @property
    def root(self) -> Path:
        assert self._root is not None, "start() the sandbox first"
        return self._root

    def info(self) -> dict[str, Any]:
        """What ``serve`` prints: the settings runnerctl needs to use this double."""
        return {
            "api_url": self.api_url,
            "server_url": self.server_url,
            "app_id": self.app_id,
            "installation_id": self.installation_id,
            "private_key_file": str(self.private_key_file),
            "token": self.token,
            "admin_url": self.admin_url,
        }

    # -- controls (the same as /_sandbox over HTTP) --------------------------------------

    def _controls(self) -> Controls:
        assert self.controls is not None, "start() the sandbox first"
        return self.controls

    def enqueue_job(
        self,
        labels: list[str],
        duration: float = 0.0,
        scope: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        return self._controls().enqueue_job(labels, duration, scope, name)

    def job(self, job_id: int) -> dict[str, Any]:
        return self._controls().job(job_id)

    def jobs(self) -> list[dict[str, Any]]:
        return self._controls().jobs()

    def cancel_job(self, job_id: int) -> None:
        self._controls().cancel_job(job_id)

    def wait_for_job(self, job_id: int, status: str, timeout: float = 30.0) -> dict[str, Any]:
        return self._controls().wait_for_job(job_id, status, timeout)

    def runners(self) -> list[dict[str, Any]]:
        return self._controls().runners()

    def force_exit(self, runner_id: int, code: int) -> None:
        self._controls().force_exit(runner_id, code)

    def request_update(self, runner_id: int, version: str) -> None:
        self._controls().request_update(runner_id, version)

    def calls(self) -> list[dict[str, Any]]:
        return self._controls().calls()

    def clear_calls(self) -> None:
        self._controls().clear_calls()

    def add_fault(self, pattern: str, kind: str, **spec: Any) -> None:
        self._controls().add_fault(pattern=pattern, kind=kind, **spec)

    def clear_faults(self) -> None:
        self._controls().clear_faults()

    def corrupt(self, version: str) -> None:
        self._controls().corrupt(version)

    def configure(self, **settings: Any) -> dict[str, Any]:
        return self._controls().configure(**settings)

    def settings(self) -> dict[str, Any]:
        return self._controls().settings()
