"""Self-update, shaped like the real one: fetch the new bin/, then hand over to _update.sh.

The listener downloads the new version's tarball from the double, unpacks its ``bin/``
into ``bin.<version>``, starts ``_update.sh`` as an ordinary child and exits 3 (4 when
ephemeral). The script waits for the listener's pid to go, points the ``bin`` symlink at
the new folder (the old one becomes ``bin.<old>``), and touches ``update.finished`` in its
working directory, the runner root. It never restarts the runner; run-helper.sh does.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from _runner_common import ARCH, VERSION, say, say_error, timestamp

_SCRIPT = r"""#!/bin/bash
# Written by the stand-in listener: finishes a self-update once the listener is gone.
pid="$1"
old="$2"
new="$3"
mkdir -p _diag
log="_diag/SelfUpdate-$(date -u +%Y%m%d-%H%M%S).log"
exec >>"$log" 2>&1
echo "waiting for the listener (pid $pid) to exit"
for _ in $(seq 1 600); do
    state=$(sed -n 's/.*) \(.\).*/\1/p' "/proc/$pid/stat" 2>/dev/null)
    if [ -z "$state" ] || [ "$state" = "Z" ]; then
        break
    fi
    sleep 0.1
done
if [ -L bin ]; then
    rm bin
elif [ -d bin ]; then
    rm -rf "bin.$old"
    mv bin "bin.$old"
fi
ln -s "bin.$new" bin
echo "bin points at bin.$new"
touch update.finished
mv "$log" "$log.succeed"
"""


def download(root: Path, runner: dict[str, Any], version: str) -> bool:
    """Unpack ``version``'s bin/ into ``bin.<version>``; False (and a message) on failure."""
    import io

    base = urlsplit(str(runner.get("gitHubUrl", "")))
    name = f"actions-runner-linux-{ARCH}-{version}.tar.gz"
    say(f"{timestamp()}: Downloading {version} runner")
    try:
        data = _fetch(base.scheme, base.netloc, f"/_downloads/{name}")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            _unpack_bin(archive, root / f"bin.{version}")
    except (OSError, tarfile.TarError) as error:
        say_error(f"{timestamp()}: Runner update to {version} failed: {error}")
        return False
    return True


def launch(root: Path, version: str) -> None:
    """Start _update.sh as a child; it finishes after this process has exited."""
    import subprocess

    script = root / "_update.sh"
    script.write_text(_SCRIPT)
    script.chmod(0o755)
    subprocess.Popen(["bash", str(script), str(os.getpid()), VERSION, version], cwd=root)


def _fetch(scheme: str, netloc: str, path: str) -> bytes:
    import http.client

    connection_type = (
        http.client.HTTPSConnection if scheme == "https" else http.client.HTTPConnection
    )
    connection = connection_type(netloc, timeout=60)
    try:
        connection.request("GET", path, headers={"User-Agent": f"GitHubActionsRunner/{VERSION}"})
        response = connection.getresponse()
        data = response.read()
    except http.client.HTTPException as error:
        raise OSError(f"bad HTTP response: {error}") from error
    finally:
        connection.close()
    if response.status != 200:
        raise OSError(f"HTTP {response.status} for {path}")
    return data


def _unpack_bin(archive: tarfile.TarFile, target: Path) -> None:
    """Extract the archive's bin/ members into ``target``, refusing anything odd."""
    members = []
    for member in archive.getmembers():
        if not member.name.startswith("bin/") or ".." in member.name.split("/"):
            continue
        if not (member.isfile() or member.isdir()):
            continue
        member.name = member.name[len("bin/") :]
        members.append(member)
    target.mkdir(parents=True, exist_ok=True)
    # The "data" filter (Python 3.12, backported to 3.10.12) also refuses links and devices.
    options: dict[str, Any] = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    for member in members:
        if member.name:
            archive.extract(member, target, **options)
