"""Integrity operations that also record in the catalog and announce on the bus.

The file-level functions (ingest, verify, repair, transfer) know nothing of
stores or buses; these wrappers run them on a worker thread and then write
the catalog and publish the ``sys.integrity.*`` event. The CLI, the
transfer service and the scrubber all go through here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from stalwart.integrity._pass import Progress
from stalwart.integrity.catalog import Catalog
from stalwart.integrity.channels import Channel
from stalwart.integrity.events import EventKind, IntegrityEvent
from stalwart.integrity.ingest import Ingested, IngestOptions, ingest_file
from stalwart.integrity.manifest import sidecar_paths
from stalwart.integrity.repair import Fetch, RepairResult, repair_file
from stalwart.integrity.transfer import (
    TransferFailed,
    TransferOptions,
    TransferResult,
    transfer_file,
)
from stalwart.integrity.verify import VerifyReport, parity_path_of, verify_file

__all__ = ["Checked", "Recorder", "ingest", "transfer", "verify"]

Emit = Callable[[IntegrityEvent], Awaitable[object]]


async def _drop(_event: IntegrityEvent) -> None:
    return None


@dataclass(slots=True)
class Recorder:
    """Where outcomes go: the catalog (optional) and an event emitter (optional)."""

    site: str
    catalog: Catalog | None = None
    emit: Emit = _drop


@dataclass(slots=True)
class Checked:
    """A verification, the repair it led to (if any), and the final state."""

    report: VerifyReport
    repair: RepairResult | None
    state: str  # ok | repaired | corrupt | missing


async def ingest(
    path: Path,
    recorder: Recorder,
    options: IngestOptions | None = None,
    *,
    name: str | None = None,
    progress: Progress | None = None,
) -> Ingested:
    """Ingest ``path``, register file and replica, announce ``ingested``."""
    done = await asyncio.to_thread(ingest_file, path, options, name=name, progress=progress)
    m = done.manifest
    if recorder.catalog is not None:
        await recorder.catalog.register_file(m)
        await recorder.catalog.set_replica(
            m.name,
            recorder.site,
            str(done.path),
            "ok",
            digest=m.digest,
            size=m.size,
            verified=True,
        )
    await recorder.emit(
        IntegrityEvent(
            event=EventKind.INGESTED,
            site=recorder.site,
            name=m.name,
            path=str(path),
            size=m.size,
            digest=f"{m.digest_algorithm}:{m.digest}",
        )
    )
    return done


def _check(
    path: Path, store: Path | None, repair: bool, fetch: Fetch | None, progress: Progress | None
) -> Checked:
    path = path.absolute()
    report = verify_file(path, store=store, progress=progress)
    if report.ok:
        return Checked(report, None, "ok")
    if not path.exists() and report.manifest is not None:
        return Checked(report, None, "missing")
    if not repair or report.manifest is None:
        return Checked(report, None, "corrupt")
    manifest_path = sidecar_paths(path, store)[0]
    fixed = repair_file(
        path, report.manifest, parity_path_of(report.manifest, manifest_path), report, fetch=fetch
    )
    after = verify_file(path, store=store)
    return Checked(after, fixed, "repaired" if after.ok else "corrupt")


async def verify(
    path: Path,
    recorder: Recorder,
    *,
    name: str | None = None,
    store: Path | None = None,
    repair: bool = False,
    fetch: Fetch | None = None,
    source: str | None = None,
    progress: Progress | None = None,
) -> Checked:
    """Verify ``path``; with ``repair``, fix it from parity (then ``fetch``); record it all.

    The replica is updated in the catalog only for files the catalog knows
    (``name``, else the manifest's name); verifying never registers files.
    """
    checked = await asyncio.to_thread(_check, path, store, repair, fetch, progress)
    report, m = checked.report, checked.report.manifest
    name = name or (m.name if m is not None else path.name)
    known = recorder.catalog is not None and await recorder.catalog.file(name) is not None
    if recorder.catalog is not None and known and checked.repair is not None:
        await _record_repairs(
            recorder.catalog, recorder.site, name, report.path, checked.repair, source
        )
    if recorder.catalog is not None and known:
        await recorder.catalog.set_replica(
            name,
            recorder.site,
            report.path,
            checked.state,
            digest=m.digest if m is not None else None,
            size=report.size,
            verified=True,
            detail="; ".join(report.problems()) or None,
        )
    kind = {
        "ok": EventKind.VERIFIED,
        "repaired": EventKind.REPAIRED,
        "missing": EventKind.MISSING,
    }.get(checked.state, EventKind.CORRUPT)
    fixed = checked.repair
    await recorder.emit(
        IntegrityEvent(
            event=kind,
            site=recorder.site,
            name=name,
            path=str(path),
            size=report.size,
            blocks_bad=report.bad_blocks if fixed is None else fixed.unrepairable,
            blocks_repaired=len(fixed.from_parity) if fixed else 0,
            bytes_refetched=fixed.bytes_refetched if fixed else 0,
            detail="; ".join(report.problems()) or None,
        )
    )
    return checked


async def _record_repairs(
    catalog: Catalog, site: str, name: str, path: str, fixed: RepairResult, source: str | None
) -> None:
    for method, blocks, nbytes, src in (
        ("parity", fixed.from_parity, 0, None),
        ("refetch", fixed.refetched, fixed.bytes_refetched, source),
        ("parity-rebuild", fixed.parity_rebuilt, 0, None),
    ):
        if blocks:
            await catalog.record_repair(
                path=path,
                method=method,
                blocks=blocks,
                nbytes=nbytes,
                name=name,
                site=site,
                source=src,
            )
    if fixed.truncated:
        await catalog.record_repair(
            path=path,
            method="truncate",
            blocks=[],
            nbytes=fixed.truncated,
            name=name,
            site=site,
        )


async def transfer(
    src: str | Channel,
    dst: str | Channel,
    recorder: Recorder,
    options: TransferOptions | None = None,
    *,
    progress: Progress | None = None,
) -> TransferResult:
    """A verified transfer to ``recorder.site``, catalogued and announced.

    Raises TransferFailed (after recording and announcing ``failed``).
    """
    error: TransferFailed | None = None
    try:
        result = await asyncio.to_thread(transfer_file, src, dst, options, progress=progress)
    except TransferFailed as exc:
        error, result = exc, exc.result
    m = result.manifest
    name = m.name if m is not None else None
    if recorder.catalog is not None:
        if m is not None and error is None:
            await recorder.catalog.register_file(m)
            await recorder.catalog.set_replica(
                m.name,
                recorder.site,
                result.dst,
                "ok",
                digest=m.digest,
                size=m.size,
                verified=True,
            )
        await recorder.catalog.record_transfer(
            {
                "name": name,
                "site": recorder.site,
                "src": result.src,
                "dst": result.dst,
                "outcome": result.outcome,
                "size": result.size,
                "bytes_moved": result.bytes_moved,
                "bytes_refetched": result.bytes_refetched,
                "bytes_retransmitted": result.bytes_retransmitted,
                "blocks_repaired": result.blocks_repaired,
                "blocks_refetched": result.blocks_refetched,
                "attempts": result.attempts,
                "seconds": result.seconds,
                "error": str(error) if error else None,
            }
        )
        if result.blocks_repaired or result.blocks_refetched:
            await recorder.catalog.record_repair(
                path=result.dst,
                method="transfer",
                blocks=[],
                nbytes=result.bytes_refetched,
                name=name,
                site=recorder.site,
                source=result.src,
            )
    await recorder.emit(
        IntegrityEvent(
            event=EventKind(result.outcome),
            site=recorder.site,
            name=name,
            src=result.src,
            dst=result.dst,
            size=result.size,
            digest=f"{m.digest_algorithm}:{m.digest}" if m is not None else None,
            bytes_moved=result.bytes_moved,
            bytes_refetched=result.bytes_refetched,
            bytes_retransmitted=result.bytes_retransmitted,
            blocks_repaired=result.blocks_repaired,
            detail=str(error) if error else ("; ".join(result.problems) or None),
        )
    )
    if error is not None:
        raise error
    return result
