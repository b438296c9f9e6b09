"""The data files under a directory: what recursive commands and dark-file scans see.

Sidecars (manifests, parity) and temporary files are not data, and neither
is stalwart's own home directory (its store and bus), wherever it lies.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from stalwart.integrity.manifest import MANIFEST_SUFFIX, PARITY_SUFFIX

__all__ = ["SIDECARS", "data_files", "expand"]

SIDECARS: Final = (MANIFEST_SUFFIX, PARITY_SUFFIX, ".part", ".tmp")


def data_files(root: Path, skip: Path | None = None) -> list[Path]:
    """Every data file under ``root`` (absolute, sorted), not descending into ``skip``."""
    skipped = os.path.abspath(skip) if skip is not None else None
    out: list[Path] = []
    for folder, dirs, names in os.walk(os.path.abspath(root)):
        dirs[:] = sorted(d for d in dirs if os.path.join(folder, d) != skipped)
        out += [Path(folder, n) for n in sorted(names) if not n.endswith(SIDECARS)]
    return out


def expand(paths: Iterable[Path], skip: Path | None = None) -> list[Path]:
    """``paths``, absolute and normalised (as the catalog has them), with each
    directory replaced by the data files under it."""
    out: list[Path] = []
    for path in paths:
        out += data_files(path, skip) if path.is_dir() else [Path(os.path.abspath(path))]
    return out
