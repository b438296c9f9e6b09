"""Verify a file (and its parity) against its manifest, block by block."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from stalwart.integrity._pass import Progress, stream_pass
from stalwart.integrity.manifest import Manifest, ManifestDamaged, load_manifest, sidecar_paths

__all__ = [
    "VerifyReport",
    "parity_path_of",
    "ranges",
    "verify_file",
    "verify_parity",
    "verify_size",
    "verify_stream",
]


@dataclass(slots=True)
class VerifyReport:
    """What verification found. ``ok`` only when everything matches."""

    path: str
    manifest: Manifest | None = None
    manifest_error: str | None = None
    size: int = 0
    bad_blocks: list[int] = field(default_factory=list)
    extra_bytes: int = 0
    digest_ok: bool = False
    bad_parity: list[int] = field(default_factory=list)
    bytes_read: int = 0
    missing: bool = False  # the file itself is not there
    unmanifested: bool = False  # the file is, its manifest is not

    @property
    def data_ok(self) -> bool:
        return (
            self.manifest is not None
            and not self.bad_blocks
            and self.extra_bytes == 0
            and self.digest_ok
        )

    @property
    def ok(self) -> bool:
        return self.data_ok and not self.bad_parity

    def problems(self) -> list[str]:
        """Human-readable findings, empty when ``ok``."""
        if self.missing:
            return ["no such file"]
        out: list[str] = []
        if self.unmanifested:
            out.append("no manifest: never ingested, or its manifest was lost")
        elif self.manifest_error:
            out.append(f"manifest damaged: {self.manifest_error}")
        if self.bad_blocks:
            out.append(f"{len(self.bad_blocks)} bad block(s): {ranges(self.bad_blocks)}")
        if self.extra_bytes:
            out.append(f"{self.extra_bytes} byte(s) appended after the end")
        if self.manifest is not None and not self.bad_blocks and not self.digest_ok:
            out.append("whole-file digest mismatch")
        if self.bad_parity:
            out.append(f"{len(self.bad_parity)} bad parity block(s): {ranges(self.bad_parity)}")
        return out


def ranges(indices: list[int]) -> str:
    """Sorted indices as short ranges: ``3,7-9``."""
    parts: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts)


def verify_stream(
    reader: BinaryIO,
    manifest: Manifest,
    report: VerifyReport,
    *,
    progress: Progress | None = None,
    workers: int = 2,
) -> None:
    """Check the data read from ``reader`` against ``manifest``; fill ``report``."""
    seen = stream_pass(
        reader,
        limit=manifest.size,
        block_size=manifest.block_size,
        block_algorithm=manifest.block_algorithm,
        file_algorithms=[manifest.digest_algorithm],
        stripe_blocks=manifest.parity.data if manifest.parity else 10,
        progress=progress,
        workers=workers,
    )
    report.bytes_read += seen.size
    report.bad_blocks = [
        i
        for i, expected in enumerate(manifest.blocks)
        if i >= len(seen.blocks) or seen.blocks[i] != expected
    ]
    report.digest_ok = (
        seen.size == manifest.size and seen.digests[manifest.digest_algorithm] == manifest.digest
    )


def parity_path_of(manifest: Manifest, manifest_path: Path) -> Path | None:
    """Where the manifest says its parity file is (relative to the manifest)."""
    if manifest.parity is None:
        return None
    return manifest_path.parent / manifest.parity.file


def verify_parity(
    path: Path | None,
    manifest: Manifest,
    report: VerifyReport,
    *,
    progress: Progress | None = None,
) -> None:
    """Check the parity file at ``path`` block by block; fill ``report.bad_parity``."""
    if path is None or manifest.parity is None:
        return
    expected = manifest.parity.digests
    try:
        with open(path, "rb", buffering=0) as reader:
            seen = stream_pass(
                reader,
                block_size=manifest.block_size,
                block_algorithm=manifest.block_algorithm,
                file_algorithms=[],
                stripe_blocks=manifest.parity.parity * 4,
                progress=progress,
            )
    except FileNotFoundError:
        report.bad_parity = list(range(len(expected)))
        return
    report.bytes_read += seen.size
    report.bad_parity = [
        i for i, d in enumerate(expected) if i >= len(seen.blocks) or seen.blocks[i] != d
    ]
    if seen.size != len(expected) * manifest.block_size and not report.bad_parity:
        report.bad_parity = [len(expected) - 1]


def verify_file(
    path: Path,
    *,
    manifest_path: Path | None = None,
    store: Path | None = None,
    check_parity: bool = True,
    progress: Progress | None = None,
) -> VerifyReport:
    """Verify ``path`` against its manifest (beside it, in ``store``, or given).

    Never raises for damage: damage is what the report is for. ``progress``
    counts every byte read, the parity file's too (see :func:`verify_size`).
    Blocking.
    """
    report = VerifyReport(path=str(path))
    mpath = manifest_path or sidecar_paths(path, store)[0]
    try:
        manifest = load_manifest(mpath)
    except ManifestDamaged as exc:
        report.missing = not path.exists()
        report.unmanifested = not report.missing and not mpath.exists()
        report.manifest_error = None if report.missing else str(exc)
        return report
    report.manifest = manifest
    try:
        with open(path, "rb", buffering=0) as reader:
            report.size = os.fstat(reader.fileno()).st_size
            verify_stream(reader, manifest, report, progress=progress)
    except FileNotFoundError:
        report.missing = True
        report.bad_blocks = list(range(manifest.block_count))
        return report
    report.extra_bytes = max(report.size - manifest.size, 0)
    if check_parity:
        verify_parity(parity_path_of(manifest, mpath), manifest, report, progress=progress)
    return report


def verify_size(path: Path, store: Path | None = None) -> int | None:
    """Bytes that verifying ``path`` reads (the file and its parity), for a progress bar."""
    total = 0
    for part in (path, sidecar_paths(path, store)[1]):
        try:
            total += part.stat().st_size
        except OSError:
            if part == path:
                return None
    return total
