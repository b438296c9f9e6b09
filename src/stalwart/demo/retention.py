"""Keeps the demonstration in bounded space: it runs for days, not minutes.

Every ``sweep`` seconds it deletes the products of delivered units (a
product with a good replica at every site) once they are older than
``retention``, with their manifests and parity, at every site, and removes
them from the catalog so that scrub does not report them missing (marked
``retiring`` first, so that a sweep killed midway is finished by the next,
not left as catalogued replicas with no data); then it
prunes the message store of messages, and the catalog of transfer and
repair records, older than ``store_retention`` (as ``stalwart store prune``
does). ``stalwart up --demo`` runs it under the watchdog as
``stalwart demo retention``; the ``[demo]`` table of stalwart.toml sets it::

    [demo]
    retention = "10m"
    store_retention = "1h"
    sweep = "1m"
"""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from stalwart.config import Duration, Settings
from stalwart.demo.models import SITES
from stalwart.envelope import utcnow
from stalwart.integrity.catalog import Catalog
from stalwart.integrity.manifest import sidecar_paths
from stalwart.store import Store
from stalwart.store.retention import prune

__all__ = ["DemoSettings", "Swept", "sweep", "sweep_until_stopped"]

_log = logging.getLogger("stalwart.demo.retention")


class DemoSettings(BaseModel):
    """The ``[demo]`` table: how long the demonstration keeps what it makes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    retention: Duration = 600.0
    store_retention: Duration = 3600.0
    sweep: Duration = Field(default=60.0, gt=0)


@dataclass(frozen=True, slots=True)
class Swept:
    """What one sweep removed."""

    products: int
    files: int
    bytes: int
    messages: int
    history: int  # transfer, repair and finished scrub records


def _delete(paths: list[str]) -> tuple[int, int]:
    """Delete each replica with its sidecars; (files deleted, bytes freed)."""
    files = freed = 0
    for path in paths:
        for each in (Path(path), *sidecar_paths(Path(path))):
            try:
                size = each.stat().st_size
                each.unlink()
            except FileNotFoundError:
                continue
            files += 1
            freed += size
    return files, freed


async def sweep(settings: Settings, demo: DemoSettings, now: datetime | None = None) -> Swept:
    """One pass: delete delivered products older than ``retention``, prune the store."""
    now = now or utcnow()
    catalog = await Catalog.open(settings.store.url)
    products = files = freed = 0
    try:
        while due := await catalog.due_for_removal(SITES, now - timedelta(seconds=demo.retention)):
            # Intent, data, then the catalog: an interrupted sweep is finished by the next.
            await catalog.retire(list(due))
            for paths in due.values():
                deleted, size = await asyncio.to_thread(_delete, paths)
                files, freed = files + deleted, freed + size
            await catalog.forget(list(due))
            products += len(due)
        history = await catalog.prune_history(now - timedelta(seconds=demo.store_retention))
    finally:
        await catalog.close()
    async with await Store.open(settings.store.url) as store:
        pruned = await prune(
            store,
            now - timedelta(seconds=demo.store_retention),
            forget_after=settings.store.forget_after,
        )
    return Swept(products, files, freed, pruned.messages, history)


async def sweep_until_stopped(settings: Settings, demo: DemoSettings) -> None:
    """Sweep every ``demo.sweep`` seconds until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    while not stop.is_set():
        try:
            done = await sweep(settings, demo)
        except Exception as exc:  # a store outage: try again at the next sweep
            _log.warning("demo retention sweep failed, retried in %gs: %s", demo.sweep, exc)
        else:
            _log.log(
                logging.INFO if done.products or done.messages else logging.DEBUG,
                "demo retention: %d delivered product(s) removed (%d files, %.1f MiB), "
                "%d old message(s) and %d transfer/repair record(s) pruned",
                done.products,
                done.files,
                done.bytes / 2**20,
                done.messages,
                done.history,
            )
        try:
            await asyncio.wait_for(stop.wait(), demo.sweep)
        except TimeoutError:
            continue
