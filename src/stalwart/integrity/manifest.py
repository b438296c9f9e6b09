"""The manifest: what a file must look like, block by block, and where its parity is.

A manifest is UTF-8 JSON (spec in ``docs/integrity.md``). It is versioned
(``format``/``version``) and carries its own checksum: the BLAKE3 of the
canonical JSON of every other field. A manifest whose checksum does not
match is *damaged* and is never trusted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

import blake3
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stalwart.envelope import utcnow
from stalwart.errors import IntegrityError

__all__ = [
    "FORMAT",
    "MANIFEST_SUFFIX",
    "PARITY_SUFFIX",
    "VERSION",
    "Manifest",
    "ManifestDamaged",
    "ParityInfo",
    "dump_manifest",
    "load_manifest",
    "parse_manifest",
    "seal_manifest",
    "sidecar_paths",
    "write_atomic",
]

FORMAT: Final = "stalwart.manifest"
VERSION: Final = 1
MANIFEST_SUFFIX: Final = ".stw-manifest.json"
PARITY_SUFFIX: Final = ".stw-parity"


class ManifestDamaged(IntegrityError):
    """A manifest is missing, unreadable or fails its own checksum."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ParityInfo(_Frozen):
    """Reed-Solomon parity: ``parity`` blocks for every stripe of ``data`` blocks."""

    scheme: str = "rs-zfec"
    data: int = Field(ge=1, le=200)
    parity: int = Field(ge=1, le=55)
    file: str
    digests: list[str]  # stripe-major: stripe s, parity p at index s * parity + p


class Manifest(_Frozen):
    """Everything needed to verify and repair one file."""

    format: str = FORMAT
    version: int = VERSION
    name: str
    size: int = Field(ge=0)
    created_at: datetime = Field(default_factory=utcnow)
    digest_algorithm: str
    digests: dict[str, str]  # algorithm -> hex; includes digest_algorithm
    block_size: int = Field(gt=0)
    block_algorithm: str
    blocks: list[str]
    parity: ParityInfo | None = None
    checksum: str = ""

    @property
    def digest(self) -> str:
        """The whole-file digest in the primary algorithm."""
        return self.digests[self.digest_algorithm]

    @property
    def block_count(self) -> int:
        return len(self.blocks)

    @property
    def stripe_count(self) -> int:
        if self.parity is None:
            return 0
        return -(-self.block_count // self.parity.data)

    def block_span(self, index: int) -> tuple[int, int]:
        """(offset, length) of block ``index`` in the file."""
        offset = index * self.block_size
        return offset, min(self.block_size, self.size - offset)

    def stripe_blocks(self, stripe: int) -> range:
        """Indices of the data blocks in ``stripe`` (empty without parity)."""
        if self.parity is None:
            return range(0)
        first = stripe * self.parity.data
        return range(first, min(first + self.parity.data, self.block_count))


def _canonical(manifest: Manifest) -> bytes:
    data = manifest.model_dump(mode="json", exclude={"checksum"})
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def seal_manifest(manifest: Manifest) -> Manifest:
    """The manifest with its self-checksum filled in."""
    checksum = "blake3:" + blake3.blake3(_canonical(manifest)).hexdigest()
    return manifest.model_copy(update={"checksum": checksum})


def dump_manifest(manifest: Manifest) -> bytes:
    """The manifest as pretty JSON bytes, sealed with its self-checksum."""
    sealed = seal_manifest(manifest)
    return json.dumps(sealed.model_dump(mode="json"), indent=1).encode() + b"\n"


def parse_manifest(raw: bytes, origin: str = "manifest") -> Manifest:
    """Parse and check a manifest; raise ManifestDamaged if anything is off."""
    hint = "re-fetch it from another replica or re-ingest the file from a known-good copy"
    try:
        manifest = Manifest.model_validate(json.loads(raw))
    except (UnicodeDecodeError, json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise ManifestDamaged(f"{origin} is unreadable ({first}); {hint}") from None
    if manifest.format != FORMAT or manifest.version > VERSION:
        raise ManifestDamaged(
            f"{origin} is {manifest.format} v{manifest.version}; this stalwart reads "
            f"{FORMAT} up to v{VERSION}: upgrade stalwart"
        )
    expected = "blake3:" + blake3.blake3(_canonical(manifest)).hexdigest()
    if manifest.checksum != expected:
        raise ManifestDamaged(f"{origin} fails its own checksum; {hint}")
    if manifest.digest_algorithm not in manifest.digests:
        raise ManifestDamaged(f"{origin} lacks its primary digest; {hint}")
    return manifest


def load_manifest(path: Path) -> Manifest:
    """Read and check the manifest at ``path``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestDamaged(
            f"cannot read manifest {path}: {exc.strerror}; "
            "run `stalwart integrity ingest` on the file"
        ) from None
    return parse_manifest(raw, str(path))


def sidecar_paths(file: Path, store: Path | None = None) -> tuple[Path, Path]:
    """(manifest path, parity path) for ``file``: beside it, or in the ``store`` directory."""
    base = (store / file.name) if store is not None else file
    return (
        base.with_name(base.name + MANIFEST_SUFFIX),
        base.with_name(base.name + PARITY_SUFFIX),
    )


def write_atomic(path: Path, chunks: Sequence[bytes]) -> None:
    """Write ``chunks`` to ``path`` through a temporary file, fsync, rename."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
