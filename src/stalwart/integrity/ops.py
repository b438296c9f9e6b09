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

from stalwart.errors import IntegrityError
from stalwart.events import IntegrityEvent, IntegrityKind
from stalwart.integrity._pass import Progress
from stalwart.integrity.catalog import Catalog, Row
from stalwart.integrity.channels import Channel
from stalwart.integrity.ingest import Ingested, IngestOptions, ingest_file
from stalwart.integrity.manifest import Manifest, sidecar_paths
from stalwart.integrity.rebuild import rebuild_manifest
from stalwart.integrity.repair import Fetch, RepairResult, repair_file
from stalwart.integrity.transfer import (
    TransferFailed,
    TransferOptions,
    TransferResult,
    transfer_file,
)
from stalwart.integrity.verify import VerifyReport, parity_path_of, verify_file

__all__ = ["Checked", "Recorder", "ingest", "refuse_known_bad", "transfer", "verify"]

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
    state: str  # ok | repaired | corrupt | missing | unverified (never ingested)
    bytes_read: int = 0  # by the check, the repair (ranges re-fetched too) and the re-check
    catalogued: bool = False  # the outcome was recorded on the catalogued replica
    rebuilt: bool = False  # the manifest was rebuilt from intact data
    error: str | None = None  # the file could not be read or written (corrupt, then)

    def problems(self) -> list[str]:
        return self.report.problems() + ([self.error] if self.error else [])


def _unchanged(catalogued: Row, path: Path) -> Callable[[Manifest], None]:
    """A check that ``path``'s new manifest has the catalogued digest (see ingest)."""

    def accept(manifest: Manifest) -> None:
        algorithm, digest = catalogued["algorithm"], catalogued["digest"]
        now = manifest.digests.get(algorithm)
        if now == digest and manifest.size == catalogued["size"]:
            return
        seen = f", now {algorithm}:{now[:16]}…" if now else ""
        raise IntegrityError(
            f"{path} differs from {manifest.name!r} in the catalog "
            f"({algorithm}:{digest[:16]}…{seen}); nothing was changed. If the new content "
            "is right, ingest it again with --force"
        )

    return accept


async def ingest(
    path: Path,
    recorder: Recorder,
    options: IngestOptions | None = None,
    *,
    name: str | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> Ingested:
    """Ingest ``path``, register file and replica, announce ``ingested``.

    A file the catalog already has (by name) with another digest is refused
    (IntegrityError, nothing written) unless ``force``.
    """
    accept = None
    if recorder.catalog is not None and not force:
        catalogued = await recorder.catalog.file(name or path.name)
        accept = _unchanged(catalogued, path) if catalogued is not None else None
    done = await asyncio.to_thread(
        ingest_file, path, options, name=name, progress=progress, accept=accept
    )
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
            event=IntegrityKind.INGESTED,
            site=recorder.site,
            name=m.name,
            path=str(path),
            size=m.size,
            digest=f"{m.digest_algorithm}:{m.digest}",
        )
    )
    return done


def _io_error(exc: OSError) -> str:
    return f"cannot check or repair: {exc.strerror or exc}"


def _check(
    path: Path,
    store: Path | None,
    repair: bool,
    fetch: Fetch | None,
    progress: Progress | None,
    reread: Progress | None,
) -> Checked:
    """Verify ``path``, and repair it in place.

    An I/O error (the disk full while a repair writes, a read error) leaves the
    replica *corrupt*, saying why, rather than raising: raised, it stopped a
    scrub for the whole site, its run left *interrupted* and the replicas after
    this one unchecked (chaos campaign seed 8: ``No space left on device``).
    """
    path = path.absolute()
    try:
        report = verify_file(path, store=store, progress=progress)
    except OSError as exc:
        return Checked(VerifyReport(path=str(path)), None, "corrupt", error=_io_error(exc))
    if report.ok:
        return Checked(report, None, "ok", report.bytes_read)
    if report.missing:
        return Checked(report, None, "missing", report.bytes_read)
    if not repair or report.manifest is None:
        return Checked(report, None, "corrupt", report.bytes_read)
    manifest_path = sidecar_paths(path, store)[0]
    try:
        fixed = repair_file(
            path,
            report.manifest,
            parity_path_of(report.manifest, manifest_path),
            report,
            fetch=fetch,
        )
        repaired = fixed.bytes_read + fixed.bytes_refetched  # this copy's, and the good copy's
        if reread is not None:
            reread(repaired)
        after = verify_file(path, store=store, progress=reread)
    except OSError as exc:
        return Checked(report, None, "corrupt", report.bytes_read, error=_io_error(exc))
    read = report.bytes_read + repaired + after.bytes_read
    return Checked(after, fixed, "repaired" if after.ok else "corrupt", read)


