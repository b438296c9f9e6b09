"""The integrity commands end to end on real files, the embedded store and bus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from integrity_support import BLOCK
from typer.testing import CliRunner

from stalwart.cli import build_app

runner = CliRunner()
app = build_app(["integrity"])


def _run(config: Path, *args: str, code: int = 0) -> str:
    result = runner.invoke(app, [*args, "--config", str(config)])
    assert result.exit_code == code, result.output
    return result.output


def _damage(path: Path, *blocks: int) -> None:
    with open(path, "r+b") as f:
        for b in blocks:
            f.seek(b * BLOCK)
            f.write(b"\xff\x00\xff")


def test_ingest_verify_transfer_scrub_catalog(config_file: Path, make_file, tmp_path: Path) -> None:
    # Given a file at jao
    path, data = make_file("jao")
    # When it is ingested with an extra md5, Then the catalog knows it
    out = _run(config_file, "ingest", str(path), "--site", "jao", "--also", "md5")
    assert "ingested" in out and "parity=4+2" in out
    files = json.loads(_run(config_file, "catalog", "files", "--json"))
    assert files[0]["name"] == "f.bin" and files[0]["size"] == len(data)
    # When it is verified, Then it is ok
    assert "ok" in _run(config_file, "verify", str(path), "--site", "jao")
    # When it is transferred to eu, Then a verified replica is catalogued
    out = _run(config_file, "transfer", str(path), str(tmp_path / "eu") + "/", "--site", "eu")
    assert "transferred" in out
    replicas = json.loads(_run(config_file, "catalog", "replicas", "--site", "eu", "--json"))
    assert replicas[0]["path"] == str(tmp_path / "eu" / "f.bin") and replicas[0]["state"] == "ok"
    # When the replica is damaged, Then verify fails, and verify --repair fixes it
    _damage(tmp_path / "eu" / "f.bin", 3)
    out = json.loads(_run(config_file, "verify", "--site", "eu", "--json", code=1))
    assert out[0]["state"] == "corrupt" and "1 bad block(s): 3" in out[0]["problems"]
    out = json.loads(_run(config_file, "verify", "--site", "eu", "--repair", "--json"))
    assert out[0]["state"] == "repaired" and out[0]["repaired_blocks"] == 1
    assert (tmp_path / "eu" / "f.bin").read_bytes() == data
    # When eu is scrubbed with a stray file about, Then the dark file is reported
    (tmp_path / "eu" / "stray").write_bytes(b"?")
    out = _run(
        config_file, "scrub", "--site", "eu", "--root", str(tmp_path / "eu"), "--rate", "500MB/s"
    )
    assert "checked 1, ok 1" in out and "dark 1" in out and "stray" in out
    # And every table answers
    for table in ("transfers", "repairs", "scrubs"):
        assert json.loads(_run(config_file, "catalog", table, "--json"))
    assert "integrity transfers" in _run(config_file, "catalog", "transfers")


def test_scrub_exits_non_zero_when_something_stays_broken(config_file: Path, make_file) -> None:
    path, _ = make_file("jao")
    _run(config_file, "ingest", str(path), "--site", "jao")
    path.unlink()
    out = _run(config_file, "scrub", "--site", "jao", code=1)
    assert "missing 1" in out


def test_commands_work_and_say_so_without_a_bus(tmp_path: Path, make_file) -> None:
    # Given a configuration whose bus cannot be opened
    config = tmp_path / "nobus.toml"
    config.write_text(
        f'home = "{tmp_path / "home"}"\n[bus]\nurl = "sqlite:////proc/no-such-dir/bus.db"\n'
    )
    path, _ = make_file("x")
    # When a file is ingested, Then it works, and the user is told events were not sent
    result = runner.invoke(app, ["ingest", str(path), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "ingested" in result.output
    assert "events will not be published: bus unreachable" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "missing.bin"], "not a regular file"),
        (["ingest", "a", "b", "--name", "x"], "--name applies to one file"),
        (["ingest", "x", "--block-size", "lots"], "cannot read size 'lots'"),
        (["ingest", "x", "--algorithm", "sha3"], "unknown digest algorithm"),
        (["catalog", "everything"], "unknown catalog table"),
        (["transfer", "/nonexistent/src", "/tmp/x"], "does not exist"),
        (["verify", "--site", "nowhere"], "no replicas of site 'nowhere'"),
    ],
)
def test_bad_input_is_one_clear_line(config_file: Path, tmp_path: Path, args, message) -> None:
    (tmp_path / "x").write_bytes(b"x")
    result = runner.invoke(
        app, [*[str(tmp_path / a) if a == "x" else a for a in args], "--config", str(config_file)]
    )
    assert result.exit_code != 0
    assert message in result.output


def test_every_command_has_help_with_an_example() -> None:
    for command in ("ingest", "verify", "transfer", "scrub", "catalog", "transfer-service"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0 and "Example: stalwart" in result.output
