"""Killing the watchdog: the heal waits for it to die, then starts the demo again.

A heal that looked at once found the SIGKILLed watchdog still alive, started
nothing, and left the demo dead for the rest of the campaign.
"""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

from stalwart.chaos.faults import Lab, make_fault
from stalwart.chaos.schedule import FaultKind, Planned
from stalwart.chaos.system import DemoSystem, SystemSpec


class _Demo(DemoSystem):
    """The demo, its `stalwart up` a process that dies slowly (as one with a tree does)."""

    def __init__(self, root: Path) -> None:
        super().__init__(SystemSpec(root=root))
        trap = "trap 'sleep 0.3; exit 1' TERM; while :; do sleep 0.05; done"
        self._up = subprocess.Popen(["sh", "-c", trap])
        self.starts = 0

    def slow_death(self) -> None:
        """Ask it to end; it takes 0.3 s, like a SIGKILLed watchdog with a tree."""
        assert self._up is not None
        self._up.terminate()

    def stop(self, grace: float = 40.0) -> None:
        if self._up is not None and self._up.poll() is None:
            self._up.kill()
            self._up.wait()

    def start(self) -> None:
        self.starts += 1


async def test_a_heal_right_after_the_kill_starts_the_demo_again(tmp_path: Path) -> None:
    # Given the watchdog struck, and not dead yet
    demo = _Demo(tmp_path)
    try:
        fault = make_fault(
            Planned(0.0, FaultKind.KILL, "watchdog", 0.0), Lab(demo, random.Random(1))
        )
        demo.slow_death()
        assert demo.watchdog_pid is not None
        # When the fault is healed at once (a kill holds for no time)
        said = await fault.heal()
        # Then the heal waited for it to die and started the demo again
        assert demo.starts == 1, said
        assert said == "started `stalwart up --demo` again"
    finally:
        demo.stop()
        await demo.engine.dispose()


def test_a_watchdog_that_does_not_die_is_reported_running(tmp_path: Path) -> None:
    demo = _Demo(tmp_path)
    try:
        assert not demo.watchdog_gone(0.2)
    finally:
        demo.stop()
    assert demo.watchdog_gone(0.0)
