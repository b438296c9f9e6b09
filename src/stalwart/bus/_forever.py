"""Consuming for as long as a part lives: a consumer that ends or fails starts again.

A long-lived part (a service instance, the persister, the bus link of the
watchdog and the dashboard, the dashboard's live feed) whose consumer ended
would go on running with no message reaching it, which no watchdog can tell
from idle. A broker may end a consumer without closing the connection (a
queue missing for a moment after a restart), and a backend may fail in a way
of its own; either way the queue is declared again and consumed again, after
a pause drawn from :class:`~stalwart.backoff.Backoff`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable

from stalwart.backoff import Backoff
from stalwart.bus._transport import Delivery, QueueSpec, Transport
from stalwart.errors import StalwartError, TransportClosed

__all__ = ["consume_forever"]

_log = logging.getLogger("stalwart.bus")


async def consume_forever(
    transport: Transport,
    spec: QueueSpec,
    prefetch: int,
    *,
    pace: Backoff | None = None,
    declare_timeout: float | None = None,
    on_state: Callable[[str | None], None] | None = None,
    label: str = "",
) -> AsyncGenerator[Delivery, None]:
    """Deliveries from ``spec``'s queue until the transport is closed.

    Each round declares the queue (within ``declare_timeout`` seconds) and
    consumes it. When the consumer ends or fails, the reason is logged (with
    ``label``, naming the part), ``on_state`` hears it, and the next round
    starts after a ``pace`` delay; ``pace`` starts over once deliveries flow
    again. ``on_state`` hears None when a round's consumer starts.
    """
    pace = pace or Backoff()
    while True:
        deliveries: AsyncIterator[Delivery] | None = None
        try:
            await asyncio.wait_for(transport.declare(spec), declare_timeout)
            deliveries = transport.consume(spec.name, prefetch)
            if on_state is not None:
                on_state(None)
            flowing = False
            async for delivery in deliveries:
                if not flowing:
                    pace.reset()
                    flowing = True
                yield delivery
            why = "the transport ended it"
        except TransportClosed:
            return  # the part is shutting down
        except StalwartError as exc:
            why = str(exc)
        except Exception as exc:  # a backend's own error: keep consuming, say why
            why = repr(exc)
        finally:
            if deliveries is not None:
                await deliveries.aclose()  # type: ignore[attr-defined]
        delay = pace.next()
        _log.warning(
            "%sstopped consuming %s (%s); consuming again in %.1fs",
            f"{label} " if label else "",
            spec.name,
            why,
            delay,
        )
        if on_state is not None:
            on_state(why)
        await asyncio.sleep(delay)
