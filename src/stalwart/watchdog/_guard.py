"""The guardian: kills the watchdog's process groups when the watchdog dies.

``PR_SET_PDEATHSIG`` only reaches the watchdog's direct children; whatever
they forked would outlive a ``kill -9`` of the watchdog. The guardian is a
tiny process in its own session that reads ``+pgid`` / ``-pgid`` lines from
a pipe; when the pipe reaches end-of-file (the watchdog is gone, however it
died) it SIGKILLs every group still registered and exits.

Run as a plain script (``python _guard.py``) so it imports only the standard
library and starts in milliseconds. It is not a ``stalwart`` command: nobody
but the watchdog starts it, it reads no settings and logs nothing, and as a
command it would load the CLI and the settings before it could guard anything.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

__all__ = ["Guardian", "main"]


class Guardian:
    """The watchdog's handle on its guardian process."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
        )

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _send(self, line: str) -> None:
        stdin = self._proc.stdin
        if stdin is None or stdin.closed:
            return
        try:
            stdin.write(line.encode() + b"\n")
            stdin.flush()
        except (BrokenPipeError, OSError):
            return

    def add(self, pgid: int) -> None:
        self._send(f"+{pgid}")

    def remove(self, pgid: int) -> None:
        self._send(f"-{pgid}")

    def close(self, timeout: float = 5.0) -> None:
        """Close the pipe (the guardian sweeps what is left and exits) and reap it."""
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=timeout)


def main() -> None:
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    groups: set[int] = set()
    for raw in sys.stdin.buffer:
        line = raw.strip().decode("ascii", "replace")
        if len(line) < 2 or not line[1:].isdigit():
            continue
        (groups.add if line[0] == "+" else groups.discard)(int(line[1:]))
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    main()
