"""A program that leaks memory on demand: the target of the ``leak`` fault.

It idles until it receives SIGUSR1, then grows by 8 MiB every 100 ms until the
watchdog stops it for exceeding its ``max_memory`` (the campaign's config
gives it 96 MiB). Run under the watchdog as ``python -m stalwart.chaos.leaker``.
It is not a ``stalwart`` command: only the campaign starts it, it reads no
settings and logs nothing, and its memory is the thing under test, so it
loads nothing it does not need.
"""

from __future__ import annotations

import signal
import threading
import time

_CHUNK = 8 * 2**20


def main() -> None:
    leaking = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: leaking.set())
    signal.signal(signal.SIGTERM, lambda *_: exit(0))
    held: list[bytearray] = []
    while True:
        if leaking.is_set():
            held.append(bytearray(b"\x01" * _CHUNK))  # touched, so resident
        time.sleep(0.1)


if __name__ == "__main__":
    main()
