"""The watchdog: supervises programs, detects crashed, hung, slow and runaway ones,
halts and restarts them, and reports everything on ``sys.watchdog.*``.

Public face: :class:`Watchdog`, the settings models, :class:`WatchdogEvent`,
:func:`program_states` (for ``stalwart watchdog status`` and the dashboard),
:func:`forget_programs` (for ``stalwart store prune``) and :func:`send_beat`
(for programs that beat from Python).
"""

from stalwart.watchdog._store import ProgramState, forget_programs, program_states
from stalwart.watchdog.beat import send_beat
from stalwart.watchdog.config import (
    BackoffSettings,
    IntensitySettings,
    ProgramSettings,
    WatchdogSettings,
)
from stalwart.watchdog.events import EventKind, WatchdogEvent, event_topic
from stalwart.watchdog.supervisor import Watchdog

__all__ = [
    "BackoffSettings",
    "EventKind",
    "IntensitySettings",
    "ProgramSettings",
    "ProgramState",
    "Watchdog",
    "WatchdogEvent",
    "WatchdogSettings",
    "event_topic",
    "forget_programs",
    "program_states",
    "send_beat",
]
