"""systemd notifications (``Type=notify``, ``WatchdogSec``) without a dependency.

``READY=1`` once supervision runs, ``WATCHDOG=1`` every half of
``WATCHDOG_USEC`` while the event loop is responsive, ``STOPPING=1`` on the
way out. Outside systemd (no ``NOTIFY_SOCKET``) every call is a no-op.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier"]

_log = logging.getLogger("stalwart.watchdog.sdnotify")


class Notifier:
    """Sends sd_notify datagrams to ``$NOTIFY_SOCKET`` (abstract ``@`` names too)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = env.get("WATCHDOG_USEC", "")
        owner = env.get("WATCHDOG_PID", "")
        mine = not owner or owner == str(os.getpid())
        self.watchdog_interval: float | None = (
            int(usec) / 2_000_000 if usec.isdigit() and int(usec) > 0 and mine else None
        )

    def notify(self, state: str) -> bool:
        """Send ``state`` (e.g. ``"READY=1"``); True if it was sent."""
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(state.encode(), self._address)
            return True
        except OSError as exc:
            _log.warning("sd_notify %s to %s failed: %s", state, self._address, exc)
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def ping(self) -> bool:
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1")
