"""The integrity commands end to end on real files, the embedded store and bus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from integrity_support import app, cli, damage, replicate, runner


def test_ingest_verify_transfer_scrub_catalog(config_file: Path, make_file, tmp_path: Path) -> None:
    # Given a file at jao
    path, data = make_file("jao")
    # When it is ingested with an extra md5, Then the catalog knows it
    out = cli(config_file, "ingest", str(path), "--site", "jao", "--also", "md5")
    assert "ingested" in out and "parity=4+2" in out
    files = json.loads(cli(config_file, "catalog", "files", "--json"))
    assert files[0]["name"] == "f.bin" and files[0]["size"] == len(data)
    # When it is verified, Then it is ok
    assert "ok" in cli(config_file, "verify", str(path), "--site", "jao")
    # When it is transferred to eu, Then a verified replica is catalogued
    out = cli(config_file, "transfer", str(path), str(tmp_path / "eu") + "/", "--site", "eu")
    assert "transferred" in out
    replicas = json.loads(cli(config_file, "catalog", "replicas", "--site", "eu", "--json"))
    assert replicas[0]["path"] == str(tmp_path / "eu" / "f.bin") and replicas[0]["state"] == "ok"
    # When the replica is damaged, Then verify fails, and verify --repair fixes it
    damage(tmp_path / "eu" / "f.bin", 3)
    out = json.loads(cli(config_file, "verify", "--site", "eu", "--json", code=1))
    assert out[0]["state"] == "corrupt" and "1 bad block(s): 3" in out[0]["problems"]
    out = json.loads(cli(config_file, "verify", "--site", "eu", "--repair", "--json"))
    assert out[0]["state"] == "repaired" and out[0]["repaired_blocks"] == 1
    assert (tmp_path / "eu" / "f.bin").read_bytes() == data
    # When eu is scrubbed with a stray file about, Then the dark file is reported
    (tmp_path / "eu" / "stray").write_bytes(b"?")
    out = cli(
        config_file, "scrub", "--site", "eu", "--root", str(tmp_path / "eu"), "--rate", "500MB/s"
    )
    assert "checked 1, ok 1" in out and "dark 1" in out and "stray" in out
    # And every table answers
    for table in ("transfers", "repairs", "scrubs"):
        assert json.loads(cli(config_file, "catalog", table, "--json"))
    assert "integrity transfers" in cli(config_file, "catalog", "transfers")


def test_scrub_exits_non_zero_when_something_stays_broken(config_file: Path, make_file) -> None:
    path, _ = make_file("jao")
    cli(config_file, "ingest", str(path), "--site", "jao")
    path.unlink()
    out = cli(config_file, "scrub", "--site", "jao", code=1)
    assert "missing 1" in out


def test_commands_work_and_say_so_without_a_bus(tmp_path: Path, make_file) -> None:
    # Given a configuration whose bus cannot be opened
    config = tmp_path / "nobus.toml"
    config.write_text(
        f'home = "{tmp_path / "home"}"\n[bus]\nurl = "sqlite:////proc/no-such-dir/bus.db"\n'
    )
    path, _ = make_file("x")
    # When a file is ingested, Then it works, and the user is told events were not sent
    result = runner.invoke(app, ["integrity", "ingest", str(path), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "ingested" in result.output
    assert "events will not be published: bus unreachable" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ingest", "/dev/null"], "not a regular file"),
        (["ingest", "x", "x", "--name", "y"], "--name applies to one file"),
        (["ingest", "x", "--block-size", "lots"], "cannot read size 'lots'"),
        (["ingest", "x", "--algorithm", "sha3"], "unknown digest algorithm"),
        (["catalog", "everything"], "unknown catalog table"),
        (["transfer", "/nonexistent/src", "/tmp/x"], "does not exist"),
        (["transfer", "/tmp", "/tmp/x"], "is a directory; transfer its files one by one"),
        (["verify", "--site", "nowhere"], "no replicas of site 'nowhere'"),
        (["ingest", "x", "--block-size", "1"], "block-size: Input should be greater than or"),
        (["verify", "x", "--parity-store", "/nonexistent/store"], "store does not exist"),
    ],
)
def test_bad_input_is_one_clear_line(config_file: Path, tmp_path: Path, args, message) -> None:
    (tmp_path / "x").write_bytes(b"x")
    result = runner.invoke(
        app,
        [
            "integrity",
            *[str(tmp_path / a) if a == "x" else a for a in args],
            "-c",
            str(config_file),
        ],
    )
    assert result.exit_code != 0
    assert message in result.output


def test_every_command_has_help_with_an_example() -> None:
    for command in ("ingest", "verify", "transfer", "scrub", "catalog", "serve"):
        result = runner.invoke(app, ["integrity", command, "--help"])
        assert result.exit_code == 0 and f"Example: stalwart integrity {command}" in result.output


def test_scrub_exits_zero_once_a_missing_file_is_restored(
    config_file: Path, make_file, tmp_path: Path
) -> None:
    # Given a file at jao replicated to eu, then deleted at eu
    path, data = make_file("jao")
    replicate(config_file, path).unlink()
    # When eu is scrubbed, Then it is restored, said so, and nothing stays missing: exit 0
    out = cli(config_file, "scrub", "--site", "eu")
    assert "missing 1" in out and f"restored {tmp_path / 'eu' / 'f.bin'}" in out
    assert (tmp_path / "eu" / "f.bin").read_bytes() == data


def test_directories_are_ingested_and_verified_recursively(config_file: Path, make_file) -> None:
    # Given a tree of files
    top, _ = make_file("tree", "a.bin")
    make_file("tree/sub", "b.bin")
    make_file("tree/sub/deeper", "c.bin")
    # When the directory is ingested, Then every file is, and no sidecar is taken for data
    out = cli(config_file, "ingest", str(top.parent))
    assert [line.split()[1] for line in out.splitlines() if line.startswith("ingested ")] == [
        str(top.parent / p) for p in ("a.bin", "sub/b.bin", "sub/deeper/c.bin")
    ]
    cli(config_file, "ingest", str(top.parent))  # again, unchanged: no refusal
    names = [r["name"] for r in json.loads(cli(config_file, "catalog", "files", "--json"))]
    assert names == ["a.bin", "b.bin", "c.bin"]
    # When it is verified, Then every file is, each on its catalogued replica
    rows = json.loads(cli(config_file, "verify", str(top.parent), "--json"))
    assert [(Path(r["path"]).name, r["state"], r["site"]) for r in rows] == [
        ("a.bin", "ok", "jao"),
        ("b.bin", "ok", "jao"),
        ("c.bin", "ok", "jao"),
    ]


def test_transfer_checksum_skips_identical_content_and_dry_run_changes_nothing(
    config_file: Path, make_file, tmp_path: Path
) -> None:
    path, _ = make_file("jao")
    cli(config_file, "ingest", str(path))
    eu = str(tmp_path / "eu") + "/"
    # A dry run says what it would do and does nothing
    out = cli(config_file, "transfer", str(path), eu, "--site", "eu", "--dry-run")
    assert f"would copy to {tmp_path / 'eu' / 'f.bin'}" in out
    assert not (tmp_path / "eu").exists()
    cli(config_file, "transfer", str(path), eu, "--site", "eu")
    moved = json.loads(cli(config_file, "catalog", "transfers", "--json"))
    # With --checksum, an identical destination is not copied again
    out = cli(config_file, "transfer", str(path), eu, "--site", "eu", "--checksum")
    assert "skipped" in out and "identical" in out
    assert json.loads(cli(config_file, "catalog", "transfers", "--json")) == moved
    # But a destination that differs is
    damage(tmp_path / "eu" / "f.bin", 1)
    out = cli(config_file, "transfer", str(path), eu, "--site", "eu", "--checksum")
    assert "transferred" in out
    assert len(json.loads(cli(config_file, "catalog", "transfers", "--json"))) == 2


def test_catalog_filters_by_name_and_site(config_file: Path, make_file, tmp_path: Path) -> None:
    for name in ("uid_A1.fits", "uid_A2.fits", "cal_B.fits"):
        path, _ = make_file("jao", name)
        cli(config_file, "ingest", str(path))
    cli(
        config_file,
        "transfer",
        str(tmp_path / "jao" / "uid_A2.fits"),
        str(tmp_path / "eu") + "/",
        "--site",
        "eu",
    )

    def names(*args: str) -> list[tuple[str, str]]:
        rows = json.loads(cli(config_file, "catalog", *args, "--json"))
        return [(r["name"], r.get("site", "")) for r in rows]

    assert names("files", "--name", "uid_*") == [("uid_A1.fits", ""), ("uid_A2.fits", "")]
    assert names("replicas", "--name", "uid_A?.fits", "--site", "eu") == [("uid_A2.fits", "eu")]
    assert names("replicas", "--name", "cal*") == [("cal_B.fits", "jao")]
    assert names("transfers", "--site", "jao") == []
    assert names("transfers", "--site", "eu", "--name", "uid_A2*") == [("uid_A2.fits", "eu")]
    assert names("replicas", "--name", "uid%") == []  # SQL wildcards are plain characters
