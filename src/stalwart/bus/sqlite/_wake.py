"""Cross-process wake-ups for idle consumers of the embedded bus.

Every process that consumes binds one UNIX datagram socket in a directory
next to the bus file (``bus.db.wake/``). After each commit that made messages
claimable, the committing process sends the names of the queues concerned to
every other socket there. An idle consumer therefore sleeps on an event with
no polling and wakes within a scheduling delay; a slow fallback poll covers a
lost datagram. Sockets whose owner died refuse the datagram and are removed.

Socket paths are limited to about 108 bytes, so when the directory's path is
long the sockets are addressed through ``/proc/self/fd/<dirfd>/`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Final

__all__ = ["WakeHub"]

_log = logging.getLogger("stalwart.bus.sqlite")

_ALL: Final = b"*"
_MAX_PAYLOAD: Final = 2048
_MAX_SUN_PATH: Final = 100


class WakeHub:
    """Sends and receives "queue X has work" datagrams between processes."""

    def __init__(self, db_path: Path) -> None:
        self.directory = db_path.with_name(db_path.name + ".wake")
        self._dirfd = -1
        self._sender: socket.socket | None = None
        self._listener: socket.socket | None = None
        self._own_name = ""
        self._peers: list[str] = []
        self._peers_mtime = -1
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._dirfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sender.setblocking(False)

    def _address(self, name: str) -> str:
        full = str(self.directory / name)
        if len(full) < _MAX_SUN_PATH:
            return full
        return f"/proc/self/fd/{self._dirfd}/{name}"

    def listen(
        self, loop: asyncio.AbstractEventLoop, on_wake: Callable[[set[str] | None], None]
    ) -> None:
        """Bind this process's socket; ``on_wake(queues or None for all)`` runs on ``loop``."""
        if self._listener is not None:
            return
        name = f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.bind(self._address(name))
        self._listener, self._own_name, self._loop = sock, name, loop
        loop.add_reader(sock.fileno(), self._drain, on_wake)

    def _drain(self, on_wake: Callable[[set[str] | None], None]) -> None:
        sock = self._listener
        if sock is None:
            return
        names: set[str] = set()
        everything = False
        while True:
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                _log.warning("reading a wake-up datagram failed: %s", exc)
                break
            if data == _ALL:
                everything = True
            else:
                names.update(data.decode("utf-8", "replace").split("\n"))
        on_wake(None if everything else names)

    def _peer_names(self) -> list[str]:
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except OSError:
            return []
        if mtime != self._peers_mtime:
            try:
                found = [n for n in os.listdir(self.directory) if n.endswith(".sock")]
            except OSError:
                return []
            self._peers = [n for n in found if n != self._own_name]
            self._peers_mtime = mtime
        return self._peers

    def notify(self, queues: Iterable[str]) -> None:
        """Tell every other consuming process that ``queues`` have work (any thread)."""
        sender = self._sender
        if sender is None:
            return
        peers = self._peer_names()
        if not peers:
            return
        payload = "\n".join(sorted(queues)).encode()
        if len(payload) > _MAX_PAYLOAD:
            payload = _ALL
        for name in peers:
            try:
                sender.sendto(payload, self._address(name))
            except ConnectionRefusedError:
                self._remove_stale(name)
            except (FileNotFoundError, BlockingIOError, InterruptedError):
                continue  # gone already, or its buffer is full: it has wake-ups pending
            except OSError as exc:
                _log.debug("wake-up to %s failed: %s", name, exc)

    def _remove_stale(self, name: str) -> None:
        _log.debug("removing stale wake-up socket %s", name)
        with contextlib.suppress(OSError):
            os.unlink(self.directory / name)

    def close(self) -> None:
        if self._listener is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            with contextlib.suppress(OSError):
                os.unlink(self.directory / self._own_name)
            self._listener = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        if self._dirfd >= 0:
            os.close(self._dirfd)
            self._dirfd = -1
