"""The demonstration services: a dispatcher, a pipeline step per site, QA with a
calibration executor (request/reply), delivery (ingest with integrity
manifests, verified replication through each site's transfer service) and a
tracker.

Each is a module-level Service, so any of them can run alone in its own
process: ``stalwart run stalwart.demo.services:qa``.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import zlib
from pathlib import Path
from typing import TYPE_CHECKING

from stalwart.demo.models import (
    SITES,
    CalibrationCheck,
    CalibrationScore,
    ProcessRequest,
    ProcessResult,
    StateChange,
    UnitReady,
    UnitState,
)
from stalwart.service import Context, Retry, Service

__all__ = [
    "ALL",
    "calibration",
    "delivery",
    "dispatcher",
    "pipelines",
    "qa",
    "tracker",
    "transfers",
]

STATE_TOPIC = "ous.state"


async def _state(
    ctx: Context, ous: str, state: UnitState, site: str | None = None, reason: str = ""
) -> None:
    """Publish the unit's new state under an id stable across runs of this handling: a
    handler run again after a crash between its publish and its claim records the
    state once, not twice (a unit ``Delivered`` twice). A problem is one record per
    attempt, since each attempt's problem is news."""
    key = f"state.{state.value}"
    if state is UnitState.PROCESSING_PROBLEM:
        key += f".{ctx.envelope.attempt}"
    change = StateChange(ous=ous, state=state, site=site, reason=reason)
    await ctx.publish(STATE_TOPIC, change, id=ctx.stable_id(key))


dispatcher = Service("dispatcher", concurrency=32)


@dispatcher.handler("ous.ready", body=UnitReady, idempotent=True)
async def dispatch(ctx: Context, unit: UnitReady) -> None:
    """Assign the unit to a processing site (stable by its id) and start it there."""
    site = SITES[zlib.crc32(unit.ous.encode()) % len(SITES)]
    await _state(ctx, unit.ous, UnitState.PROCESSING, site)
    request = ProcessRequest(ous=unit.ous, project=unit.project, site=site, size_kib=unit.size_kib)
    await ctx.publish(f"pipeline.process.{site}", request, id=ctx.stable_id("process"))


def _pipeline(site: str) -> Service:
    service = Service(f"pipeline-{site}", site=site, concurrency=2, max_attempts=4)

    @service.handler(
        f"pipeline.process.{site}", body=ProcessRequest, idempotent=True, timeout=120.0
    )
    async def process(ctx: Context, request: ProcessRequest) -> None:
        """Run the batch step as a child process; a problem is reported and retried.

        Idempotent: a redelivery after a broker loss must not run the unit again.
        A step killed after publishing its result but before its claim completed
        does run again: its result then has the same id (``ctx.stable_id``), which
        QA, idempotent, takes once, so the unit is not delivered twice."""
        outdir = Path(ctx.settings.home) / "demo" / "products" / site
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "stalwart",
            "demo",
            "batch",
            request.ous,
            site,
            str(outdir),
            f"--size-kib={request.size_kib}",
            f"--attempt={ctx.envelope.attempt}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        ctx.progress(1)
        if proc.returncode != 0:
            reason = err.decode(errors="replace").strip() or f"exit status {proc.returncode}"
            await ctx.report("error", f"{request.ous} at {site}: {reason}", {"ous": request.ous})
            await _state(ctx, request.ous, UnitState.PROCESSING_PROBLEM, site, reason)
            raise Retry(reason)
        product, digest = out.decode().split()
        await ctx.report(
            "info",
            f"{request.ous} processed at {site}",
            {"ous": request.ous, "product": product, "blake2b": digest[:16]},
        )
        await _state(ctx, request.ous, UnitState.READY_FOR_REVIEW, site)
        await ctx.publish(
            "qa.review",
            ProcessResult(ous=request.ous, site=site, ok=True, products=[product]),
            id=ctx.stable_id("review"),
        )

    return service


pipelines = {site: _pipeline(site) for site in SITES}
pipeline_jao, pipeline_eu, pipeline_na, pipeline_ea = (pipelines[s] for s in SITES)

calibration = Service("calibration", concurrency=16)


@calibration.handler("calibration.check", body=CalibrationCheck)
async def check_calibration(ctx: Context, check: CalibrationCheck) -> CalibrationScore:
    """An executor: answers QA's requests with a calibration score."""
    score = (zlib.crc32(f"{check.ous}/{check.site}".encode()) % 1000) / 1000
    return CalibrationScore(ous=check.ous, score=0.5 + score / 2)


qa = Service("qa", concurrency=16)


