"""The dashboard: what is running where and what is flowing, live, in a browser.

Public face: :func:`create_app` (the FastAPI app), :func:`serve_dashboard`
(run it until an event is set, as ``stalwart up`` does), and
:class:`DashboardSettings` (the ``[dashboard]`` table).
"""

from stalwart.dashboard.app import create_app
from stalwart.dashboard.server import serve_dashboard
from stalwart.dashboard.settings import DEFAULT_BIND, DashboardSettings

__all__ = ["DEFAULT_BIND", "DashboardSettings", "create_app", "serve_dashboard"]
