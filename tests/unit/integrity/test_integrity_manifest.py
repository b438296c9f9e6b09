"""The manifest format: versioned, self-checksummed, never trusted when damaged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stalwart.integrity.ingest import IngestOptions, ingest_file
from stalwart.integrity.manifest import (
    FORMAT,
    ManifestDamaged,
    dump_manifest,
    load_manifest,
    parse_manifest,
    sidecar_paths,
)


def test_round_trip(make_file, options: IngestOptions) -> None:
    # Given an ingested file, When its manifest is read back
    path, data = make_file()
    done = ingest_file(path, options)
    loaded = load_manifest(done.manifest_path)
    # Then it is the same, and it describes the file
    assert loaded == done.manifest
    assert loaded.format == FORMAT and loaded.version == 1
    assert loaded.size == len(data) and loaded.block_count == 24 and loaded.stripe_count == 6
    assert loaded.parity is not None and len(loaded.parity.digests) == 12
    assert loaded.checksum.startswith("blake3:")


def test_any_edit_breaks_the_checksum(make_file, options: IngestOptions) -> None:
    path, _ = make_file()
    done = ingest_file(path, options)
    doc = json.loads(done.manifest_path.read_bytes())
    doc["size"] += 1
    with pytest.raises(ManifestDamaged, match="fails its own checksum"):
        parse_manifest(json.dumps(doc).encode())


def test_flipped_byte_is_detected(make_file, options: IngestOptions) -> None:
    path, _ = make_file()
    done = ingest_file(path, options)
    raw = bytearray(done.manifest_path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    with pytest.raises(ManifestDamaged):
        parse_manifest(bytes(raw))


def test_newer_version_is_refused(make_file, options: IngestOptions) -> None:
    path, _ = make_file()
    manifest = ingest_file(path, options).manifest.model_copy(update={"version": 99})
    with pytest.raises(ManifestDamaged, match="upgrade stalwart"):
        parse_manifest(dump_manifest(manifest))


def test_missing_manifest_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ManifestDamaged, match="stalwart integrity ingest"):
        load_manifest(tmp_path / "nothing.stw-manifest.json")


def test_parity_store_directory(make_file, options: IngestOptions, tmp_path: Path) -> None:
    # Given a parity store, When a file is ingested, Then its sidecars go there
    path, _ = make_file()
    store = tmp_path / "store"
    done = ingest_file(path, options.model_copy(update={"parity_store": store}))
    assert done.manifest_path == sidecar_paths(path, store)[0]
    assert done.manifest_path.parent == store and done.parity_path is not None
    assert done.parity_path.parent == store
    assert not sidecar_paths(path)[0].exists()
