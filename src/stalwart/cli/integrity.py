"""``stalwart ingest|verify|transfer|scrub|catalog|transfer-service``: data integrity."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from stalwart.cli._common import (
    ConfigOption,
    console,
    err_console,
    fail,
    handle_errors,
    run,
    settings_from,
)
from stalwart.cli._integrity_view import byte_bar, human, print_rows
from stalwart.config import Settings, parse_size
from stalwart.integrity import ops
from stalwart.integrity.catalog import Catalog
from stalwart.integrity.channels import open_channel
from stalwart.integrity.events import EventPublisher
from stalwart.integrity.scrub import ScrubOptions, ScrubReport, scrub_forever, scrub_site
from stalwart.integrity.service import build_service
from stalwart.integrity.settings import IntegritySettings, integrity_settings
from stalwart.service import parse_ttl

__all__ = ["register"]

SiteOption = Annotated[
    str | None, typer.Option("--site", "-s", help="Site (default: settings.site).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]


@asynccontextmanager
async def _recorder(settings: Settings, site: str) -> AsyncIterator[tuple[ops.Recorder, Catalog]]:
    """Catalog + event publisher for one command; says so when the bus is unreachable."""
    catalog = await Catalog.open(settings.store.url)
    try:
        async with EventPublisher.for_settings(settings, site) as events:
            if events.unavailable:
                err_console.print(
                    f"[yellow]note:[/] {events.unavailable}: sys.integrity events are not "
                    "published; the catalog is still updated",
                    highlight=False,
                )
            yield ops.Recorder(site=site, catalog=catalog, emit=events.publish), catalog
    finally:
        await catalog.close()


def _loaded(config: Path | None) -> tuple[Settings, IntegritySettings]:
    settings = settings_from(config)
    return settings, integrity_settings(settings)


def _sizes(block_size: str | None) -> int | None:
    return parse_size(block_size) if block_size else None


async def _ingest(
    settings: Settings,
    isettings: IntegritySettings,
    site: str,
    files: list[Path],
    name: str | None,
    overrides: dict[str, Any],
) -> None:
    options = isettings.ingest_options(**overrides)
    async with _recorder(settings, site) as (recorder, _):
        with byte_bar() as bar:
            for path in files:
                bar.start(f"ingest {path.name}", path.stat().st_size if path.is_file() else None)
                done = await ops.ingest(path, recorder, options, name=name, progress=bar.advance)
                m = done.manifest
                stripe = f"{m.parity.data}+{m.parity.parity}" if m.parity else "none"
                console.print(
                    f"[green]ingested[/] {path} {human(m.size)} {m.digest_algorithm}:{m.digest} "
                    f"blocks={m.block_count} parity={stripe}",
                    highlight=False,
                )


async def _verify(
    settings: Settings,
    store: Path | None,
    site: str,
    paths: list[Path],
    repair: bool,
    as_json: bool,
) -> int:
    bad = 0
    async with _recorder(settings, site) as (recorder, catalog):
        if not paths:
            paths = [Path(r["path"]) for r in await catalog.replicas(site, limit=10**9)]
            if not paths:
                raise fail(f"no replicas of site {site!r} in the catalog; ingest files first")
        rows = []
        with byte_bar() as bar:
            for path in paths:
                bar.start(f"verify {path.name}", path.stat().st_size if path.is_file() else None)
                checked = await ops.verify(
                    path,
                    recorder,
                    store=store,
                    repair=repair,
                    progress=bar.advance,
                )
                bad += checked.state not in ("ok", "repaired")
                problems = "; ".join(checked.report.problems())
                fixed = checked.repair
                rows.append(
                    {
                        "path": str(path),
                        "state": checked.state,
                        "problems": problems or None,
                        "repaired_blocks": len(fixed.from_parity) if fixed else 0,
                    }
                )
    print_rows("verify", rows, ["path", "state", "problems", "repaired_blocks"], as_json)
    return bad


async def _transfer(
    settings: Settings,
    isettings: IntegritySettings,
    site: str,
    src: str,
    dst: str,
    retries: int | None,
) -> None:
    options = isettings.transfer_options(retries=retries)
    async with _recorder(settings, site) as (recorder, _):
        with byte_bar() as bar:
            bar.start(f"transfer {Path(src).name}", await asyncio.to_thread(_size_of, src))
            result = await ops.transfer(src, dst, recorder, options, progress=bar.advance)
    console.print(
        f"[green]{result.outcome}[/] {result.src} -> {result.dst} {human(result.size)} "
        f"in {result.seconds:.2f}s; moved {human(result.bytes_moved)}, re-fetched "
        f"{human(result.bytes_refetched)}, retransmitted {human(result.bytes_retransmitted)}, "
        f"blocks repaired {result.blocks_repaired}",
        highlight=False,
    )


def _size_of(url: str) -> int | None:
    """The source's size for the progress bar, when it is cheap to know."""
    channel = open_channel(url)
    try:
        return channel.size() if channel.local is not None else None
    except OSError:
        return None


