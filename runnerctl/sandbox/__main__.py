"""``python -m runnerctl.sandbox serve``: run the double until SIGINT or SIGTERM.

The first line on stdout is one JSON object with everything a client needs
(``api_url``, ``server_url``, ``app_id``, ``installation_id``, ``private_key_file``,
``token``, ``admin_url``).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from runnerctl.sandbox import Sandbox


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runnerctl.sandbox")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the loopback GitHub until interrupted")
    serve.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free)")
    serve.add_argument("--repo", action="append", default=[], metavar="OWNER/REPO")
    serve.add_argument("--org", action="append", default=[], metavar="ORG")
    serve.add_argument("--enterprise", action="append", default=[], metavar="SLUG")
    serve.add_argument("--root", type=Path, help="folder for the key and tarball cache")
    serve.add_argument("--verbose", action="store_true", help="log every event to stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    sandbox = Sandbox(
        repos=args.repo, orgs=args.org, enterprises=args.enterprise, root=args.root, port=args.port
    )
    try:
        sandbox.start()
    except OSError as error:
        print(f"sandbox: cannot listen on 127.0.0.1:{args.port}: {error.strerror}", file=sys.stderr)
        return 1
    try:
        print(json.dumps(sandbox.info()), flush=True)
        while not stop.wait(1.0):
            pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
