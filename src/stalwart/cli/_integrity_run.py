"""What the integrity commands do, apart from their options: catalog, bar, output."""

from __future__ import annotations

import asyncio
import signal
from datetime import timedelta
from pathlib import Path
from typing import Any

from stalwart.cli._common import age, fail
from stalwart.cli._integrity_home import NOTE, check_home, recording
from stalwart.cli._integrity_verify import no_site, verify
from stalwart.cli._integrity_view import byte_bar, human, print_rows, say
from stalwart.config import Settings
from stalwart.envelope import utcnow
from stalwart.errors import IntegrityError
from stalwart.integrity import ops
from stalwart.integrity.catalog import Catalog
from stalwart.integrity.channels import Channel, open_channel
from stalwart.integrity.compare import already_there
from stalwart.integrity.scrub import ScrubOptions, ScrubReport, scrub_forever, scrub_site
from stalwart.integrity.settings import IntegritySettings
from stalwart.integrity.transfer import TransferResult, resolve_destination
from stalwart.integrity.walk import expand

__all__ = ["catalog", "ingest", "scrub", "transfer", "verify"]


def _regular(paths: list[Path]) -> list[Path]:
    return [p for p in paths if not p.is_file()]


async def ingest(
    settings: Settings,
    isettings: IntegritySettings,
    site: str,
    paths: list[Path],
    name: str | None,
    overrides: dict[str, Any],
    force: bool,
) -> int:
    """Ingest files (directories recursively); the number refused."""
    options = isettings.ingest_options(**overrides)
    files = await asyncio.to_thread(expand, paths, settings.home)
    if name and len(files) > 1:
        raise fail("--name applies to one file; ingest files one by one to name them")
    if not files:
        raise fail(f"no files under {', '.join(map(str, paths))}; check the path")
    bad = await asyncio.to_thread(_regular, files)
    if bad:
        raise fail(f"cannot ingest {bad[0].absolute()}: not a regular file; check the path")
    total = await asyncio.to_thread(lambda: sum(p.stat().st_size for p in files))
    refused = 0
    check_home(settings, "write")
    async with recording(settings, site) as (recorder, catalog):
        with byte_bar() as bar:
            bar.start("ingest", total)
            for path in files:
                bar.label(f"ingest {path.name}")
                before = await catalog.file(name or path.name) if force else None
                try:
                    done = await ops.ingest(
                        path, recorder, options, name=name, progress=bar.advance, force=force
                    )
                except IntegrityError as exc:
                    refused += 1
                    say(str(exc), "error:", "bold red", err=True)
                    continue
                m = done.manifest
                stripe = f"{m.parity.data}+{m.parity.parity}" if m.parity else "none"
                say(
                    f"{path} {human(m.size)} {m.digest_algorithm}:{m.digest} "
                    f"blocks={m.block_count} parity={stripe}",
                    "ingested",
                    "green",
                )
                if before is not None and m.digests.get(before["algorithm"]) != before["digest"]:
                    say(
                        f"{m.name} was catalogued with other content "
                        f"({before['algorithm']}:{before['digest'][:16]}…), now replaced; its "
                        "replicas at other sites keep the old content until replaced",
                        *NOTE,
                        err=True,
                    )
    return refused


def _size_of(channel: Channel) -> int | None:
    """The source's size for the progress bar, when it is cheap to know."""
    try:
        return channel.size() if channel.local is not None else None
    except OSError:
        return None


def _print_transfer(result: TransferResult) -> None:
    say(
        f"{result.src} -> {result.dst} {human(result.size)} "
        f"in {result.seconds:.2f}s; moved {human(result.bytes_moved)}, re-fetched "
        f"{human(result.bytes_refetched)}, retransmitted {human(result.bytes_retransmitted)}, "
        f"blocks repaired {result.blocks_repaired}",
        result.outcome,
        "green",
    )


async def transfer(
    settings: Settings,
    isettings: IntegritySettings,
    site: str,
    src: str,
    dst: str,
    retries: int | None,
    *,
    checksum: bool,
    dry_run: bool,
) -> None:
    """A verified transfer; with ``checksum``, none when DST already has the content."""
    options = isettings.transfer_options(retries=retries)
    source = open_channel(src)
    target = open_channel(await asyncio.to_thread(resolve_destination, source, dst))
    if not check_home(settings, "optional" if dry_run else "write"):
        await _transfer_plan(None, site, source, target, checksum)
        return
    async with recording(settings, site) as (recorder, catalog):
        if dry_run or checksum:
            if await _transfer_plan(catalog, site, source, target, checksum, record=not dry_run):
                return
            if dry_run:
                return
        with byte_bar() as bar:
            bar.start(f"transfer {source.name}", await asyncio.to_thread(_size_of, source))
            result = await ops.transfer(src, target.url, recorder, options, progress=bar.advance)
    _print_transfer(result)


