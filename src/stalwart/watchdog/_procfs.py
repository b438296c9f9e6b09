"""Cheap process-tree figures straight from Linux ``/proc``.

Checking 100 programs every second through psutil's generic paths (a scan of
every process on the host for parent ids, several files per process) costs
more than the 5 % of a core the watchdog may spend. Here a tree is walked
through ``/proc/<pid>/task/<tid>/children`` and each process costs one read
of ``/proc/<pid>/stat`` (plus a directory listing when open files matter).
Elsewhere the callers fall back to psutil.
"""

from __future__ import annotations

import functools
import os

__all__ = ["PAGE", "TICKS", "available", "children", "fd_count", "stat", "tree"]

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@functools.cache
def available() -> bool:
    pid = os.getpid()
    return os.path.exists(f"/proc/{pid}/task/{pid}/children")


def children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return kids
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                kids.extend(int(k) for k in f.read().split())
        except OSError:
            continue
    return kids


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (those that still exist, best effort)."""
    pids, todo = [pid], [pid]
    while todo:
        for kid in children(todo.pop()):
            pids.append(kid)
            todo.append(kid)
    return pids


def stat(pid: int) -> tuple[int, int, int, bool] | None:
    """(RSS bytes, CPU ticks user+system, threads, zombie) or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rfind(b")") + 2 :].split()
    # fields[0] is field 3 (state): utime=14, stime=15, threads=20, rss=24 (pages)
    return (
        int(fields[21]) * PAGE,
        int(fields[11]) + int(fields[12]),
        int(fields[17]),
        fields[0] == b"Z",
    )


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0
