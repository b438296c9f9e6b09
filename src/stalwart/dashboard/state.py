"""Everything one dashboard app holds, built once by :func:`create_app`."""

from __future__ import annotations

from dataclasses import dataclass, field

from stalwart.bus import BusLink, Transport
from stalwart.config import Settings
from stalwart.dashboard.auth import Authenticator
from stalwart.dashboard.live import LiveHub
from stalwart.dashboard.metrics import DashboardMetrics
from stalwart.dashboard.models import BusStatus
from stalwart.dashboard.settings import DashboardSettings
from stalwart.dashboard.source import DataSource
from stalwart.envelope import utcnow

__all__ = ["DashboardState"]


@dataclass(eq=False)
class DashboardState:
    """The app's collaborators; stored on ``app.state.dashboard``.

    ``link`` keeps the dashboard on the bus and starts ``hub`` the first time
    the bus is reached.
    """

    settings: Settings
    config: DashboardSettings
    auth: Authenticator
    source: DataSource
    hub: LiveHub
    link: BusLink
    metrics: DashboardMetrics
    login_for_reads: bool
    owned: list[object] = field(default_factory=list)

    @property
    def transport(self) -> Transport:
        """The bus transport, whether reachable now or not (see :attr:`bus_error`)."""
        return self.link.transport

    @property
    def bus_error(self) -> str | None:
        """What the pages say while the bus cannot be used; None once it is up."""
        link = self.link
        if link.up:
            if link.reachable:
                return None
            return (
                f"the bus at {link.url} is unreachable (the connection was lost); history is "
                "still shown and the dashboard reconnects by itself"
            )
        if link.since is None:
            return None
        wait = 0.0 if link.next_retry is None else (link.next_retry - utcnow()).total_seconds()
        return (
            f"the bus at {link.url} is unreachable since {link.since:%Y-%m-%d %H:%M:%S} UTC "
            f"({link.last_failure}); history is still shown; the dashboard keeps trying, "
            f"next try in {max(0.0, wait):.0f} s ({link.attempts} tried so far)"
        )

    def bus_status(self) -> BusStatus:
        """``/api/bus``: whether the dashboard is on the bus; while not, since when and why."""
        link = self.link
        return BusStatus(
            url=link.url,
            reachable=link.reachable,
            live=self.hub.connected.is_set(),
            since=link.since,
            next_retry=link.next_retry,
            attempts=link.attempts,
            error=self.bus_error if link.up else link.last_failure,
        )
