"""A disk of its own for each site's archive (a small tmpfs), so that one site's
disk can fill up without filling the machine's. Needs root (mount); without it
the ``disk-full`` fault is not injected and the campaign says so."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

__all__ = ["SiteDisks"]


class SiteDisks:
    """tmpfs mounts over each site's archive directory; :meth:`close` unmounts them."""

    def __init__(self, size: str = "128m") -> None:
        self.size = size
        self.mounted: dict[str, Path] = {}

    @staticmethod
    def why_not() -> str | None:
        """Why this process cannot mount disks, or None if it can."""
        if os.geteuid() != 0:
            return "needs root to mount a disk for each site (run as root)"
        return None

    def mount(self, dirs: dict[str, Path]) -> None:
        for site, path in dirs.items():
            path.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={self.size}", f"chaos-{site}", str(path)],
                check=True,
                capture_output=True,
            )
            self.mounted[site] = path

    def sites(self) -> Iterable[str]:
        return self.mounted.keys()

    def close(self) -> None:
        """Unmount every disk (lazily: a process may still hold a file open)."""
        for path in self.mounted.values():
            with contextlib.suppress(subprocess.CalledProcessError):
                subprocess.run(["umount", "-l", str(path)], check=True, capture_output=True)
        self.mounted.clear()
