"""Probes: is a program alive (heartbeats), fast enough (progress), and within its limits?
Is there room left on the disks of the data directories?

Each probe only keeps numbers and returns a :class:`Verdict` with the evidence
when a limit is crossed; acting on it is the supervisor's job. Resource
figures are summed over the whole process tree, so a program cannot hide a
leak or a fork bomb in its children.
"""

from __future__ import annotations

import os
import shutil
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import psutil

from stalwart.watchdog import _procfs
from stalwart.watchdog.config import DiskSettings, ProgramSettings

__all__ = [
    "DiskProbe",
    "HeartbeatProbe",
    "ResourceProbe",
    "ResourceSample",
    "Verdict",
]

Failure = Literal["late", "slow", "runaway", "disk"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """A detected failure: which kind, a one-line reason, and the figures behind it."""

    kind: Failure
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)


class HeartbeatProbe:
    """Last beat time and the progress counter's recent history."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.last_beat = started
        self.beats = 0
        self.progress: int | None = None
        self._samples: deque[tuple[float, int]] = deque()

    def beat(self, now: float, progress: int | None = None) -> bool:
        """Record a beat; True for the first beat of this run."""
        first = self.beats == 0
        self.last_beat = now
        self.beats += 1
        if progress is not None:
            if self._samples and progress < self._samples[-1][1]:
                # the counter restarted (after the previous sample): count from zero
                previous = self._samples[-1][0]
                self._samples.clear()
                self._samples.append((previous, 0))
            self._samples.append((now, progress))
            self.progress = progress
        return first

    def late(self, now: float, timeout: float, startup: float = 0.0) -> Verdict | None:
        """Silent for over ``timeout`` (plus ``startup`` before the first beat)?"""
        if self.beats == 0:
            timeout += startup
        age = now - self.last_beat
        if age <= timeout:
            return None
        what = "no heartbeat since start" if self.beats == 0 else "no heartbeat"
        return Verdict(
            "late",
            f"{what} for {age:.1f} s (heartbeat_timeout {timeout:g} s)",
            {"silent_for": round(age, 3), "heartbeat_timeout": timeout, "beats": self.beats},
        )

    def rate(self, now: float, window: float) -> float | None:
        """Progress per second over at least ``window`` seconds; None until known."""
        if now - self.started < window:
            return None
        cutoff = now - window
        while len(self._samples) > 1 and self._samples[1][0] <= cutoff:
            self._samples.popleft()
        if self._samples and self._samples[0][0] <= cutoff:
            base_t, base_v = self._samples[0]
        else:
            base_t, base_v = self.started, 0
        latest = self._samples[-1][1] if self._samples else 0
        return max(0, latest - base_v) / max(now - base_t, 1e-9)

    def slow(self, now: float, min_rate: float, window: float) -> Verdict | None:
        rate = self.rate(now, window)
        if rate is None or rate >= min_rate:
            return None
        return Verdict(
            "slow",
            f"progress {rate:.3g}/s over {window:g} s, below min_rate {min_rate:g}/s",
            {
                "rate": round(rate, 6),
                "min_rate": min_rate,
                "window": window,
                "progress": self.progress,
            },
        )


@dataclass(frozen=True, slots=True)
class ResourceSample:
    """Figures summed over a process tree at one instant."""

    rss: int
    cpu: float
    open_files: int
    threads: int
    children: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "rss": self.rss,
            "cpu": round(self.cpu, 1),
            "open_files": self.open_files,
            "threads": self.threads,
            "children": self.children,
        }


class ResourceProbe:
    """Samples a process tree and checks it against the program's limits."""

    def __init__(self, pid: int, *, count_files: bool = True) -> None:
        self.pid = pid
        self._count_files = count_files
        self._ticks: dict[int, int] = {}
        self._at: float | None = None
        self._procs: dict[int, psutil.Process] = {}
        self._cpu_high_since: float | None = None
        self.last: ResourceSample | None = None

    def sample(self, now: float) -> ResourceSample:
        """Figures summed over the tree; CPU% is averaged since the previous sample."""
        if not _procfs.available():
            return self._sample_psutil()
        rss = threads = fds = children = 0
        cpu_ticks = 0
        ticks: dict[int, int] = {}
        for pid in _procfs.tree(self.pid):
            figures = _procfs.stat(pid)
            if figures is None or figures[3]:
                continue
            rss += figures[0]
            threads += figures[2]
            ticks[pid] = figures[1]
            cpu_ticks += figures[1] - self._ticks.get(pid, figures[1])
            children += pid != self.pid
            if self._count_files:
                fds += _procfs.fd_count(pid)
        elapsed = now - self._at if self._at is not None else 0.0
        cpu = 100.0 * cpu_ticks / _procfs.TICKS / elapsed if elapsed > 0 else 0.0
        self._ticks, self._at = ticks, now
        self.last = ResourceSample(rss, cpu, fds, threads, children)
        return self.last

    def _sample_psutil(self) -> ResourceSample:
        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = []
        rss = threads = fds = 0
        cpu = 0.0
        for proc in procs:
            cached = self._procs.setdefault(proc.pid, proc)
            try:
                with cached.oneshot():
                    rss += cached.memory_info().rss
                    cpu += cached.cpu_percent(None)
                    threads += cached.num_threads()
                    fds += cached.num_fds() if self._count_files else 0
            except psutil.Error:
                self._procs.pop(proc.pid, None)
        self.last = ResourceSample(rss, cpu, fds, threads, max(0, len(procs) - 1))
        return self.last

    def check(self, program: ProgramSettings, sample: ResourceSample, now: float) -> Verdict | None:
        """The first limit ``sample`` crosses, with every figure as evidence."""
        evidence = sample.as_dict()
        if program.max_cpu is None or sample.cpu <= program.max_cpu:
            self._cpu_high_since = None
        elif self._cpu_high_since is None:
            self._cpu_high_since = now
        high_for = 0.0 if self._cpu_high_since is None else now - self._cpu_high_since
        checks: list[tuple[bool, str, dict[str, Any]]] = [
            (
                program.max_memory is not None and sample.rss > program.max_memory,
                f"resident memory {sample.rss} B over max_memory {program.max_memory} B",
                {"limit": "max_memory", "max_memory": program.max_memory},
            ),
            (
                self._cpu_high_since is not None and high_for >= program.cpu_duration,
                f"CPU {sample.cpu:.0f}% over max_cpu {program.max_cpu}% for {high_for:.1f} s",
                {
                    "limit": "max_cpu",
                    "max_cpu": program.max_cpu,
                    "for": round(high_for, 3),
                },
            ),
            (
                program.max_open_files is not None and sample.open_files > program.max_open_files,
                f"{sample.open_files} open files over max_open_files {program.max_open_files}",
                {"limit": "max_open_files", "max_open_files": program.max_open_files},
            ),
            (
                program.max_threads is not None and sample.threads > program.max_threads,
                f"{sample.threads} threads over max_threads {program.max_threads}",
                {"limit": "max_threads", "max_threads": program.max_threads},
            ),
            (
                program.max_children is not None and sample.children > program.max_children,
                f"{sample.children} child processes over max_children {program.max_children}",
                {"limit": "max_children", "max_children": program.max_children},
            ),
        ]
        for crossed, reason, extra in checks:
            if crossed:
                return Verdict("runaway", reason, {**evidence, **extra})
        return None


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (a data file may not exist yet)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class DiskProbe:
    """Free space on the file systems holding ``settings.paths`` (each checked once)."""

    def __init__(self, settings: DiskSettings) -> None:
        self.settings = settings

    def _filesystems(self) -> dict[int, list[Path]]:
        found: dict[int, list[Path]] = {}
        for path in self.settings.paths:
            where = _existing(path)
            found.setdefault(os.stat(where).st_dev, []).append(path)
        return found

    def check(self) -> list[tuple[str, Verdict | None]]:
        """For each file system (named by its first path): a ``disk`` verdict when free
        space is below ``min_free`` or ``min_free_percent``, else None."""
        out: list[tuple[str, Verdict | None]] = []
        for paths in self._filesystems().values():
            out.append((str(paths[0]), self._verdict(paths)))
        return out

    def _verdict(self, paths: Sequence[Path]) -> Verdict | None:
        usage = shutil.disk_usage(_existing(paths[0]))
        percent = 100.0 * usage.free / usage.total if usage.total else 0.0
        limit = self.settings
        if usage.free >= limit.min_free and percent >= limit.min_free_percent:
            return None
        return Verdict(
            "disk",
            f"{usage.free / 2**30:.2f} GiB ({percent:.1f} %) free on the disk of "
            f"{', '.join(map(str, paths))}, below min_free {limit.min_free / 2**30:.2f} GiB "
            f"or {limit.min_free_percent:g} %; free space or move the data",
            {
                "paths": [str(p) for p in paths],
                "free": usage.free,
                "total": usage.total,
                "free_percent": round(percent, 2),
                "min_free": limit.min_free,
                "min_free_percent": limit.min_free_percent,
            },
        )
