"""The watchdog: supervises programs, detects crashed, hung, slow and runaway ones,
halts and restarts them, and reports everything on ``sys.watchdog.*``.

Public face: :class:`Watchdog`, the settings models, :func:`program_states`
(for ``stalwart watchdog status`` and the dashboard), :func:`forget_programs`
(for ``stalwart store prune``) and :func:`send_beat` (for programs that beat
from Python). Its events' bodies are :class:`stalwart.events.WatchdogEvent`.
"""

from stalwart.watchdog._store import ProgramState, forget_programs, program_states
from stalwart.watchdog.beat import send_beat
from stalwart.watchdog.config import (
    BackoffSettings,
    IntensitySettings,
    ProgramSettings,
    WatchdogSettings,
)
from stalwart.watchdog.supervisor import Watchdog

__all__ = [
    "BackoffSettings",
    "IntensitySettings",
    "ProgramSettings",
    "ProgramState",
    "Watchdog",
    "WatchdogSettings",
    "forget_programs",
    "program_states",
    "send_beat",
]
