"""HA replicas in one process, as watchdog programs and by `stalwart run --ha`."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from ha_replicas import HERE, drain, effects, live_holder, make_settings, publisher, write_config

from stalwart.bus import QueueSpec
from stalwart.envelope import Envelope
from stalwart.errors import FencedOut, StalwartError
from stalwart.ha import HaReplica, checkpoint, restored_state, status
from stalwart.service import Context, Service
from stalwart.store.engine import open_engine
from stalwart.watchdog import ProgramSettings, Watchdog, WatchdogSettings
from waiting import until


def _counter(name: str) -> Service:
    svc = Service(name, concurrency=1, heartbeat_interval=5.0, lease=2.0, grace=0.5)

    @svc.handler("ha.count.add")
    async def add(ctx: Context, body: Any) -> None:
        state = dict(restored_state() or {"total": 0})
        state["total"] += int(body["n"])
        await checkpoint(state)

    return svc


async def test_step_down_hands_over_with_the_checkpoint(tmp_path: Path, unique: str) -> None:
    bus_url = f"sqlite:///{tmp_path}/bus.db"
    settings = make_settings(tmp_path, bus_url, f"sqlite:///{tmp_path}/store.db", 1.0)
    name = f"count-{unique}"
    svc = _counter(name)
    a, b = HaReplica(svc, settings), HaReplica(svc, settings)
    bus = await publisher_for(bus_url, unique)
    try:
        # Given two replicas: one active, one standing by
        await a.start()
        await until(_active(a), 10.0, "a to be active")
        await b.start()
        assert not b.active.is_set()
        # When the active one processes messages
        await bus.publish([Envelope.new("ha.count.add", {"n": n}) for n in (1, 2, 3)])
        await until(_state_is(a, {"total": 6}), 15.0, "a to count to 6")
        # And steps down
        await a.step_down()
        # Then the standby becomes active with the last checkpoint restored
        await until(_active(b), 10.0, "b to take over")
        assert b.state == {"total": 6}
        assert (b.version, b.token) == (3, 2)
        await bus.publish([Envelope.new("ha.count.add", {"n": 4})])
        await until(_state_is(b, {"total": 10}), 15.0, "b to count on")
        # And the deposed replica's checkpoint is refused
        with pytest.raises(FencedOut):
            await a.checkpoint({"total": -1})
        # And the changes were published on sys.ha.*
        events = await drain(bus, f"watch-{unique}", 5, 10.0)
        seen = [(e.topic, e.body["token"]) for e in events]
        assert seen[:5] == [
            ("sys.ha.acquired", 1),
            ("sys.ha.stepped-down", 1),
            ("sys.ha.acquired", 2),
            ("sys.ha.restored", 2),
            ("sys.ha.fenced", None),
        ]
    finally:
        await a.stop()
        await b.stop()
        await bus.close()


async def publisher_for(bus_url: str, unique: str) -> Any:
    from stalwart.bus import open_transport

    bus = open_transport(bus_url)
    await bus.start()
    await bus.declare(QueueSpec(name=f"watch-{unique}", patterns=("sys.ha.#",)))
    return bus


def _active(replica: HaReplica) -> Any:
    async def check() -> bool:
        return replica.active.is_set()

    return check


def _state_is(replica: HaReplica, state: dict[str, int]) -> Any:
    async def check() -> bool:
        return bool(replica.state == state)

    return check


def test_checkpoint_outside_a_replica_explains_itself() -> None:
    with pytest.raises(StalwartError, match="stalwart run --ha"):
        restored_state()


@pytest.mark.slow
async def test_the_watchdog_keeps_ha_replicas_and_a_standby_takes_over(
    tmp_path: Path, unique: str
) -> None:
    bus_url = f"sqlite:///{tmp_path}/bus.db"
    store_url = f"sqlite:///{tmp_path}/store.db"
    name = f"ha-run-{unique}"
    config = write_config(tmp_path, bus_url, store_url, 1.0)
    command = [sys.executable, "-m", "stalwart", "run", "--ha", "ha_app:svc", "-c", str(config)]
    env = {
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "HA_APP_NAME": name,
        "HA_APP_DIR": str(tmp_path),
    }
    # Given two HA replicas run as one watchdog program, as the demo and deploy.md run them
    program = ProgramSettings(
        name="replicas", command=command, env=env, replicas=2, restart="always", stop_grace=5.0
    )
    watchdog = Watchdog(WatchdogSettings(programs=[program]), socket_path=tmp_path / "wd.sock")
    await watchdog.start()
    engine = await open_engine(store_url)
    try:
        try:
            first = await until(lambda: live_holder(engine, f"service.{name}"), 30.0, "active")
            bus = await publisher(bus_url, name)
            await bus.publish(
                [Envelope.new("ha.app.item", {"n": n}, kind="Item") for n in range(5)]
            )
            await bus.close()
            # When the active replica is killed
            os.kill(first[0], signal.SIGKILL)

            async def successor() -> Any:
                found = await live_holder(engine, f"service.{name}")
                return found if found and found[0] != first[0] else None

            await until(successor, 10.0, "a successor")

            # Then the work completes, and the watchdog starts a replica in the killed one's place
            async def all_done() -> bool:
                return len(await effects(engine)) == 5

            await until(all_done, 30.0, "every effect")

            async def replaced() -> bool:
                return sum(n.startswith("imported-") for n in os.listdir(tmp_path)) >= 3

            await until(replaced, 30.0, "the killed replica to be restarted")
        finally:
            await asyncio.wait_for(watchdog.close(), 30.0)
        # And with the replicas stopped, each item had its effect once
        assert sorted(n for _, n, _ in await effects(engine)) == list(range(5))
    finally:
        await engine.dispose()


async def test_ha_monitor_command_repairs_and_stops_on_sigterm(tmp_path: Path) -> None:
    # Given `stalwart ha monitor` watching a file-backed service whose repair recreates it
    flag = tmp_path / "up"
    config = tmp_path / "stalwart.toml"
    config.write_text(
        f'[bus]\nurl = "sqlite:///{tmp_path}/bus.db"\n'
        f'[store]\nurl = "sqlite:///{tmp_path}/store.db"\n'
        "[[ha.monitors]]\n"
        'name = "archive"\nkind = "command"\n'
        f'urls = ["test -e {flag}"]\nrepair = ["touch", "{flag}"]\n'
        "interval = 0.2\nsuspect_after = 1\nrepair_timeout = 5.0\n"
    )
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "stalwart"),
        "ha",
        "monitor",
        "-c",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    engine = await open_engine(f"sqlite:///{tmp_path}/store.db")
    try:
        # When the service is missing, Then the monitor repairs it and records the way back
        async def repaired() -> bool:
            try:
                shown = await status(engine)
            except StalwartError:
                return False
            return [t.to_state for t in reversed(shown.transitions)] == [
                "suspect",
                "recovering",
                "healthy",
            ]

        await until(repaired, 30.0, "the monitor to repair the service", interval=0.2)
        assert flag.exists()
        # And SIGTERM stops it cleanly
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 20.0)
        assert proc.returncode == 0, out.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await engine.dispose()


@pytest.mark.slow
async def test_stalwart_run_ha_serves_and_stops_gracefully(tmp_path: Path, unique: str) -> None:
    # Given `stalwart run --ha` (one replica) on a config file
    bus_url = f"sqlite:///{tmp_path}/bus.db"
    store_url = f"sqlite:///{tmp_path}/store.db"
    name = f"ha-cli-{unique}"
    config = tmp_path / "stalwart.toml"
    config.write_text(
        f'log_level = "WARNING"\n[bus]\nurl = "{bus_url}"\nlease = 2.0\n'
        f'[store]\nurl = "{store_url}"\n[ha]\nlease = 1.0\n'
    )
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]),
        HA_APP_NAME=name,
        HA_APP_DIR=str(tmp_path),
    )
    cli = str(Path(sys.executable).parent / "stalwart")
    proc = await asyncio.create_subprocess_exec(
        cli,
        "run",
        "ha_app:svc",
        "--ha",
        "-c",
        str(config),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    engine = await open_engine(store_url)
    role = f"service.{name}"
    try:
        await until(lambda: live_holder(engine, role), 30.0, "an active replica")
        # When messages arrive
        bus = await publisher(bus_url, name)
        await bus.publish([Envelope.new("ha.app.item", {"n": n}, kind="Item") for n in range(3)])
        await bus.close()

        async def all_done() -> bool:
            return len(await effects(engine)) == 3

        # Then the active replica processes them
        await until(all_done, 30.0, "every effect")
        # And SIGTERM stops the replica, which releases the role
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 30.0)
        assert proc.returncode == 0, out.decode()
        assert await live_holder(engine, role) is None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await engine.dispose()
