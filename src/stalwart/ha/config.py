"""The ``[ha]`` table of ``stalwart.toml``: lease timing, replicas, monitors.

Read it with ``settings.section("ha", HaSettings)``. Every time limit is
explicit so that an operator can reason about worst-case failover time:
a dead active is replaced within ``lease + poll`` seconds.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from stalwart.config import StoreUrl

__all__ = ["HaSettings", "MonitorKind", "MonitorSettings"]

MonitorKind = Literal["amqp", "database", "http", "command"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MonitorSettings(_Strict):
    """One critical service to watch, and the prescribed strategy when it fails.

    ``urls`` lists the primary first and backups after it (for ``command``
    monitors: the command line as one string per URL, split on spaces).
    The strategy is: repair (re-probe, or run ``repair`` and re-probe until
    ``repair_timeout``), then fail over to the next URL that answers
    (each probed for at most ``timeout``), else ``failed``.
    """

    name: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9_][a-z0-9_\-]*$")
    kind: MonitorKind
    urls: list[str] = Field(min_length=1)
    interval: float = Field(default=5.0, gt=0)
    timeout: float = Field(default=3.0, gt=0)
    suspect_after: int = Field(default=2, ge=1)
    repair: list[str] = []
    repair_timeout: float = Field(default=30.0, gt=0)
    failover: bool = True
    expect_status: int = Field(default=200, ge=100, le=599)


class HaSettings(_Strict):
    """Settings of the ``ha`` part."""

    lease: float = Field(default=5.0, gt=0, description="lease time in seconds")
    renew_every: float | None = Field(default=None, gt=0)
    poll: float | None = Field(default=None, gt=0)
    checkpoint_keep: int = Field(default=10, ge=1)
    store_url: StoreUrl | None = None
    monitors: list[MonitorSettings] = []

    @model_validator(mode="after")
    def _check(self) -> HaSettings:
        if self.renew_every is not None and self.renew_every >= self.lease / 2:
            raise ValueError("renew_every must be under half the lease, e.g. lease / 3")
        names = [m.name for m in self.monitors]
        if len(names) != len(set(names)):
            raise ValueError("monitor names must be unique")
        return self

    @property
    def renew_interval(self) -> float:
        """How often the holder renews: a third of the lease unless set."""
        return self.renew_every or self.lease / 3

    @property
    def poll_interval(self) -> float:
        """How often a standby tries to acquire: short, so failover is lease + poll."""
        return self.poll or min(self.lease / 4, 0.5)
