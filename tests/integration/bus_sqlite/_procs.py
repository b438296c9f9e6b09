"""Reading what the worker processes of the embedded bus tests wrote."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

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
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = read_lines(path)
        if done(lines):
            return lines
        time.sleep(0.05)
    lines = read_lines(path)
    if not done(lines):
        pytest.fail(f"{path.name} did not reach the expected state in {timeout} s: {lines[-5:]}")
    return lines


def acked(lines: list[str]) -> list[int]:
    """Bodies acknowledged by a consume worker (``<body> <attempt> <time>`` lines)."""
    return [int(line.split()[0]) for line in lines if line[:1].isdigit()]
