"""``stalwart integrity ingest|verify|transfer|serve|scrub|catalog``: data integrity."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stalwart.cli import _integrity_run as act
from stalwart.cli._common import ConfigOption, fail, run, settings_from
from stalwart.cli._params import MAX_COUNT, duration, rate, size
from stalwart.config import Settings
from stalwart.integrity.scrub import ScrubOptions
from stalwart.integrity.service import build_service
from stalwart.integrity.settings import IntegritySettings, integrity_settings
from stalwart.service import serve

__all__ = ["register"]

SiteOption = Annotated[
    str | None, typer.Option("--site", "-s", help="Site (default: settings.site).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


def _loaded(config: Path | None) -> tuple[Settings, IntegritySettings]:
    settings = settings_from(config)
    return settings, integrity_settings(settings)


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        help="Data integrity: ingest, verify, transfer, serve, scrub, catalog.\n\n"
        "Files get a manifest and parity once (ingest); every copy is then checked"
        " against them (verify, transfer, scrub) and recorded in the catalog.\n\n"
        "Example: stalwart integrity ingest products/ --site eu",
        no_args_is_help=True,
    )
    app.add_typer(group, name="integrity")

    @group.command("ingest")
    def ingest_cmd(
        files: Annotated[
            list[Path],
            typer.Argument(exists=True, help="Files to ingest; a directory: every file under it."),
        ],
        site: SiteOption = None,
        name: Annotated[
            str | None, typer.Option(help="Catalog name (one file only; default: its file name).")
        ] = None,
        block_size: Annotated[
            int | None, typer.Option(parser=size, metavar="SIZE", help="Block size, e.g. 4MiB.")
        ] = None,
        data: Annotated[
            int | None, typer.Option(min=1, max=255, help="Data blocks per stripe.")
        ] = None,
        parity: Annotated[
            int | None, typer.Option(min=0, max=255, help="Parity blocks per stripe (0: none).")
        ] = None,
        algorithm: Annotated[
            str | None,
            typer.Option(help="Whole-file digest (blake3, sha256, md5, adler32, crc32c)."),
        ] = None,
        also: Annotated[
            list[str] | None, typer.Option(help="Extra whole-file digests to record.")
        ] = None,
        parity_store: Annotated[
            Path | None,
            typer.Option(help="Directory for manifests and parity (default: beside the file)."),
        ] = None,
        force: Annotated[
            bool,
            typer.Option("--force", help="Re-ingest a catalogued file whose content has changed."),
        ] = False,
        config: ConfigOption = None,
    ) -> None:
        """Create each file's manifest and parity in one pass and register it in the catalog.

        A file the catalog has with another digest is refused unless --force.

        Example: stalwart integrity ingest products/ --site eu --also md5
        """
        if name and len(files) > 1:
            raise fail("--name applies to one file; ingest files one by one to name them")
        settings, isettings = _loaded(config)
        overrides = {
            "block_size": block_size,
            "data_blocks": data,
            "parity_blocks": parity,
            "algorithm": algorithm,
            "extra_algorithms": tuple(also) if also else None,
            "parity_store": parity_store,
        }
        refused = run(
            act.ingest(settings, isettings, site or settings.site, files, name, overrides, force)
        )
        if refused:
            raise typer.Exit(1)

    @group.command("verify")
    def verify_cmd(
        paths: Annotated[
            list[Path] | None,
            typer.Argument(
                help="Files or directories to verify (default: every replica of --site)."
            ),
        ] = None,
        site: Annotated[
            str | None,
            typer.Option(
                "--site", "-s", help="Site of the replicas (default: where the catalog has them)."
            ),
        ] = None,
        repair: Annotated[
            bool, typer.Option("--repair", help="Repair bad blocks from parity.")
        ] = False,
        parity_store: Annotated[
            Path | None, typer.Option(help="Where the manifests are (default: beside the files).")
        ] = None,
        as_json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Check files against their manifests and report bad blocks, parity and manifests.

        Exits 1 when anything is still damaged.

        Example: stalwart integrity verify /archive/eu/uid_A001.fits --repair
        """
        settings, isettings = _loaded(config)
        store = parity_store or isettings.parity_store
        if store is not None and not store.is_dir():
            raise fail(f"parity store {store} does not exist; check --parity-store or parity_store")
        bad = run(act.verify(settings, store, site, paths or [], repair, as_json))
        if bad:
            raise typer.Exit(1)

    @group.command("transfer")
    def transfer_cmd(
        src: Annotated[str, typer.Argument(help="Source path or fsspec URL.")],
        dst: Annotated[
            str, typer.Argument(help="Destination path or URL (a directory keeps the name).")
        ],
        site: SiteOption = None,
        retries: Annotated[
            int | None, typer.Option(min=0, max=100, help="Retransmissions before giving up.")
        ] = None,
        checksum: Annotated[
            bool,
            typer.Option("--checksum", help="Skip when DST verifies and has the source's digest."),
        ] = False,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Say what would be done; change nothing.")
        ] = False,
        config: ConfigOption = None,
    ) -> None:
        """Copy a file, verify it on the destination's disk, repair without retransmission.

        A source the catalog knows as corrupt or missing is refused.

        Example: stalwart integrity transfer /archive/jao/A001.fits /archive/eu/ -s eu --checksum
        """
        settings, isettings = _loaded(config)
        run(
            act.transfer(
                settings,
                isettings,
                site or settings.site,
                src,
                dst,
                retries,
                checksum=checksum,
                dry_run=dry_run,
            )
        )

    @group.command("scrub")
    def scrub_cmd(
        site: SiteOption = None,
        root: Annotated[
            Path | None,
            typer.Option(exists=True, file_okay=False, help="Site root, to report dark files."),
        ] = None,
        rate: Annotated[
            int | None,
            typer.Option(parser=rate, metavar="RATE", help="Read rate limit, e.g. 200MB/s."),
        ] = None,
        every: Annotated[
            float | None,
            typer.Option(
                parser=duration, metavar="DURATION", help="Scheduled mode: interval, e.g. 1d."
            ),
        ] = None,
        spread: Annotated[
            float, typer.Option(min=0.0, max=0.9, help="Random +/- fraction of the interval.")
        ] = 0.1,
        no_repair: Annotated[bool, typer.Option("--no-repair", help="Only report.")] = False,
        config: ConfigOption = None,
    ) -> None:
        """Re-verify every replica of a site (resumable, rate-limited), repair, report dark/missing.

        Example: stalwart integrity scrub --site eu --rate 200MB/s --every 1d --spread 0.1
        """
        settings, isettings = _loaded(config)
        site_name = site or settings.site
        options = ScrubOptions(
            site=site_name,
            root=root or isettings.root_of(site_name),
            rate=rate or isettings.scrub_rate,
            store=isettings.parity_store,
            repair=not no_repair,
            transfer=isettings.transfer_options(),
            home=settings.home,
        )
        code = run(act.scrub(settings, options, every, spread))
        if code:
            raise typer.Exit(code)

    @group.command("catalog")
    def catalog_cmd(
        what: Annotated[
            str, typer.Argument(help="files | replicas | transfers | repairs | scrubs")
        ] = "replicas",
        site: Annotated[
            str | None, typer.Option("--site", "-s", help="Only this site (not for files).")
        ] = None,
        name: Annotated[
            str | None,
            typer.Option("--name", "-n", help="Only names matching this glob (not for scrubs)."),
        ] = None,
        limit: Annotated[
            int, typer.Option(min=1, max=MAX_COUNT, help="At most this many rows.")
        ] = 100,
        as_json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Query the integrity catalog: files, replicas per site, transfers, repairs, scrub runs.

        Example: stalwart integrity catalog replicas --site eu --name 'uid_A001*' --json
        """
        if what not in act.COLUMNS:
            raise fail(f"unknown catalog table {what!r}: use one of {', '.join(act.COLUMNS)}")
        run(act.catalog(settings_from(config), what, site, name, limit, as_json))

    @group.command("serve")
    def serve_cmd(
        site: SiteOption = None,
        concurrency: Annotated[int, typer.Option(min=1, max=256, help="Transfers at once.")] = 2,
        chaos: Annotated[
            float,
            typer.Option(min=0.0, max=1.0, help="Demo: share of copies to corrupt on arrival."),
        ] = 0.0,
        config: ConfigOption = None,
    ) -> None:
        """Serve verified-transfer requests for a site from the bus (integrity.transfer.<site>).

        Example: stalwart integrity serve --site eu
        """
        settings = settings_from(config)
        service = build_service(site or settings.site, concurrency=concurrency, chaos=chaos)
        run(serve(service, settings))
