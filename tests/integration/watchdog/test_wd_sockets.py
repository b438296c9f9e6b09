"""The beat socket and sd_notify, over real UNIX sockets."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from stalwart.watchdog.beat import BeatError, BeatServer, send_beat
from stalwart.watchdog.sdnotify import Notifier


async def test_beats_reach_the_server_through_the_socket(tmp_path: Path) -> None:
    # Given a beat server
    got: list[tuple[str, int, int | None]] = []
    arrived = asyncio.Event()

    def handler(program: str, instance: int, progress: int | None) -> None:
        got.append((program, instance, progress))
        arrived.set()

    server = BeatServer(tmp_path / "b.sock", handler)
    await server.start()
    try:
        # When a program beats (and a malformed datagram arrives too)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as raw:
            raw.sendto(b"garbage\n", str(server.path))
        await asyncio.to_thread(
            send_beat, 7, socket_path=str(server.path), program="qa", instance=1
        )
        await asyncio.wait_for(arrived.wait(), timeout=5.0)
        # Then the good beat is handed over and the bad one ignored
        assert got == [("qa", 1, 7)]
    finally:
        await server.close()
    assert not server.path.exists()


def test_send_beat_to_a_missing_socket_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(BeatError, match="is it running"):
        send_beat(1, socket_path=str(tmp_path / "none.sock"), program="qa", instance=0)


def test_sd_notify_sends_ready_and_watchdog_at_half_the_interval(tmp_path: Path) -> None:
    # Given a fake systemd notify socket
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(path))
        systemd.settimeout(5.0)
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "4000000"})
        # When the watchdog reports
        assert notifier.ready("ok") and notifier.ping()
        # Then systemd receives READY=1 and WATCHDOG=1, pinged every 2 s
        assert systemd.recv(100) == b"READY=1\nSTATUS=ok"
        assert systemd.recv(100) == b"WATCHDOG=1"
    assert notifier.watchdog_interval == 2.0
    assert Notifier({}).ready() is False, "outside systemd: a no-op"
