"""Reading what the worker processes of the embedded bus tests wrote."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from waiting import until_sync

__all__ = ["Spawn", "acked", "read_lines", "wait_for_lines"]

Spawn = Callable[..., subprocess.Popen[bytes]]


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def wait_for_lines(
    path: Path, done: Callable[[list[str]], bool], timeout: float = 30.0
) -> list[str]:
    """Poll ``path`` until ``done(lines)``; fail with what was there after ``timeout``."""
    return until_sync(
        lambda: read_lines(path), timeout, f"{path.name} to reach the expected state", accept=done
    )


def acked(lines: list[str]) -> list[int]:
    """Bodies acknowledged by a consume worker (``<body> <attempt> <time>`` lines)."""
    return [int(line.split()[0]) for line in lines if line[:1].isdigit()]
