"""Typed settings of the ``[watchdog]`` table and of each supervised program.

Read with ``settings.section("watchdog", WatchdogSettings)``. Every limit is
optional: a program is only probed for what its settings ask for, so a plain
``command`` is supervised for crashes alone.
"""

from __future__ import annotations

import re
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from stalwart.config import parse_size
from stalwart.errors import EX_CONFIG

__all__ = [
    "BackoffSettings",
    "DiskSettings",
    "IntensitySettings",
    "ProgramSettings",
    "WatchdogSettings",
]


_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def _bytes(value: object) -> object:
    """Sizes in settings may carry units; anything else is left to pydantic."""
    return parse_size(value) if isinstance(value, str | int) else value


_Bytes = Annotated[int, BeforeValidator(_bytes), Field(gt=0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackoffSettings(_Strict):
    """Delay before restart number n: ``initial * factor**(n-1)``, capped at ``max``.

    ``jitter`` is a fraction (0.2 = up to 20 % either way) that spreads restarts
    of many programs. After ``reset_after`` seconds of stable running the
    sequence starts again at ``initial``.
    """

    initial: float = Field(default=0.5, ge=0)
    factor: float = Field(default=2.0, ge=1)
    max: float = Field(default=30.0, ge=0)
    jitter: float = Field(default=0.1, ge=0, le=1)
    reset_after: float = Field(default=60.0, gt=0)


class IntensitySettings(_Strict):
    """More than ``max_restarts`` restarts within ``within`` seconds -> ``fatal``."""

    max_restarts: int = Field(default=5, ge=0)
    within: float = Field(default=60.0, gt=0)


class ProgramSettings(_Strict):
    """One supervised program (``replicas > 1`` makes it a worker group)."""

    name: str
    command: list[str] = Field(min_length=1)
    env: dict[str, str] = {}
    cwd: Path | None = None
    user: str | None = None
    output: Path | None = None
    replicas: int = Field(default=1, ge=0)
    restart: Literal["always", "on-failure", "never"] = "on-failure"
    fatal_exit_codes: frozenset[int] = frozenset({EX_CONFIG})
    backoff: BackoffSettings = BackoffSettings()
    intensity: IntensitySettings = IntensitySettings()
    stop_signal: str = "SIGTERM"
    stop_grace: float = Field(default=10.0, ge=0)
    heartbeat_timeout: float | None = Field(default=None, gt=0)
    min_rate: float | None = Field(default=None, gt=0)
    rate_window: float = Field(default=60.0, gt=0)
    max_memory: _Bytes | None = None
    max_cpu: float | None = Field(default=None, gt=0)
    cpu_duration: float = Field(default=10.0, ge=0)
    max_open_files: int | None = Field(default=None, gt=0)
    max_threads: int | None = Field(default=None, gt=0)
    max_children: int | None = Field(default=None, ge=0)
    check_interval: float = Field(default=1.0, gt=0)
    service: str | None = None
    on_member_failure: Literal["reconstitute", "degrade", "auto"] = "reconstitute"
    min_replicas: int | None = Field(default=None, ge=0)
    deadline: datetime | None = None
    startup_time: float = Field(default=5.0, ge=0)
    max_replicas: int | None = Field(default=None, ge=1)
    target_backlog_per_replica: int = Field(default=100, ge=1)
    scale_cooldown: float = Field(default=30.0, ge=0)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, value: str) -> str:
        if not _NAME.match(value) or len(value) > 100:
            raise ValueError(f"program name {value!r}: use letters, digits, '_', '-' or '.'")
        return value

    @field_validator("stop_signal")
    @classmethod
    def _signal_ok(cls, value: str) -> str:
        name = value.upper() if value.upper().startswith("SIG") else f"SIG{value.upper()}"
        if not isinstance(getattr(signal, name, None), signal.Signals):
            raise ValueError(f"unknown stop_signal {value!r}: use e.g. SIGTERM, SIGINT, SIGQUIT")
        return name

    @field_validator("deadline")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @model_validator(mode="after")
    def _group_ok(self) -> ProgramSettings:
        low = self.floor
        if self.max_replicas is not None and self.max_replicas < max(low, 1):
            raise ValueError(f"max_replicas ({self.max_replicas}) is below min_replicas ({low})")
        if self.max_replicas is not None and self.service is None:
            raise ValueError("an elastic group (max_replicas) needs `service`, the queue it serves")
        too_high = self.min_replicas is not None and self.min_replicas > self.replicas
        if too_high and self.max_replicas is None:
            raise ValueError("min_replicas is above replicas; raise replicas or max_replicas")
        return self

    @property
    def signal(self) -> signal.Signals:
        return signal.Signals[self.stop_signal]

    @property
    def floor(self) -> int:
        """The fewest live members a group may degrade to (default: one)."""
        if self.min_replicas is not None:
            return self.min_replicas
        return min(1, self.replicas)

    @property
    def elastic(self) -> bool:
        return self.max_replicas is not None


class DiskSettings(_Strict):
    """The ``[watchdog.disk]`` table: warn before a data directory's disk fills.

    Every ``interval`` seconds the file system of each of ``paths`` is checked;
    below ``min_free`` bytes or ``min_free_percent`` free, a ``disk_low`` event
    (an alarm) is published, again every ``repeat`` seconds while it stays low,
    and ``disk_ok`` once it recovers. ``stalwart up`` watches its own data
    directories (store, bus, outbox, home) when ``paths`` is empty.
    """

    paths: list[Path] = []
    min_free: _Bytes = 1024**3
    min_free_percent: float = Field(default=5.0, ge=0, le=100)
    interval: float = Field(default=30.0, gt=0)
    repeat: float = Field(default=600.0, gt=0)


class WatchdogSettings(_Strict):
    """The ``[watchdog]`` table."""

    name: str = "watchdog"
    programs: list[ProgramSettings] = []
    disk: DiskSettings = DiskSettings()
    socket: Path | None = None
    subreaper: bool = True
    state_interval: float = Field(default=2.0, gt=0)
    max_pending_events: int = Field(default=10_000, ge=10)

    @model_validator(mode="after")
    def _unique(self) -> WatchdogSettings:
        seen: set[str] = set()
        for program in self.programs:
            if program.name in seen:
                raise ValueError(f"two programs are named {program.name!r}; names must be unique")
            seen.add(program.name)
        return self
