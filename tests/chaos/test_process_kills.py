"""(c) Consumer processes, or HA leaders, killed with SIGKILL mid-run: every message has
one effect and ends consumed, whatever the killed process was doing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import System, assert_effectively_once, scale, settle

pytestmark = pytest.mark.postgres

TOTAL = scale(200, 5_000)


@pytest.mark.timeout(scale(120, 900))
@pytest.mark.parametrize("victim", ["consumer", "ha-leader"])
async def test_processes_killed_mid_run(
    victim: str,
    postgres_url: str,
    make_system: Callable[..., System],
    tmp_path: Path,
    unique: str,
) -> None:
    # Given two consumer processes (or two HA replicas, one active) on the embedded bus
    started = time.monotonic()
    system = make_system(f"sqlite:///{tmp_path}/bus.db", postgres_url, f"kills-{unique}")
    await system.prepare()
    spawn = system.consumer if victim == "consumer" else system.replica
    alive = [spawn(), spawn()]
    await system.wait_queue(system.service)
    producer = system.producer(unique, TOTAL)

    # When a consumer (or the active replica) is killed with SIGKILL after a third of the
    # effects and another after two thirds, each replaced by a new process
    killed: set[int] = set()
    for share in (1 / 3, 2 / 3):
        await system.wait_applied(unique, TOTAL, share, scale(60, 300))
        if victim == "consumer":
            pid: int | None = alive.pop(0)
        else:
            pid = await system.new_leader(killed, scale(30, 60))
        assert pid is not None, "no live replica took the service's role"
        system.kill(pid)
        killed.add(pid)
        alive.append(spawn())
    await system.finished(producer, scale(60, 300))
    # Then every message has exactly one effect and ends consumed in the store
    counts = await settle(postgres_url, system.service, unique, TOTAL, scale(60, 600), quiet=2.0)
    assert_effectively_once(counts, f"{victim} killed", time.monotonic() - started)
