#!/bin/bash
# Configure (or with "remove", unconfigure) the stand-in runner, as the real config.sh does.

if [ "$(id -u)" -eq 0 ] && [ -z "${RUNNER_ALLOW_RUNASROOT+set}" ]; then
    echo "Must not run with sudo"
    exit 1
fi

# Work from the folder this script lives in, wherever it was called from.
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" || exit 1

source ./env.sh

shopt -s nocasematch
if [[ "$1" == "remove" ]]; then
    ./bin/Runner.Listener "$@"
else
    ./bin/Runner.Listener configure "$@"
fi
