"""The floor: the least a supervisor can do, a fork-and-wait loop (no config, no logs).

    python bench/floor.py SLOTS SECONDS PROGRAM [ARG ...]

Starts SLOTS copies of PROGRAM (the last argument gets the slot number appended, as
``slot-3``), restarts each the moment it exits, and after SECONDS (or on SIGTERM)
kills what runs and exits.
"""

import os
import signal
import sys
import time


def main() -> None:
    slots, seconds, program = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:]
    deadline = time.monotonic() + seconds
    running: dict[int, int] = {}  # pid -> slot
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    def start(slot: int) -> None:
        pid = os.fork()
        if pid == 0:
            os.execv(program[0], [*program[:-1], f"{program[-1]}-{slot}"])
        running[pid] = slot

    try:
        for slot in range(1, slots + 1):
            start(slot)
        while time.monotonic() < deadline:
            pid, _status = os.wait()
            start(running.pop(pid))
    finally:
        for pid in running:
            os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
