"""Run N replicas of a service as child processes, one active at a time.

``run_ha("pkg.module:svc", settings, replicas=3)`` is what
``stalwart run --replicas 3 pkg.module:svc --ha`` calls. Each child is
``python -m stalwart.ha TARGET`` with the parent's settings passed
in ``STALWART_HA_SETTINGS``; the parent restarts children that exit (with
backoff and jitter) and forwards SIGTERM/SIGINT for a graceful stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
import time
from typing import Final

from stalwart.config import Settings
from stalwart.errors import ConfigError, StalwartError, exit_status
from stalwart.ha.config import HaSettings
from stalwart.ha.runner import HaReplica
from stalwart.logs import configure_logging
from stalwart.redact import redact_url
from stalwart.service import Service, load_service

__all__ = ["HaRunner", "main", "run_ha"]

_log = logging.getLogger("stalwart.ha.replicas")
SETTINGS_ENV: Final = "STALWART_HA_SETTINGS"
_RESTART_CAP = 30.0
_STABLE = 60.0  # seconds of running after which a crash counts as the first again


async def _serve_one(service: Service, settings: Settings, stop: asyncio.Event) -> None:
    await HaReplica(service, settings).run(stop)


def _on_signals(stop: asyncio.Event) -> list[signal.Signals]:
    loop = asyncio.get_running_loop()
    signums = [signal.SIGTERM, signal.SIGINT]
    for signum in signums:
        loop.add_signal_handler(signum, stop.set)
    return signums


class HaRunner:
    """Keeps ``replicas`` child processes of ``target`` alive until stopped."""

    def __init__(self, target: str, settings: Settings, replicas: int) -> None:
        if replicas < 1:
            raise ConfigError("--replicas must be at least 1")
        load_service(target)  # fail fast in the parent on a bad target
        self.target = target
        self.settings = settings
        self.replicas = replicas
        self.children: list[asyncio.subprocess.Process | None] = [None] * replicas
        self._failures = [0] * replicas

    async def _spawn(self) -> asyncio.subprocess.Process:
        env = dict(os.environ)
        env[SETTINGS_ENV] = self.settings.model_dump_json()
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "stalwart.ha", self.target, env=env
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Supervise the children until ``stop``; then SIGTERM them and wait."""
        ha = self.settings.section("ha", HaSettings)
        slots = [asyncio.create_task(self._keep(i, stop)) for i in range(self.replicas)]
        try:
            await stop.wait()
        finally:
            for child in self.children:
                if child is not None and child.returncode is None:
                    child.send_signal(signal.SIGTERM)
            grace = ha.lease + 15.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await asyncio.gather(*slots, return_exceptions=True)
            for child in self.children:
                if child is not None and child.returncode is None:
                    child.kill()
                    await child.wait()
            for slot in slots:
                slot.cancel()
            await asyncio.gather(*slots, return_exceptions=True)

    async def _keep(self, slot: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.monotonic()
            child = await self._spawn()
            self.children[slot] = child
            code = await child.wait()
            if stop.is_set():
                return
            if time.monotonic() - started > _STABLE:
                self._failures[slot] = 0  # it ran well for a while: restart quickly
            self._failures[slot] += 1
            cap = min(_RESTART_CAP, 0.5 * 2 ** self._failures[slot])
            delay = random.uniform(cap / 2, cap)
            _log.warning(
                "replica %d of %s exited %s; restart in %.1fs", slot, self.target, code, delay
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await stop.wait()


async def run_ha(
    target: str,
    settings: Settings,
    replicas: int | None = None,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Run ``target`` as an HA service until SIGTERM/SIGINT (or ``stop``).

    ``replicas`` defaults to ``[ha] replicas``; with 1 the replica runs in this
    process, otherwise each runs in its own child process.
    """
    count = replicas if replicas is not None else settings.section("ha", HaSettings).replicas
    stop = stop or asyncio.Event()
    signums = _on_signals(stop)
    try:
        if count == 1:
            await _serve_one(load_service(target), settings, stop)
        else:
            await HaRunner(target, settings, count).run(stop)
    finally:
        loop = asyncio.get_running_loop()
        for signum in signums:
            loop.remove_signal_handler(signum)


def main() -> None:
    """Child entry point: one replica of ``argv[1]`` with settings from the parent."""
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m stalwart.ha package.module:service")
    raw = os.environ.get(SETTINGS_ENV)
    settings = Settings.model_validate_json(raw) if raw else Settings()
    configure_logging(settings)
    service = load_service(sys.argv[1])

    async def serve() -> None:
        stop = asyncio.Event()
        signums = _on_signals(stop)
        try:
            await _serve_one(service, settings, stop)
        finally:
            for signum in signums:
                asyncio.get_running_loop().remove_signal_handler(signum)

    try:
        asyncio.run(serve())
    except (StalwartError, OSError) as exc:  # one line, as the stalwart command says it
        print(f"error: {redact_url(str(exc))}", file=sys.stderr)
        raise SystemExit(exit_status(exc)) from None