@qa.handler("qa.review", body=ProcessResult, idempotent=True, timeout=60.0)
async def review(ctx: Context, result: ProcessResult) -> None:
    """Verify a processed unit, asking the calibration executor for its score."""
    reply = await ctx.request(
        "calibration.check", CalibrationCheck(ous=result.ous, site=result.site), timeout=20.0
    )
    score = CalibrationScore.model_validate(reply.body)
    await _state(ctx, result.ous, UnitState.VERIFIED, result.site, f"score {score.score:.3f}")
    await ctx.publish("delivery.start", result, id=ctx.stable_id("deliver"))


# Replication fails while a site's disk is full, its link is cut or its transfer
# service is down: infrastructure that comes back, often within seconds, sometimes
# after an operator's minutes. With the bus's 5 attempts (backoff from 0.5 s) a unit
# was dead-lettered after 8 s of two full disks in a row; 12 attempts, the backoff
# capped at 60 s, keep trying for minutes before the unit goes to an operator.
delivery = Service("delivery", concurrency=8, max_attempts=12)
# A demo product crosses to a site in seconds, even through a slow link. A reply
# missing for a minute was lost (the transfer service died between its verified copy
# and its reply): the attempt fails and the retry asks again, which finds the replica
# already verified, sooner than a longer wait would.
TRANSFER_REPLY_WITHIN = 60.0


@delivery.handler("delivery.start", body=ProcessResult, idempotent=True, timeout=600.0)
async def deliver(ctx: Context, result: ProcessResult) -> None:
    """Ingest the products with integrity manifests at their site, replicate them to
    every other site with verified transfers, and mark the unit delivered once every
    replica is verified."""
    from stalwart.integrity.ops import Recorder, ingest
    from stalwart.integrity.service import TransferReply, TransferRequest, transfer_topic
    from stalwart.integrity.shared import shared_catalog

    await _state(ctx, result.ous, UnitState.DELIVERY_IN_PROGRESS, result.site)
    archive = Path(ctx.settings.home) / "demo" / "archive"
    catalog = await shared_catalog(ctx.settings.store.url)
    recorder = Recorder(
        site=result.site,
        catalog=catalog,
        emit=lambda event: ctx.publish(event.topic, event),
    )
    for product in result.products:
        await ingest(Path(product), recorder)
    targets = [site for site in SITES if site != result.site]
    requests = [
        ctx.request(
            transfer_topic(site),
            TransferRequest(src=product, dst=f"{archive / site}/"),
            timeout=TRANSFER_REPLY_WITHIN,
        )
        for site in targets
        for product in result.products
    ]
    replies = [TransferReply.model_validate(r.body) for r in await asyncio.gather(*requests)]
    failed = [r for r in replies if r.outcome == "failed"]
    if failed:
        raise Retry(f"replication failed at {', '.join(r.site for r in failed)}: {failed[0].error}")
    repaired = sum(r.blocks_repaired for r in replies)
    moved = sum(r.bytes_moved for r in replies)
    await _state(
        ctx,
        result.ous,
        UnitState.DELIVERED,
        result.site,
        f"{len(replies)} verified replicas at {', '.join(targets)}; "
        f"{moved / 2**20:.1f} MiB moved, {repaired} blocks repaired",
    )


def _tracker() -> Service:
    service = Service("tracker", concurrency=1)
    units: dict[str, UnitState] = {}

    @service.handler(STATE_TOPIC, body=StateChange)
    async def track(ctx: Context, change: StateChange) -> None:
        """Keep the state of every unit; report when one is delivered."""
        if units.get(change.ous) is UnitState.DELIVERED:
            return
        units[change.ous] = change.state
        if change.state is UnitState.DELIVERED:
            delivered = sum(1 for s in units.values() if s is UnitState.DELIVERED)
            await ctx.report(
                "info",
                f"{change.ous} delivered ({delivered}/{len(units)} units)",
                {"ous": change.ous},
            )

    return service


tracker = _tracker()


if TYPE_CHECKING:  # built on first use, by __getattr__ below
    transfers: dict[str, Service]
    transfer_jao: Service
    transfer_eu: Service
    transfer_na: Service
    transfer_ea: Service
    ALL: tuple[Service, ...]


@functools.cache
def _transfers() -> dict[str, Service]:
    """Each site's transfer service. They bring the integrity part (catalog tables,
    erasure codes, remote channels), so they are built when first asked for and a
    process running another demo service does not load it."""
    from stalwart.integrity.service import build_service

    return {site: build_service(site) for site in SITES}


@functools.cache
def _all() -> tuple[Service, ...]:
    return (
        dispatcher,
        *pipelines.values(),
        calibration,
        qa,
        delivery,
        *_transfers().values(),
        tracker,
    )


def __getattr__(name: str) -> object:
    """``transfers``, ``transfer_<site>`` and ``ALL``, built on first access (PEP 562)."""
    if name == "transfers":
        return _transfers()
    if name == "ALL":
        return _all()
    site = name.removeprefix("transfer_")
    if site != name and site in SITES:
        return _transfers()[site]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
