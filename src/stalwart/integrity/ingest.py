"""Ingest: create a file's manifest and parity in one streaming pass."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from stalwart.config import parse_size
from stalwart.errors import IntegrityError
from stalwart.integrity._pass import Progress, stream_pass
from stalwart.integrity._turns import taking_turns
from stalwart.integrity._writeback import WritebackSink
from stalwart.integrity.digests import (
    DEFAULT_BLOCK_ALGORITHM,
    DEFAULT_FILE_ALGORITHM,
    check_algorithm,
)
from stalwart.integrity.erasure import StripeCodec
from stalwart.integrity.manifest import (
    Manifest,
    ParityInfo,
    dump_manifest,
    seal_manifest,
    sidecar_paths,
    write_atomic,
)

__all__ = ["DEFAULT_BLOCK_SIZE", "IngestOptions", "Ingested", "ingest_file"]

DEFAULT_BLOCK_SIZE: Final = 4 * 1024 * 1024
_ALIGN: Final = 4096  # blocks stay page multiples (memory maps, direct reads)
# A stripe of data and parity blocks is held in memory by each worker.
MAX_BLOCK_SIZE: Final = 256 * 1024 * 1024


class IngestOptions(BaseModel):
    """How manifests and parity are made (the ``[integrity]`` table's ingest keys)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    block_size: int = Field(default=DEFAULT_BLOCK_SIZE, ge=_ALIGN, le=MAX_BLOCK_SIZE)
    data_blocks: int = Field(default=10, ge=1, le=200)
    parity_blocks: int = Field(default=2, ge=0, le=55)
    algorithm: str = DEFAULT_FILE_ALGORITHM
    extra_algorithms: tuple[str, ...] = ()
    block_algorithm: str = DEFAULT_BLOCK_ALGORITHM
    parity_store: Path | None = None
    workers: int = Field(default_factory=lambda: min(os.cpu_count() or 2, 8), ge=1)

    @field_validator("block_size", mode="before")
    @classmethod
    def _size(cls, value: object) -> object:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("algorithm", "block_algorithm")
    @classmethod
    def _algorithm(cls, value: str) -> str:
        return check_algorithm(value)

    def codec(self) -> StripeCodec | None:
        if self.parity_blocks == 0:
            return None
        return StripeCodec(self.data_blocks, self.parity_blocks, self.block_size)

    def fitted(self, size: int) -> IngestOptions:
        """These options for a file of ``size`` bytes: parity proportional to the data.

        Parity blocks are as large as data blocks, so a file smaller than one
        stripe (``data_blocks * block_size``) would get a fixed-size parity
        file (8 MiB for 10+2 of 4 MiB, whatever the file); its blocks shrink to
        a ``data_blocks``-th of it instead (page-aligned), so parity stays
        about ``parity_blocks / data_blocks`` of the file.
        """
        if size >= self.data_blocks * self.block_size:
            return self
        per_block = -(-max(size, 1) // self.data_blocks)
        fitted = -(-per_block // _ALIGN) * _ALIGN
        return self.model_copy(update={"block_size": min(fitted, self.block_size)})

    def algorithms(self) -> list[str]:
        names = [check_algorithm(self.algorithm)]
        names += [a for a in map(check_algorithm, self.extra_algorithms) if a not in names]
        return names


@dataclass(frozen=True, slots=True)
class Ingested:
    """Where ingest put things."""

    path: Path
    manifest: Manifest
    manifest_path: Path
    parity_path: Path | None


def ingest_file(
    path: Path,
    options: IngestOptions | None = None,
    *,
    name: str | None = None,
    progress: Progress | None = None,
    accept: Callable[[Manifest], None] | None = None,
) -> Ingested:
    """Hash, block-hash and parity-encode ``path`` in one pass; write the sidecars.

    ``accept`` sees the new manifest before any sidecar is replaced: raising
    there keeps the old ones. No temporary file outlives an error.
    Blocking: run it in a thread from async code.
    """
    opts = options or IngestOptions()
    path = path.absolute()
    if not path.is_file():
        raise IntegrityError(f"cannot ingest {path}: not a regular file; check the path")
    plan = _Plan.of(path, opts.fitted(path.stat().st_size))
    try:
        # Two ingests of one file write the same temporary parity: they take turns,
        # each renaming its parity and writing its manifest before the next begins.
        with taking_turns(plan.tmp_parity):
            try:
                manifest = _pass_and_parity(plan, name, progress, accept)
            finally:
                plan.tmp_parity.unlink(missing_ok=True)
            write_atomic(plan.manifest_path, [dump_manifest(manifest)])
    except OSError as exc:
        raise IntegrityError(f"cannot ingest {path}: {exc.strerror or exc}") from None
    return Ingested(path, manifest, plan.manifest_path, plan.parity_path if plan.codec else None)


@dataclass(frozen=True)
class _Plan:
    """What one ingest reads and writes, checked before any file is made."""

    path: Path
    opts: IngestOptions
    algorithms: list[str]
    block_algorithm: str
    codec: StripeCodec | None
    manifest_path: Path
    parity_path: Path

    @classmethod
    def of(cls, path: Path, opts: IngestOptions) -> _Plan:
        algorithms = opts.algorithms()  # an unknown --also fails before any file is made
        block_algorithm = check_algorithm(opts.block_algorithm)
        codec = opts.codec()
        manifest_path, parity_path = sidecar_paths(path, opts.parity_store)
        if opts.parity_store is not None:
            opts.parity_store.mkdir(parents=True, exist_ok=True)
        return cls(path, opts, algorithms, block_algorithm, codec, manifest_path, parity_path)

    @property
    def tmp_parity(self) -> Path:
        return self.parity_path.with_name(self.parity_path.name + ".tmp")


def _pass_and_parity(
    plan: _Plan,
    name: str | None,
    progress: Progress | None,
    accept: Callable[[Manifest], None] | None,
) -> Manifest:
    """The pass over the file; its parity, written through ``tmp_parity``, put in place."""
    opts, codec = plan.opts, plan.codec
    with open(plan.path, "rb", buffering=0) as reader, open(plan.tmp_parity, "wb") as parity_out:
        result = stream_pass(
            reader,
            block_size=opts.block_size,
            block_algorithm=plan.block_algorithm,
            file_algorithms=plan.algorithms,
            codec=codec,
            parity_sink=WritebackSink(parity_out),
            progress=progress,
            workers=opts.workers,
        )
        parity_out.flush()
        os.fsync(parity_out.fileno())
    parity = None
    if codec is not None:
        parity = ParityInfo(
            data=codec.data, parity=codec.parity, file=plan.parity_path.name, digests=result.parity
        )
    manifest = seal_manifest(
        Manifest(
            name=name or plan.path.name,
            size=result.size,
            digest_algorithm=plan.algorithms[0],
            digests=result.digests,
            block_size=opts.block_size,
            block_algorithm=plan.block_algorithm,
            blocks=result.blocks,
            parity=parity,
        )
    )
    if accept is not None:
        accept(manifest)
    if codec is not None:
        os.replace(plan.tmp_parity, plan.parity_path)
    return manifest
