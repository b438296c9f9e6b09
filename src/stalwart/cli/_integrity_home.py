"""Where an integrity command keeps its records: the catalog of the stalwart home.

A catalog that does not exist yet is created only by a command that writes
to it; the others say where they looked, so that a command run in the wrong
directory shows at once instead of leaving a stray ``.stalwart/`` behind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from stalwart.cli._common import fail
from stalwart.cli._integrity_view import say
from stalwart.config import Settings, describe_home
from stalwart.integrity import ops
from stalwart.integrity.catalog import Catalog, local_database
from stalwart.service import EventPublisher

__all__ = ["NOTE", "check_home", "recording"]

Need = Literal["write", "read", "optional"]
NOTE = ("note:", "yellow")  # the tag of a note line, for say()


def check_home(settings: Settings, need: Need) -> bool:
    """Whether to open the catalog. One that does not exist yet is created only for
    a command that writes (``need``); the others say where they looked."""
    fresh = local_database(settings.store.url)
    if fresh is None or fresh.exists():
        return True
    home = describe_home(settings)
    if need == "read":
        raise fail(f"no integrity catalog at {fresh}: nothing was ingested with the {home}")
    if need == "optional":
        say(
            f"no integrity catalog at {fresh}, so nothing is recorded; {home}",
            *NOTE,
            err=True,
        )
        return False
    say(f"new integrity catalog at {fresh}; {home}", *NOTE, err=True)
    return True


@asynccontextmanager
async def recording(settings: Settings, site: str) -> AsyncIterator[tuple[ops.Recorder, Catalog]]:
    """Catalog + event publisher for one command; says so when the bus is unreachable."""
    opened = await Catalog.open(settings.store.url)
    try:
        async with EventPublisher.for_settings(settings, "integrity", site) as events:
            if events.unavailable:
                say(
                    f"{events.unavailable}: sys.integrity events are not published; "
                    "the catalog is still updated",
                    *NOTE,
                    err=True,
                )
            yield ops.Recorder(site=site, catalog=opened, emit=events.publish), opened
    finally:
        await opened.close()
