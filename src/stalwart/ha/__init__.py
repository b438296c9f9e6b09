"""High availability: leases with fencing tokens, checkpoints, failover, health monitors.

Public face: :class:`Lease` and :func:`fenced_write` (leader election timed by
the database's clock), :func:`save_checkpoint` / :func:`latest_checkpoint`,
:class:`HaReplica` and :func:`run_ha` (one replica of a service per process),
:class:`HealthMonitors` (critical services: repair, then fail over), and
:func:`status` for the dashboard's HA panel.
"""

from stalwart.ha.checkpoint import Checkpoint, latest_checkpoint, save_checkpoint
from stalwart.ha.config import HaSettings, MonitorSettings
from stalwart.ha.health import HealthMonitors, HealthState, Monitor
from stalwart.ha.keeper import LeaseChange, LeaseKeeper
from stalwart.ha.lease import Lease, fenced_write, request_step_down
from stalwart.ha.replicas import run_ha
from stalwart.ha.runner import HaReplica, checkpoint, current_replica, fenced, restored_state
from stalwart.ha.status import HaStatus, ReplicaStatus, active_url, status

__all__ = [
    "Checkpoint",
    "HaReplica",
    "HaSettings",
    "HaStatus",
    "HealthMonitors",
    "HealthState",
    "Lease",
    "LeaseChange",
    "LeaseKeeper",
    "Monitor",
    "MonitorSettings",
    "ReplicaStatus",
    "active_url",
    "checkpoint",
    "current_replica",
    "fenced",
    "fenced_write",
    "latest_checkpoint",
    "request_step_down",
    "restored_state",
    "run_ha",
    "save_checkpoint",
    "status",
]
