"""Free TCP ports and waiting for a server to listen: what local test servers need."""

from __future__ import annotations

import socket
import subprocess
import time

__all__ = ["free_port", "port_open", "wait_port"]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(
    port: int,
    timeout: float,
    what: str,
    host: str = "127.0.0.1",
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Until ``host:port`` accepts connections; RuntimeError after ``timeout`` seconds,
    or as soon as ``process`` (the server, if given) has exited."""
    deadline = time.monotonic() + timeout
    while not port_open(port, host):
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what} exited")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout:.0f}s")
        time.sleep(0.05)
