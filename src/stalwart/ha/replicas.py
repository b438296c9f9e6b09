"""Run one HA replica of a service in this process, until SIGTERM/SIGINT.

``stalwart run --ha pkg.module:svc`` calls :func:`run_ha`. A replica is one
process: N replicas are N processes, started and restarted by the watchdog (a
program with ``replicas = N``) or by systemd, so that one supervisor, with one
restart policy, keeps every process of a deployment alive.
"""

from __future__ import annotations

import asyncio
import signal

from stalwart.config import Settings
from stalwart.ha.runner import HaReplica
from stalwart.service import load_service

__all__ = ["run_ha"]


async def run_ha(target: str, settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Serve ``target`` as one replica of its HA role until SIGTERM/SIGINT (or ``stop``)."""
    service = load_service(target)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signums = [signal.SIGTERM, signal.SIGINT]
    for signum in signums:
        loop.add_signal_handler(signum, stop.set)
    try:
        await HaReplica(service, settings).run(stop)
    finally:
        for signum in signums:
            loop.remove_signal_handler(signum)
