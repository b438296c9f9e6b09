"""Everything one dashboard app holds, built once by :func:`create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field

from stalwart.bus import Transport
from stalwart.config import Settings
from stalwart.dashboard.auth import Authenticator
from stalwart.dashboard.buslink import BusLink
from stalwart.dashboard.live import LiveHub
from stalwart.dashboard.metrics import DashboardMetrics
from stalwart.dashboard.settings import DashboardSettings
from stalwart.dashboard.source import DataSource

__all__ = ["DashboardState"]


@dataclass(eq=False)
class DashboardState:
    """The app's collaborators; stored on ``app.state.dashboard``."""

    settings: Settings
    config: DashboardSettings
    auth: Authenticator
    source: DataSource
    transport: Transport | None
    hub: LiveHub
    link: BusLink
    metrics: DashboardMetrics
    login_for_reads: bool
    owned: list[object] = field(default_factory=list)

    @property
    def bus_error(self) -> str | None:
        """Why the bus cannot be used right now, or None."""
        return self.link.error
