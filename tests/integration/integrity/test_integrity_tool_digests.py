"""Ingest digests agree with what the standard command-line tools print."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from integrity_support import BLOCK

from stalwart.integrity.ingest import IngestOptions, ingest_file


@pytest.mark.parametrize(
    ("tool", "algorithm"), [("b3sum", "blake3"), ("sha256sum", "sha256"), ("md5sum", "md5")]
)
def test_ingest_digests_agree_with_standard_tools(
    tool: str, algorithm: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    shared = request.config.pluginmanager.get_plugin(
        str(Path(__file__).resolve().parents[2] / "conftest.py")
    )
    shared.need(f"the {tool} command", shutil.which(tool) is not None)
    # Given a file of several stripes, When ingested with that algorithm recorded
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    options = IngestOptions(
        block_size=BLOCK, data_blocks=4, parity_blocks=2, extra_algorithms=("sha256", "md5")
    )
    manifest = ingest_file(path, options).manifest
    # Then the manifest's digest is what the standard tool prints
    out = subprocess.run([tool, str(path)], check=True, capture_output=True, text=True).stdout
    assert manifest.digests[algorithm] == out.split()[0]
    assert manifest.digests["md5"] == hashlib.md5(data).hexdigest()
