"""One catalog per service process, for handlers that record every message.

Opening a :class:`Catalog` makes an engine and checks the store's schema: a
handler that did so per message (a delivery ingesting products, a transfer
service) paid that on every one and churned connections. A handler asks
:func:`shared_catalog` instead: the first call opens it, the others reuse it,
and it is closed when the event loop ends (``asyncio.run`` cancels the task
that keeps it), so no connection outlives the process's loop.
"""

from __future__ import annotations

import asyncio
import weakref

from stalwart.integrity.catalog import Catalog

__all__ = ["shared_catalog"]

_Kept = dict[str, "asyncio.Future[Catalog]"]
_kept: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Kept] = weakref.WeakKeyDictionary()
_keepers: set[asyncio.Task[None]] = set()  # strong references: a task must not be collected


async def shared_catalog(url: str) -> Catalog:
    """The catalog at ``url`` for this event loop, opened on first use.

    Raises what :meth:`Catalog.open` raises (StoreUnavailable); a failed
    open is not kept, so the next call tries again.
    """
    loop = asyncio.get_running_loop()
    kept = _kept.setdefault(loop, {})
    ready = kept.get(url)
    if ready is None:
        ready = kept[url] = loop.create_future()
        keeper = loop.create_task(_keep(url, ready, kept), name=f"catalog:{url}")
        _keepers.add(keeper)
        keeper.add_done_callback(_keepers.discard)
    return await asyncio.shield(ready)


async def _keep(url: str, ready: asyncio.Future[Catalog], kept: _Kept) -> None:
    """Open the catalog, hand it out, and close it once this task is cancelled."""
    try:
        catalog = await Catalog.open(url)
    except Exception as exc:
        del kept[url]
        ready.set_exception(exc)
        return
    except asyncio.CancelledError:
        del kept[url]
        ready.cancel()
        raise
    ready.set_result(catalog)
    try:
        await asyncio.Event().wait()  # until the loop's end cancels the task
    finally:
        await catalog.close()