async def _rebuild(
    checked: Checked,
    path: Path,
    catalog: Catalog,
    name: str,
    store: Path | None,
    reread: Progress | None,
) -> Checked:
    """A damaged manifest over intact data: a new one from the data (see ``rebuild``)."""
    row = await catalog.file(name)
    if row is None:
        return checked
    manifest = await asyncio.to_thread(rebuild_manifest, path, row, store=store, progress=reread)
    if manifest is None:
        return checked
    await catalog.register_file(manifest)
    report = VerifyReport(
        path=str(path),
        manifest=manifest,
        size=manifest.size,
        digest_ok=True,
        bytes_read=manifest.size,
    )
    read = checked.bytes_read + manifest.size
    return Checked(report, None, "repaired", read, rebuilt=True)


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
    reread: Progress | None = None,
) -> Checked:
    """Verify ``path``; with ``repair``, fix it from parity (then ``fetch``); record it all.

    ``progress`` counts the bytes of the check, ``reread`` those read by
    the repair and the re-check. The outcome is recorded on the catalogued
    replica of ``name`` (else the manifest's name) at the recorder's site
    when that replica is this path: verifying never registers anything. With
    ``repair``, a damaged manifest is rebuilt from the data when the data has
    the catalogued digest.
    """
    checked = await asyncio.to_thread(_check, path, store, repair, fetch, progress, reread)
    path = Path(checked.report.path)
    m = checked.report.manifest
    name = name or (m.name if m is not None else path.name)
    catalog = recorder.catalog
    if catalog is not None:
        rows = await catalog.replicas(recorder.site, name=name, limit=1)
        checked.catalogued = bool(rows) and rows[0]["path"] == str(path)
    if (
        catalog is not None
        and checked.catalogued
        and repair
        and m is None
        and not checked.report.missing
        and checked.error is None
    ):
        checked = await _rebuild(checked, path, catalog, name, store, reread)
        checked.catalogued = True
    if checked.report.unmanifested and not checked.catalogued:
        checked.state = "unverified"  # nothing says what it should be: not damage
    report, m = checked.report, checked.report.manifest
    if catalog is not None and checked.catalogued:
        await _record_repairs(catalog, recorder.site, name, checked, source)
        # Only if still catalogued: verifying never registers anything (see set_replica).
        checked.catalogued = await catalog.set_replica(
            name,
            recorder.site,
            report.path,
            checked.state,
            digest=m.digest if m is not None else None,
            size=report.size,
            verified=True,
            detail="; ".join(checked.problems()) or None,
            create=False,
        )
    if checked.state == "unverified":
        return checked  # nothing was verified: nothing to announce
    kind = {
        "ok": IntegrityKind.VERIFIED,
        "repaired": IntegrityKind.REPAIRED,
        "missing": IntegrityKind.MISSING,
    }.get(checked.state, IntegrityKind.CORRUPT)
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
            detail="manifest rebuilt from intact data"
            if checked.rebuilt
            else "; ".join(checked.problems()) or None,
        )
    )
    return checked


async def _record_repairs(
    catalog: Catalog, site: str, name: str, checked: Checked, source: str | None
) -> None:
    path, fixed = checked.report.path, checked.repair
    if checked.rebuilt:
        await catalog.record_repair(
            path=path,
            method="manifest",
            blocks=[],
            nbytes=checked.report.size,
            name=name,
            site=site,
        )
    if fixed is None:
        return
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


async def refuse_known_bad(catalog: Catalog, src: str) -> None:
    """IntegrityError when the catalog has ``src`` as a corrupt or missing replica:
    copying it would spread the damage (or retransmit it in vain)."""
    local = Channel(src).local  # the path as transfers record it
    if local is None:
        return
    for row in await catalog.replicas_at(str(local)):
        if row["state"] in ("corrupt", "missing"):
            found = f": {row['detail']}" if row["detail"] else ""
            raise IntegrityError(
                f"source {src} is catalogued {row['state']} at {row['site']}{found}; not "
                f"transferred. Repair it first (`stalwart integrity verify {src} --repair`, or "
                f"`stalwart integrity scrub --site {row['site']}`), or transfer from another "
                "replica "
                f"(`stalwart integrity catalog replicas --name {row['name']}`)"
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

    Raises TransferFailed (after recording and announcing ``failed``), and
    IntegrityError without copying when the catalog knows the source is bad.
    """
    if recorder.catalog is not None and isinstance(src, str):
        await refuse_known_bad(recorder.catalog, src)
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
            event=IntegrityKind(result.outcome),
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
