"""Support for tests on real NATS JetStream: removing a test's streams afterwards."""

from __future__ import annotations

import contextlib

import nats
from nats.js.errors import NotFoundError

from stalwart.bus.nats._names import dead_stream, work_stream


async def drop_streams(url: str, namespace: str) -> None:
    """Delete the work and dead-letter streams of ``namespace`` (a test's own)."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for stream in (work_stream(namespace), dead_stream(namespace)):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(stream)
    finally:
        await nc.close()
