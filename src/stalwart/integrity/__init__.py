"""Data integrity: manifests, erasure-coded parity, verified transfers, catalog, scrubbing.

File-level work (blocking; run it in a thread from async code):
:func:`ingest_file`, :func:`verify_file`, :func:`repair_file`,
:func:`transfer_file`. Recorded and announced (async): :mod:`.ops`.
The catalog: :class:`Catalog` and :func:`summary` (the dashboard panel).
Scrubbing: :func:`scrub_site`. The transfer service: :mod:`.service`.
"""

from stalwart.integrity.catalog import Catalog, summary
from stalwart.integrity.ingest import IngestOptions, ingest_file
from stalwart.integrity.manifest import Manifest, ManifestDamaged, load_manifest
from stalwart.integrity.repair import RepairResult, repair_file
from stalwart.integrity.scrub import ScrubOptions, ScrubReport, scrub_site
from stalwart.integrity.settings import IntegritySettings, integrity_settings
from stalwart.integrity.transfer import (
    TransferFailed,
    TransferOptions,
    TransferResult,
    transfer_file,
)
from stalwart.integrity.verify import VerifyReport, verify_file

__all__ = [
    "Catalog",
    "IngestOptions",
    "IntegritySettings",
    "Manifest",
    "ManifestDamaged",
    "RepairResult",
    "ScrubOptions",
    "ScrubReport",
    "TransferFailed",
    "TransferOptions",
    "TransferResult",
    "VerifyReport",
    "ingest_file",
    "integrity_settings",
    "load_manifest",
    "repair_file",
    "scrub_site",
    "summary",
    "transfer_file",
    "verify_file",
]
