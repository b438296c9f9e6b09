"""What the catalog may be trusted with: results land on the replica they are about,
changed content is not re-ingested silently, damage gets advice, nothing is left
behind, and no command makes a stalwart home where none was asked for."""

from __future__ import annotations

from pathlib import Path

from integrity_support import app, cli, cli_json, damage, replicate, runner

from stalwart.integrity.manifest import MANIFEST_SUFFIX


def test_verify_records_on_the_replica_the_catalog_has(config_file: Path, make_file) -> None:
    # Given a file ingested at eu, while the configuration's site is jao
    path, _ = make_file("eu")
    cli(config_file, "ingest", str(path), "--site", "eu")
    # When it is verified without --site
    cli(config_file, "verify", str(path))
    # Then the result is on eu's replica, and no replica appeared at jao
    replicas = cli_json(config_file, "catalog", "replicas")
    assert [(r["site"], r["path"], r["state"]) for r in replicas] == [("eu", str(path), "ok")]


def test_paths_are_catalogued_normalised(config_file: Path, make_file) -> None:
    # Given a file ingested at eu through a roundabout path
    path, _ = make_file("eu")
    cli(config_file, "ingest", f"{path.parent}/../eu/./{path.name}", "--site", "eu")
    # When verified through its plain path, Then it is eu's replica
    assert cli_json(config_file, "verify", str(path))[0]["site"] == "eu"
    assert [r["path"] for r in cli_json(config_file, "catalog", "replicas")] == [str(path)]


def test_verify_asks_which_site_when_the_path_is_at_several(config_file: Path, make_file) -> None:
    # Given one path catalogued as the replica of two sites
    path, _ = make_file("shared")
    cli(config_file, "ingest", str(path), "--site", "eu")
    cli(config_file, "ingest", str(path), "--site", "na")
    # When it is verified without --site, Then it asks, listing the candidates
    out = cli(config_file, "verify", str(path), code=1)
    assert "catalogued at several sites: eu (f.bin), na (f.bin); choose one with --site" in out
    # And --site chooses
    rows = cli_json(config_file, "verify", str(path), "--site", "na")
    assert rows[0]["site"] == "na" and rows[0]["state"] == "ok"


def test_changed_content_is_not_re_ingested_without_force(config_file: Path, make_file) -> None:
    # Given an ingested file whose content then changes
    path, _ = make_file("jao")
    cli(config_file, "ingest", str(path))
    manifest = Path(str(path) + MANIFEST_SUFFIX)
    before = manifest.read_bytes()
    digest = cli_json(config_file, "catalog", "files")[0]["digest"]
    damage(path, 2)
    # When it is ingested again, Then it is refused, saying why and what to do
    out = cli(config_file, "ingest", str(path), code=1)
    assert "differs from 'f.bin' in the catalog" in out and "--force" in out
    # And neither the manifest nor the catalog changed
    assert manifest.read_bytes() == before
    assert cli_json(config_file, "catalog", "files")[0]["digest"] == digest
    # When forced, Then the new content is catalogued, and the replacement is told
    out = cli(config_file, "ingest", str(path), "--force")
    assert "f.bin was catalogued with other content" in out and "now replaced" in out
    assert cli_json(config_file, "catalog", "files")[0]["digest"] != digest


def test_unchanged_content_is_re_ingested_quietly(config_file: Path, make_file) -> None:
    path, _ = make_file("jao")
    cli(config_file, "ingest", str(path))
    assert "ingested" in cli(config_file, "ingest", str(path))


def test_ingest_with_an_unknown_digest_leaves_nothing(config_file: Path, make_file) -> None:
    path, _ = make_file("jao")
    result = runner.invoke(
        app, ["integrity", "ingest", str(path), "--also", "foo", "-c", str(config_file)]
    )
    assert result.exit_code != 0 and "unknown digest algorithm 'foo'" in result.output
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.bin"]


def test_verify_of_a_path_that_does_not_exist_says_so(config_file: Path, tmp_path: Path) -> None:
    out = cli(config_file, "verify", str(tmp_path / "nonexistent"), code=1)
    assert "no such file" in out and "manifest damaged" not in out


def test_verify_of_a_file_never_ingested_says_so(config_file: Path, make_file) -> None:
    path, _ = make_file("jao")
    rows = cli_json(config_file, "verify", str(path), code=1)
    assert rows[0]["state"] == "unverified" and rows[0]["site"] is None
    assert rows[0]["problems"] == "no manifest: never ingested, or its manifest was lost"
    assert rows[0]["hint"] == f"`stalwart integrity ingest {path}` records its checksums and parity"


def test_verify_repair_rebuilds_a_lost_manifest_of_intact_data(
    config_file: Path, make_file
) -> None:
    # Given a catalogued file whose manifest was deleted
    path, _ = make_file("jao")
    cli(config_file, "ingest", str(path))
    Path(str(path) + MANIFEST_SUFFIX).unlink()
    # When verified, Then it is damaged, and the hint says --repair can rebuild it
    rows = cli_json(config_file, "verify", str(path), code=1)
    assert rows[0]["state"] == "corrupt" and "--repair` rebuilds its manifest" in rows[0]["hint"]
    # When verified with --repair, Then the manifest is made again from the data
    rows = cli_json(config_file, "verify", str(path), "--repair")
    assert rows[0]["state"] == "repaired" and rows[0]["manifest_rebuilt"] is True
    assert cli_json(config_file, "verify", str(path))[0]["state"] == "ok"


