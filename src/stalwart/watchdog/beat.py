"""Heartbeats from any program: a local UNIX datagram socket and its client.

The watchdog passes ``STALWART_WATCHDOG_SOCKET``, ``STALWART_PROGRAM`` and
``STALWART_INSTANCE`` in each program's environment. A beat is one datagram
holding one ASCII line::

    <program> <instance> [<progress>]\\n

``progress`` is a non-negative cumulative counter (work items done so far).
From a shell::

    echo "$STALWART_PROGRAM $STALWART_INSTANCE 42" | \\
        socat - "UNIX-SENDTO:$STALWART_WATCHDOG_SOCKET"

or ``stalwart watchdog beat --progress 42``; from C, ``sendto()`` on an
``AF_UNIX``/``SOCK_DGRAM`` socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

from stalwart.errors import ConfigError, StalwartError

__all__ = [
    "ENV_INSTANCE",
    "ENV_PROGRAM",
    "ENV_SOCKET",
    "BeatError",
    "BeatServer",
    "format_beat",
    "parse_beat",
    "send_beat",
]

ENV_SOCKET = "STALWART_WATCHDOG_SOCKET"
ENV_PROGRAM = "STALWART_PROGRAM"
ENV_INSTANCE = "STALWART_INSTANCE"
_MAX_DATAGRAM = 4096

_log = logging.getLogger("stalwart.watchdog.beat")

BeatHandler = Callable[[str, int, int | None], None]


class BeatError(StalwartError):
    """A beat could not be sent or parsed."""


def format_beat(program: str, instance: int, progress: int | None = None) -> bytes:
    fields = [program, str(instance)] + ([str(progress)] if progress is not None else [])
    return (" ".join(fields) + "\n").encode("ascii")


def parse_beat(line: str) -> tuple[str, int, int | None]:
    """``"worker 0 42"`` -> ``("worker", 0, 42)``; raises BeatError on anything else."""
    parts = line.split()
    if len(parts) not in (2, 3):
        raise BeatError(f"beat {line!r}: expected '<program> <instance> [<progress>]'")
    try:
        instance = int(parts[1])
        progress = int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise BeatError(f"beat {line!r}: instance and progress must be integers") from None
    if instance < 0 or (progress is not None and progress < 0):
        raise BeatError(f"beat {line!r}: instance and progress must not be negative")
    return parts[0], instance, progress


def send_beat(
    progress: int | None = None,
    *,
    socket_path: str | None = None,
    program: str | None = None,
    instance: int | None = None,
) -> None:
    """Send one beat, by default to the watchdog named in this process's environment."""
    path = socket_path or os.environ.get(ENV_SOCKET)
    name = program or os.environ.get(ENV_PROGRAM)
    raw_instance = instance if instance is not None else os.environ.get(ENV_INSTANCE, "0")
    if not path or not name:
        raise ConfigError(
            f"not running under a watchdog: {ENV_SOCKET} and {ENV_PROGRAM} are unset; "
            "pass --socket and --program, or start the program from `stalwart watchdog`"
        )
    try:
        number = int(raw_instance)
    except ValueError:
        raise ConfigError(f"{ENV_INSTANCE}={raw_instance!r} is not an integer") from None
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)  # a busy watchdog must never stall the program
        try:
            sock.sendto(format_beat(name, number, progress), path)
        except BlockingIOError:
            _log.debug("watchdog socket %s is full: beat dropped", path)
        except OSError as exc:
            raise BeatError(f"cannot reach the watchdog at {path}: {exc}; is it running?") from exc


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, handler: BeatHandler) -> None:
        self._handler = handler

    def datagram_received(self, data: bytes, addr: object) -> None:
        for line in data[:_MAX_DATAGRAM].decode("ascii", "replace").splitlines():
            if not line.strip():
                continue
            try:
                self._handler(*parse_beat(line))
            except BeatError as exc:
                _log.warning("ignored a bad beat: %s", exc)


class BeatServer:
    """Listens on a UNIX datagram socket and hands each beat to ``handler``."""

    def __init__(self, path: Path, handler: BeatHandler, *, shared: bool = False) -> None:
        if len(os.fsencode(path)) >= 108:
            raise ConfigError(f"socket path {path} is too long (max 107 bytes); use a shorter one")
        self.path = path
        self._handler = handler
        self._shared = shared
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self._handler), local_addr=str(self.path), family=socket.AF_UNIX
        )
        self._transport = transport
        # programs running as another user must be able to beat
        os.chmod(self.path, 0o666 if self._shared else 0o600)

    async def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
