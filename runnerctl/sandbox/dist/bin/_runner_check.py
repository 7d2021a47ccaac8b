"""``--check``: the connectivity check (``./run.sh --check --url U --pat P``).

The real runner probes GitHub, the Actions service and a few more endpoints and prints a
verdict per check. The stand-in probes the REST API with the PAT; exit 0 when it passes.
"""

from __future__ import annotations

from _runner_args import CommandSettings
from _runner_common import ReturnCode, RunnerError, http_request, say


def check(settings: CommandSettings) -> int:
    """Probe the GitHub that --url names with --pat; 0 when every check passes."""
    from _runner_registration import api_base, valid_server_url

    url, pat = settings.get("url"), settings.get("pat")
    if url is None or not valid_server_url(url):
        raise RunnerError("--check needs --url (the repository, organization or enterprise).")
    if pat is None:
        raise RunnerError("--check needs --pat.")
    endpoint = f"{api_base(url)}/rate_limit"
    say(f"Check GitHub REST API: {endpoint}")
    try:
        status, _ = http_request("GET", endpoint, f"token {pat}", timeout=15.0)
    except OSError as error:
        say(f"x Check failed: {error}")
        return ReturnCode.TERMINATED_ERROR
    if status != 200:
        say(f"x Check failed: HTTP {status}")
        return ReturnCode.TERMINATED_ERROR
    say("√ Check passed: GitHub REST API")
    return ReturnCode.SUCCESS
