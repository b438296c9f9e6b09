"""The watchdog as its own process: the CLI, the store table, and no orphans after kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psutil
import pytest
from wd_support import wait_for_path

from stalwart.store.engine import open_engine
from stalwart.watchdog import ProgramState, program_states
from waiting import until

STALWART = str(Path(sys.executable).with_name("stalwart"))


def _config(tmp_path: Path, programs: str) -> Path:
    path = tmp_path / "stalwart.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            home = "{tmp_path}/home"
            [bus]
            url = "sqlite:///{tmp_path}/bus.db"
            [store]
            url = "sqlite:///{tmp_path}/store.db"
            [watchdog]
            socket = "{tmp_path}/wd.sock"
            state_interval = 0.2
            """
        )
        + textwrap.dedent(programs)
    )
    return path


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def _states(url: str) -> list[ProgramState]:
    engine = await open_engine(url)
    try:
        return await program_states(engine)
    finally:
        await engine.dispose()


async def test_kill_9_of_the_watchdog_leaves_no_orphans(tmp_path: Path) -> None:
    # Given a watchdog process supervising a program that forked a grandchild
    pids = tmp_path / "pids"
    prog = tmp_path / "parent.py"
    prog.write_text(
        "import subprocess, time, os\n"
        "kid = subprocess.Popen(['sleep', '600'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{kid.pid}}')\n"
        "time.sleep(600)\n"
    )
    config = _config(
        tmp_path,
        f"""
        [[watchdog.programs]]
        name = "parent"
        command = ["{sys.executable}", "{prog}"]
        """,
    )
    watchdog = await asyncio.create_subprocess_exec(STALWART, "watchdog", "-c", str(config))
    try:
        await wait_for_path(pids, timeout=20.0)
        await until(lambda: pids.read_text().split(), 5.0, "two pids", accept=lambda p: len(p) == 2)
        program_pid, grandchild_pid = (int(p) for p in pids.read_text().split())
        assert not _gone(program_pid) and not _gone(grandchild_pid)
        # When the watchdog is killed with SIGKILL (no chance to clean up)
        watchdog.kill()
        await asyncio.wait_for(watchdog.wait(), timeout=10)
        # Then neither the program nor its child outlives it
        await until(
            lambda: _gone(program_pid) and _gone(grandchild_pid), 5.0, "both processes gone"
        )
    finally:
        if watchdog.returncode is None:
            watchdog.kill()
            await asyncio.wait_for(watchdog.wait(), timeout=10)


@pytest.mark.slow
async def test_cli_supervises_records_states_and_stops_cleanly(tmp_path: Path) -> None:
    # Given a shell program that beats once with `stalwart watchdog beat`, under `stalwart watchdog`
    beater = tmp_path / "beater.sh"
    beater.write_text(f"#!/bin/sh\n{STALWART} watchdog beat --progress 1\nexec sleep 600\n")
    beater.chmod(0o755)
    config = _config(
        tmp_path,
        f"""
        [[watchdog.programs]]
        name = "beater"
        command = ["{beater}"]
        heartbeat_timeout = 60.0
        check_interval = 0.2
        """,
    )
    store_url = f"sqlite:///{tmp_path}/store.db"
    watchdog = await asyncio.create_subprocess_exec(STALWART, "watchdog", "-c", str(config))
    try:
        # When it has run for a moment
        states = await until(
            lambda: _states(store_url),
            30.0,
            "the program to be healthy",
            accept=lambda states: states and states[0].last_event == "healthy",
            interval=0.2,
        )
        # Then the store shows it running and healthy, and `watchdog status` prints it
        assert states[0].program == "beater"
        assert states[0].state == "running"
        assert states[0].pid is not None
        shown = await asyncio.to_thread(
            subprocess.run,
            [STALWART, "watchdog", "status", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env={**os.environ, "COLUMNS": "200"},
        )
        assert "beater" in shown.stdout and "running" in shown.stdout
        # The first heartbeat makes it healthy without replacing the reason it started
        assert "healthy: started" in shown.stdout
        program_pid = states[0].pid
        # When it gets SIGTERM
        watchdog.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(watchdog.wait(), timeout=30) == 0
        # Then the program is gone and the store says it stopped
        assert _gone(program_pid)
        final = await _states(store_url)
        assert final[0].state == "stopped"
    finally:
        if watchdog.returncode is None:
            watchdog.kill()
            await asyncio.wait_for(watchdog.wait(), timeout=10)


def test_beat_without_a_watchdog_fails_with_advice(tmp_path: Path) -> None:
    # Given no watchdog environment
    env = {k: v for k, v in os.environ.items() if not k.startswith("STALWART_")}
    # When `stalwart watchdog beat` runs
    result = subprocess.run(
        [STALWART, "watchdog", "beat", "--progress", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=tmp_path,
    )
    # Then it fails on one line saying what to do, as a configuration error
    assert result.returncode == 78
    assert "not running under a watchdog" in result.stderr
    assert "--socket" in result.stderr
