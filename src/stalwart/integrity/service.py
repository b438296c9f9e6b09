"""The transfer service: sites run it to take verified-transfer requests off the bus.

A request on ``integrity.transfer.<site>`` (body :class:`TransferRequest`)
copies ``src`` to ``dst`` at that site with verification and repair,
records it in the catalog, publishes the ``sys.integrity.*`` outcome, and
replies (when the request has ``reply_to``) with a :class:`TransferReply`.
A transfer that fails every attempt replies ``outcome="failed"`` rather
than being retried by the bus: the transfer already retried with backoff.

Run it with ``stalwart integrity serve --site eu``, or name it as a
``module:attribute`` target (``stalwart run``, ``[[services]]`` of
``stalwart up``): ``stalwart.integrity.service:transfer_eu`` is the service
of site ``eu``, built when it is looked up.
"""

from __future__ import annotations

import asyncio
import random

from pydantic import BaseModel, ConfigDict

from stalwart.errors import ConfigError, IntegrityError
from stalwart.events import IntegrityEvent, IntegrityKind
from stalwart.integrity import ops
from stalwart.integrity.channels import Channel, open_channel
from stalwart.integrity.faults import FaultyChannel, random_faults
from stalwart.integrity.settings import integrity_settings
from stalwart.integrity.shared import shared_catalog
from stalwart.integrity.transfer import (
    TransferFailed,
    TransferFigures,
    TransferResult,
    resolve_destination,
)
from stalwart.service import Context, Service

__all__ = [
    "TRANSFER_PREFIX",
    "TransferReply",
    "TransferRequest",
    "build_service",
    "transfer_topic",
]

TRANSFER_PREFIX = "integrity.transfer"


def transfer_topic(site: str) -> str:
    """Where to send transfer requests for ``site``."""
    return f"{TRANSFER_PREFIX}.{site}"


class TransferRequest(BaseModel):
    """Copy ``src`` (path or fsspec URL) to ``dst`` (at the serving site)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    src: str
    dst: str


class TransferReply(TransferFigures):
    """The outcome of a requested transfer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    site: str
    name: str | None = None
    size: int = 0
    digest: str | None = None
    error: str | None = None

    @classmethod
    def of(cls, site: str, result: TransferResult, error: str | None = None) -> TransferReply:
        m = result.manifest
        return cls(
            **result.model_dump(include=set(TransferFigures.model_fields)),
            site=site,
            name=m.name if m else None,
            size=result.size,
            digest=f"{m.digest_algorithm}:{m.digest}" if m else None,
            error=error,
        )


def build_service(
    site: str,
    *,
    concurrency: int = 2,
    timeout: float = 3600.0,
    chaos: float = 0.0,
    rng: random.Random | None = None,
) -> Service:
    """The transfer service of ``site`` (its own queue: ``transfer-<site>``).

    ``chaos`` (0..1, for demonstrations): the share of transfers whose first
    copy gets a few bytes flipped on the way to the disk, to show detection
    and repair at work.
    """
    if not 0.0 <= chaos <= 1.0:
        raise ConfigError(f"chaos must be between 0 and 1, not {chaos}")
    svc = Service(f"transfer-{site}", site=site, concurrency=concurrency)
    chance = rng or random.Random()

    def destination(body: TransferRequest) -> str | Channel:
        dst = resolve_destination(body.src, body.dst)
        if chaos and chance.random() < chaos:
            source = open_channel(body.src)
            size = source.size() if source.exists() else 0
            return FaultyChannel(dst, random_faults(size, chance))
        return dst

    @svc.handler(transfer_topic(site), body=TransferRequest, idempotent=True, timeout=timeout)
    async def on_transfer(ctx: Context, body: TransferRequest) -> TransferReply:
        loop = asyncio.get_running_loop()

        async def emit(event: IntegrityEvent) -> None:
            await ctx.publish(event.topic, event)

        def progress(n: int) -> None:
            loop.call_soon_threadsafe(ctx.progress, n)

        catalog = await shared_catalog(ctx.settings.store.url)
        recorder = ops.Recorder(site=site, catalog=catalog, emit=emit)
        options = integrity_settings(ctx.settings).transfer_options()
        try:
            dst = await asyncio.to_thread(destination, body)
            result = await ops.transfer(body.src, dst, recorder, options, progress=progress)
        except TransferFailed as exc:
            return TransferReply.of(site, exc.result, str(exc))
        except IntegrityError as exc:  # e.g. no such source: nothing to retry
            await emit(
                IntegrityEvent(
                    event=IntegrityKind.FAILED,
                    site=site,
                    src=body.src,
                    dst=body.dst,
                    detail=str(exc),
                )
            )
            return TransferReply(
                src=body.src, dst=body.dst, site=site, outcome="failed", error=str(exc)
            )
        return TransferReply.of(site, result)

    return svc


def __getattr__(name: str) -> Service:
    """``transfer_<site>``: the transfer service of that site (for ``module:attribute``)."""
    site = name.removeprefix("transfer_")
    if site != name and site:
        return build_service(site)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