def _print_scrub(report: ScrubReport) -> None:
    c = report.counts
    console.print(
        f"scrub run {report.run_id}{' (resumed)' if report.resumed else ''}"
        f"{' interrupted' if report.interrupted else ''}: checked {c.checked}, ok {c.ok}, "
        f"repaired {c.repaired}, corrupt {c.corrupt}, missing {c.missing}, dark {c.dark}, "
        f"read {human(c.bytes_read)}",
        highlight=False,
    )
    for label, items in (
        ("corrupt", report.corrupt),
        ("missing", report.missing),
        ("dark", report.dark),
    ):
        for item in items:
            console.print(f"  [red]{label}[/] {item}", highlight=False)


async def _scrub(
    settings: Settings, options: ScrubOptions, every: float | None, spread: float
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with _recorder(settings, options.site) as (recorder, catalog):
            if every is not None:
                await scrub_forever(
                    catalog,
                    recorder,
                    options,
                    every=every,
                    spread=spread,
                    stop=stop,
                    on_report=_print_scrub,
                )
                return 0
            with byte_bar() as bar:
                bar.start(f"scrub {options.site}", None)
                report = await scrub_site(
                    catalog, recorder, options, progress=bar.advance, stop=stop
                )
            _print_scrub(report)
            return 1 if report.corrupt or report.missing else 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


_CATALOG_COLUMNS = {
    "files": ["name", "size", "algorithm", "digest", "blocks", "parity_blocks", "updated_at"],
    "replicas": ["name", "site", "state", "path", "size", "verified_at", "detail"],
    "transfers": [
        "id",
        "name",
        "site",
        "outcome",
        "size",
        "bytes_moved",
        "bytes_refetched",
        "bytes_retransmitted",
        "blocks_repaired",
        "attempts",
        "finished_at",
    ],
    "repairs": ["id", "name", "site", "method", "blocks", "bytes", "source", "at"],
    "scrubs": [
        "id",
        "site",
        "state",
        "checked",
        "ok",
        "repaired",
        "corrupt",
        "missing",
        "dark",
        "bytes_read",
        "started_at",
        "finished_at",
    ],
}


async def _catalog(
    settings: Settings, what: str, site: str | None, limit: int, as_json: bool
) -> None:
    catalog = await Catalog.open(settings.store.url)
    try:
        if what == "replicas":
            rows = await catalog.replicas(site, limit=limit)
        else:
            rows = await getattr(catalog, what)(limit)
    finally:
        await catalog.close()
    print_rows(f"integrity {what}", rows, _CATALOG_COLUMNS[what], as_json)


def register(app: typer.Typer) -> None:
    @app.command("ingest")
    @handle_errors
    def ingest_cmd(
        files: Annotated[list[Path], typer.Argument(help="Files to ingest.")],
        site: SiteOption = None,
        name: Annotated[
            str | None, typer.Option(help="Catalog name (one file only; default: its file name).")
        ] = None,
        block_size: Annotated[str | None, typer.Option(help="Block size, e.g. 4MiB.")] = None,
        data: Annotated[int | None, typer.Option(help="Data blocks per stripe.")] = None,
        parity: Annotated[
            int | None, typer.Option(help="Parity blocks per stripe (0: none).")
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
        config: ConfigOption = None,
    ) -> None:
        """Create each file's manifest and parity in one pass and register it in the catalog.

        Example: stalwart ingest products/*.fits --site eu --also md5
        """
        if name and len(files) > 1:
            raise fail("--name applies to one file; ingest files one by one to name them")
        settings, isettings = _loaded(config)
        overrides = {
            "block_size": _sizes(block_size),
            "data_blocks": data,
            "parity_blocks": parity,
            "algorithm": algorithm,
            "extra_algorithms": tuple(also) if also else None,
            "parity_store": parity_store,
        }
        run(_ingest(settings, isettings, site or settings.site, files, name, overrides))

    @app.command("verify")
    @handle_errors
    def verify_cmd(
        paths: Annotated[
            list[Path] | None,
            typer.Argument(help="Files to verify (default: every replica of --site)."),
        ] = None,
        site: SiteOption = None,
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

        Example: stalwart verify /archive/eu/uid_A001.fits --repair
        """
        settings, isettings = _loaded(config)
        store = parity_store or isettings.parity_store
        bad = run(_verify(settings, store, site or settings.site, paths or [], repair, as_json))
        if bad:
            raise typer.Exit(1)

    @app.command("transfer")
    @handle_errors
    def transfer_cmd(
        src: Annotated[str, typer.Argument(help="Source path or fsspec URL.")],
        dst: Annotated[
            str, typer.Argument(help="Destination path or URL (a directory keeps the name).")
        ],
        site: SiteOption = None,
        retries: Annotated[
            int | None, typer.Option(help="Retransmissions before giving up.")
        ] = None,
        config: ConfigOption = None,
    ) -> None:
        """Copy a file, verify it on the destination's disk, repair without retransmission.

        Example: stalwart transfer /archive/jao/uid_A001.fits /archive/eu/ --site eu
        """
        settings, isettings = _loaded(config)
        run(_transfer(settings, isettings, site or settings.site, src, dst, retries))

    @app.command("scrub")
    @handle_errors
    def scrub_cmd(
        site: SiteOption = None,
        root: Annotated[Path | None, typer.Option(help="Site root, to report dark files.")] = None,
        rate: Annotated[str | None, typer.Option(help="Read rate limit, e.g. 200MB/s.")] = None,
        every: Annotated[
            str | None, typer.Option(help="Scheduled mode: interval, e.g. 1d.")
        ] = None,
        spread: Annotated[
            float, typer.Option(min=0.0, max=0.9, help="Random +/- fraction of the interval.")
        ] = 0.1,
        no_repair: Annotated[bool, typer.Option("--no-repair", help="Only report.")] = False,
        config: ConfigOption = None,
    ) -> None:
        """Re-verify every replica of a site (resumable, rate-limited), repair, report dark/missing.

        Example: stalwart scrub --site eu --rate 200MB/s --every 1d --spread 0.1
        """
        settings, isettings = _loaded(config)
        site_name = site or settings.site
        options = ScrubOptions(
            site=site_name,
            root=root or isettings.root_of(site_name),
            rate=parse_size(rate) if rate else isettings.scrub_rate,
            store=isettings.parity_store,
            repair=not no_repair,
            transfer=isettings.transfer_options(),
        )
        code = run(_scrub(settings, options, parse_ttl(every) if every else None, spread))
        if code:
            raise typer.Exit(code)

    @app.command("catalog")
    @handle_errors
    def catalog_cmd(
        what: Annotated[
            str, typer.Argument(help="files | replicas | transfers | repairs | scrubs")
        ] = "replicas",
        site: Annotated[
            str | None, typer.Option("--site", "-s", help="Only this site (replicas).")
        ] = None,
        limit: Annotated[int, typer.Option(min=1, help="At most this many rows.")] = 100,
        as_json: JsonOption = False,
        config: ConfigOption = None,
    ) -> None:
        """Query the integrity catalog: files, replicas per site, transfers, repairs, scrub runs.

        Example: stalwart catalog replicas --site eu --json
        """
        if what not in _CATALOG_COLUMNS:
            raise fail(f"unknown catalog table {what!r}: use one of {', '.join(_CATALOG_COLUMNS)}")
        run(_catalog(settings_from(config), what, site, limit, as_json))

    @app.command("transfer-service")
    @handle_errors
    def transfer_service_cmd(
        site: SiteOption = None,
        concurrency: Annotated[int, typer.Option(min=1, help="Transfers at once.")] = 2,
        chaos: Annotated[
            float,
            typer.Option(min=0.0, max=1.0, help="Demo: share of copies to corrupt on arrival."),
        ] = 0.0,
        config: ConfigOption = None,
    ) -> None:
        """Serve verified-transfer requests for a site from the bus (integrity.transfer.<site>).

        Example: stalwart transfer-service --site eu
        """
        settings = settings_from(config)
        service = build_service(site or settings.site, concurrency=concurrency, chaos=chaos)
        run(service.run(settings))
