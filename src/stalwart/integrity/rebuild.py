"""Rebuild a lost or damaged manifest from data that is still intact.

The catalog keeps every file's whole-file digest. When the data on disk
still has that digest, the data is whole, and a manifest (and parity) made
afresh from it is as good as the lost one: one local read instead of a copy
of the file from another site.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stalwart.integrity._pass import Progress
from stalwart.integrity.ingest import IngestOptions, ingest_file
from stalwart.integrity.manifest import Manifest

__all__ = ["rebuild_manifest"]


class _Differs(Exception):
    """The data no longer has the catalogued digest: it is not rebuilt from."""


def rebuild_manifest(
    path: Path,
    catalogued: dict[str, Any],
    *,
    store: Path | None = None,
    progress: Progress | None = None,
) -> Manifest | None:
    """A new manifest (and parity) for ``path`` with the catalogued geometry, written
    only if the data has the catalogued digest; None (nothing written) otherwise.

    ``catalogued`` is the file's row of the catalog. Blocking.
    """
    parity = catalogued["parity_blocks"] or 0
    options = IngestOptions(
        block_size=catalogued["block_size"],
        data_blocks=catalogued["data_blocks"] or 1,
        parity_blocks=parity,
        algorithm=catalogued["algorithm"],
        parity_store=store,
    )

    def accept(manifest: Manifest) -> None:
        if (manifest.size, manifest.digest) != (catalogued["size"], catalogued["digest"]):
            raise _Differs

    try:
        done = ingest_file(path, options, name=catalogued["name"], progress=progress, accept=accept)
    except _Differs:
        return None
    return done.manifest
