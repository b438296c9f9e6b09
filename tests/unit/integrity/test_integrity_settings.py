"""The ``[integrity]`` table: human sizes, validated algorithms, options derived from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from stalwart.config import load_settings, parse_size
from stalwart.errors import ConfigError
from stalwart.integrity.settings import integrity_settings


def _settings(tmp_path: Path, table: str):
    config = tmp_path / "stalwart.toml"
    config.write_text(table)
    return integrity_settings(load_settings(config, env={}))


def test_table_becomes_ingest_and_transfer_options(tmp_path: Path) -> None:
    # Given a table with human sizes and a site root
    isettings = _settings(
        tmp_path,
        '[integrity]\nblock_size = "1MiB"\nparity_blocks = 3\nalgorithm = "SHA256"\n'
        'extra_algorithms = ["md5"]\nscrub_rate = "200MB"\nretries = 1\n'
        'verify_from_disk = false\n[integrity.sites.eu]\nroot = "/archive/eu"\n',
    )
    # When options are derived, Then they carry the table's values (and overrides win)
    ingest = isettings.ingest_options(data_blocks=4)
    assert (ingest.block_size, ingest.parity_blocks, ingest.data_blocks) == (1024**2, 3, 4)
    assert ingest.algorithms() == ["sha256", "md5"]
    transfer = isettings.transfer_options(retries=None)
    assert transfer.retries == 1 and not transfer.verify_from_disk
    assert transfer.ingest.block_size == 1024**2
    assert isettings.scrub_rate == 200_000_000
    assert isettings.root_of("eu") == Path("/archive/eu") and isettings.root_of("na") is None


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('[integrity]\nalgorithm = "sha3"\n', "unknown digest algorithm"),
        ('[integrity]\nblock_size = "big"\n', "cannot read size"),
        ("[integrity]\nparity_blocks = 99\n", "invalid \\[integrity\\] settings"),
        ("[integrity]\nbogus = 1\n", "invalid \\[integrity\\] settings"),
        ('[integrity]\nblock_size = "100TiB"\n', "invalid \\[integrity\\] settings"),
    ],
)
def test_bad_table_is_a_config_error(tmp_path: Path, table: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _settings(tmp_path, table)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("4MiB", 4 * 1024**2),
        ("200MB/s", 200 * 1000**2),
        ("1.5k", 1500),
        ("65536", 65536),
        ("2 GiB", 2 * 1024**3),
        (7, 7),
    ],
)
def test_sizes(text: str | int, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "-1MB", "0", "12 parsecs"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_size(text)