def test_a_damaged_manifest_the_catalog_cannot_check_is_left_to_the_operator(
    tmp_path: Path, make_file
) -> None:
    # Given a file ingested with one home, then verified with another (no catalog of it)
    path, _ = make_file("jao")
    for home in ("one", "two"):
        (tmp_path / f"{home}.toml").write_text(f'home = "{tmp_path / home}"\n')
    cli(tmp_path / "one.toml", "ingest", str(path))
    manifest = Path(str(path) + MANIFEST_SUFFIX)
    manifest.write_bytes(manifest.read_bytes()[:-9] + b"garbage}\n")
    # When repaired there, Then nothing is rebuilt, and the hint says what would do it
    rows = cli_json(tmp_path / "two.toml", "verify", str(path), "--repair", code=1)
    assert rows[0]["state"] == "corrupt" and rows[0]["manifest_rebuilt"] is False
    assert rows[0]["hint"].endswith(f"`stalwart integrity ingest {path}` makes a new one")


def test_verify_of_a_catalogued_replica_gone_from_disk(config_file: Path, make_file) -> None:
    path, _ = make_file("jao")
    cli(config_file, "ingest", str(path))
    path.unlink()
    rows = cli_json(config_file, "verify", str(path), code=1)
    assert rows[0]["state"] == "missing" and rows[0]["problems"] == "no such file"


def test_damage_beyond_parity_says_how_to_repair_it(
    config_file: Path, make_file, tmp_path: Path
) -> None:
    # Given a file at jao replicated to eu, and eu's copy damaged beyond its parity
    path, data = make_file("jao")
    copy = replicate(config_file, path)
    damage(copy, 4, 5, 6)
    # When verify --repair cannot repair it
    out = cli(config_file, "verify", str(copy), "--repair", code=1)
    # Then it says which command repairs it from the other replica
    assert f"stalwart integrity scrub --site eu` repairs it from the replica at jao ({path})" in out
    # And that command does
    assert "repaired 1" in cli(config_file, "scrub", "--site", "eu")
    assert copy.read_bytes() == data


def test_a_known_bad_source_is_not_transferred(
    config_file: Path, make_file, tmp_path: Path
) -> None:
    # Given a replica the catalog knows is corrupt
    path, _ = make_file("jao")
    cli(config_file, "ingest", str(path))
    damage(path, 1, 2, 3)
    cli(config_file, "verify", str(path), code=1)
    # When it is transferred, Then it is refused with what to do instead; nothing is copied
    out = cli(config_file, "transfer", str(path), str(tmp_path / "eu") + "/", code=1)
    assert "is catalogued corrupt at jao" in out and "verify" in out and "--repair" in out
    assert not (tmp_path / "eu").exists()
    assert cli_json(config_file, "catalog", "transfers") == []


def test_read_only_commands_make_no_home(tmp_path: Path, make_file) -> None:
    # Given a configuration whose home does not exist yet
    home = tmp_path / "fresh"
    config = tmp_path / "fresh.toml"
    config.write_text(f'home = "{home}"\n')
    path, _ = make_file("x")
    # When the catalog is listed, Then it says where it looked, and creates nothing
    out = cli(config, "catalog", "files", code=1)
    assert f"no integrity catalog at {home / 'store.db'}" in out and str(home) in out
    # When a file with no manifest is verified, Then it is reported, recording nothing
    out = cli(config, "verify", str(path), code=1)
    assert "nothing is recorded" in out and "unverified" in out
    # When there is nothing to scrub either, or a transfer is only planned
    assert "no integrity catalog" in cli(config, "scrub", code=1)
    assert "would copy to" in cli(config, "transfer", str(path), f"{tmp_path}/y/", "--dry-run")
    assert not home.exists() and not (tmp_path / "y").exists()
    # When something is written, Then the new home is announced
    assert f"new integrity catalog at {home / 'store.db'}" in cli(config, "ingest", str(path))
    assert home.is_dir()


def test_scrub_does_not_report_its_own_home_as_dark(tmp_path: Path, make_file) -> None:
    # Given a home inside the site's root
    root = tmp_path / "archive"
    config = tmp_path / "inside.toml"
    config.write_text(f'home = "{root / ".stalwart"}"\n')
    path, _ = make_file("archive")
    cli(config, "ingest", str(path))
    # When the root is scrubbed, Then the store and bus are not dark files
    out = cli(config, "scrub", "--root", str(root))
    assert "dark 0" in out


def test_a_site_without_replicas_is_named_with_the_sites_that_have_some(
    config_file: Path, make_file
) -> None:
    path, _ = make_file("jao")
    cli(config_file, "ingest", str(path))
    for command in ("scrub", "verify"):
        out = cli(config_file, command, "--site", "nowhere", code=1)
        assert "no replicas of site 'nowhere' in the catalog (sites with replicas: jao)" in out
    assert cli_json(config_file, "catalog", "scrubs") == []  # no empty run was recorded


def test_brackets_in_names_are_printed_as_they_are(config_file: Path, make_file) -> None:
    path, _ = make_file("jao", "u[1].b")
    assert f"ingested {path} " in cli(config_file, "ingest", str(path))
    assert "│ u[1].b " in cli(config_file, "catalog", "files")


def test_the_default_home_is_named_with_how_it_was_chosen(tmp_path: Path, monkeypatch) -> None:
    # Given no configuration at all, in some directory
    monkeypatch.chdir(tmp_path)
    for var in ("STALWART_CONFIG", "STALWART_HOME", "STALWART_STORE_URL"):
        monkeypatch.delenv(var, raising=False)
    # When the catalog is asked for, Then the answer says which home and why
    result = runner.invoke(app, ["integrity", "catalog"])
    assert result.exit_code == 1
    assert (
        f"stalwart home {tmp_path / '.stalwart'} (the default: .stalwart in the working directory"
        in result.output
    )
    assert not (tmp_path / ".stalwart").exists()
