"""Constants and helpers shared by the integrity integration tests and their conftest.

A module with its own name: ``from conftest import ...`` would resolve to
whichever directory's conftest pytest imported first.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from stalwart.cli import build_app

BLOCK = 64 * 1024  # small blocks keep the tests fast

runner = CliRunner()
app = build_app(["integrity"])


def cli(config: Path, *args: str, code: int = 0) -> str:
    """``stalwart integrity ARGS`` with ``config``: its output, once its status is ``code``."""
    result = runner.invoke(app, ["integrity", *args, "--config", str(config)])
    assert result.exit_code == code, result.output
    return result.output


def cli_json(config: Path, *args: str, code: int = 0) -> list[dict[str, Any]]:
    """The rows a command prints with ``--json`` (after any notes)."""
    out = cli(config, *args, "--json", code=code)
    rows: list[dict[str, Any]] = json.loads(out[out.index("[") :])
    return rows


def damage(path: Path, *blocks: int) -> None:
    """Overwrite a few bytes in each of ``blocks`` of ``path``."""
    with open(path, "r+b") as f:
        for b in blocks:
            f.seek(b * BLOCK + 11)
            f.write(b"\xde\xad")


def replicate(config: Path, path: Path, site: str = "eu") -> Path:
    """Ingest ``path`` and transfer it to a folder named after ``site`` beside its own."""
    cli(config, "ingest", str(path))
    folder = path.parent.parent / site
    cli(config, "transfer", str(path), f"{folder}/", "--site", site)
    return folder / path.name
