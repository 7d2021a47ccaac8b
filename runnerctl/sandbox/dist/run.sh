#!/bin/bash
# Keep the stand-in listener running: loop run-helper.sh while it asks for a restart (2).
# Like the real run.sh, every other outcome exits 0 (7 passes through when opted in), so
# this script's status never tells success from a fatal error.

root="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"

start_helper() {
    # The real run.sh re-copies the template every round, so an update can replace it.
    cp -f "$root/run-helper.sh.template" "$root/run-helper.sh"
}

loop_plain() {
    while true; do
        start_helper
        "$root/run-helper.sh" "$@"
        code=$?
        if [ "$code" -eq 2 ]; then
            echo "Restarting runner..."
            continue
        fi
        echo "Exiting runner..."
        if [ "$code" -eq 7 ]; then
            exit 7
        fi
        exit 0
    done
}

loop_trapping() {
    # RUNNER_MANUALLY_TRAP_SIG: run the helper as its own job (own process group) and
    # turn INT or TERM into SIGINT for that whole group.
    set -m
    trap 'kill -INT -- -$helper' INT TERM
    while true; do
        start_helper
        "$root/run-helper.sh" "$@" &
        helper=$!
        wait "$helper"
        code=$?
        if [ "$code" -eq 2 ]; then
            echo "Restarting runner..."
            continue
        fi
        echo "Exiting runner..."
        trap - INT TERM
        # A trapped signal interrupts the first wait; this one collects the real status.
        wait "$helper"
        code=$?
        exit "$code"
    done
}

if [ -z "$RUNNER_MANUALLY_TRAP_SIG" ]; then
    loop_plain "$@"
else
    loop_trapping "$@"
fi