async def _transfer_plan(
    catalog: Catalog | None,
    site: str,
    source: Channel,
    target: Channel,
    checksum: bool,
    *,
    record: bool = False,
) -> bool:
    """Say what a transfer will do; True when there is nothing to do (identical
    content, recorded as a verified replica when ``record``). A known-bad source
    raises."""
    if catalog is not None:
        await ops.refuse_known_bad(catalog, source.url)
    same = None
    if checksum:
        with byte_bar() as bar:
            bar.start(f"compare {source.name}", None)
            same = await asyncio.to_thread(already_there, source, target, bar.advance)
    if same is not None:
        say(
            f"{source.url} -> {target.url}: identical "
            f"({same.digest_algorithm}:{same.digest[:16]}…)",
            "skipped" if record else "would skip",
            "green",
        )
        if record and catalog is not None:
            await catalog.register_file(same)
            await catalog.set_replica(
                same.name, site, target.url, "ok", digest=same.digest, size=same.size, verified=True
            )
        return True
    if not record:
        exists = await asyncio.to_thread(target.exists)
        size = await asyncio.to_thread(_size_of, source)
        say(
            f"would {'replace' if exists else 'copy to'} {target.url}: {source.url} "
            f"({human(size)}), verified, as site {site}"
        )
    return False


def _print_scrub(report: ScrubReport) -> None:
    c = report.counts
    say(
        f"scrub run {report.run_id}{' (resumed)' if report.resumed else ''}"
        f"{' interrupted' if report.interrupted else ''}: checked {c.checked}, ok {c.ok}, "
        f"repaired {c.repaired}, corrupt {c.corrupt}, missing {c.missing}, dark {c.dark}, "
        f"read {human(c.bytes_read)}"
    )
    restored = set(report.restored)
    for label, items in (
        ("corrupt", report.corrupt),
        ("missing", report.missing),
        ("dark", report.dark),
    ):
        for item in items:
            if item in restored:
                say(f"{item} (was missing)", "  restored", "green")
            else:
                say(item, f"  {label}", "red")


def _print_next(seconds: float) -> None:
    at = (utcnow() + timedelta(seconds=seconds)).strftime("%Y-%m-%d %H:%M:%S UTC")
    say(f"next scrub at {at} (in {age(seconds)}); Ctrl-C stops")


async def scrub(
    settings: Settings, options: ScrubOptions, every: float | None, spread: float
) -> int:
    """One scrub run, or scheduled runs until a signal; 1 when something stays broken."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        check_home(settings, "read")
        async with recording(settings, options.site) as (recorder, catalog):
            if not await catalog.replicas(options.site, limit=1):
                raise await no_site(catalog, options.site)
            if every is not None:
                await scrub_forever(
                    catalog,
                    recorder,
                    options,
                    every=every,
                    spread=spread,
                    stop=stop,
                    on_report=_print_scrub,
                    on_next=_print_next,
                )
                return 0
            with byte_bar() as bar:
                bar.start(f"scrub {options.site}", None)
                report = await scrub_site(
                    catalog, recorder, options, progress=bar.advance, stop=stop
                )
            _print_scrub(report)
            return 1 if report.still_broken else 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


COLUMNS = {
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


async def catalog(
    settings: Settings,
    what: str,
    site: str | None,
    match: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """One catalog table, filtered by site and name glob where the table has them."""
    if what == "files" and site is not None:
        raise fail("catalog files has no site; use `stalwart integrity catalog replicas --site S`")
    if what == "scrubs" and match is not None:
        raise fail("catalog scrubs has no names; filter them with --site")
    check_home(settings, "read")
    opened = await Catalog.open(settings.store.url)
    try:
        if what == "files":
            rows = await opened.files(limit, match=match)
        elif what == "replicas":
            rows = await opened.replicas(site, limit=limit, match=match)
        elif what == "scrubs":
            rows = await opened.scrubs(limit, site=site)
        else:
            rows = await getattr(opened, what)(limit, site=site, match=match)
    finally:
        await opened.close()
    print_rows(f"integrity {what}", rows, COLUMNS[what], as_json)
