"""What the integrity commands do, apart from their options: catalog, bar, output."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import typer

from stalwart.cli._common import age, fail
from stalwart.cli._integrity_view import byte_bar, human, print_rows, say
from stalwart.config import DEFAULT_HOME, Settings
from stalwart.envelope import utcnow
from stalwart.errors import IntegrityError
from stalwart.integrity import ops
from stalwart.integrity.catalog import Catalog, Row, local_database
from stalwart.integrity.channels import Channel, open_channel
from stalwart.integrity.compare import already_there
from stalwart.integrity.events import EventPublisher
from stalwart.integrity.locate import Located, locate
from stalwart.integrity.scrub import ScrubOptions, ScrubReport, scrub_forever, scrub_site
from stalwart.integrity.settings import IntegritySettings
from stalwart.integrity.transfer import TransferResult, resolve_destination
from stalwart.integrity.verify import verify_size
from stalwart.integrity.walk import expand

__all__ = ["catalog", "ingest", "scrub", "transfer", "verify"]

NOTE = ("note:", "yellow")

Need = Literal["write", "read", "optional"]


def _home(settings: Settings) -> str:
    """Where the home is, and how it was chosen, for messages about it."""
    home = Path(settings.home)
    where = f"stalwart home {home.absolute()}"
    if home == DEFAULT_HOME:
        where += (
            " (the default: .stalwart in the working directory; run where your "
            "stalwart.toml is, or pass --config or STALWART_HOME)"
        )
    return where


def _check_home(settings: Settings, need: Need) -> bool:
    """Whether to open the catalog. One that does not exist yet is created only for
    a command that writes (``need``); the others say where they looked."""
    fresh = local_database(settings.store.url)
    if fresh is None or fresh.exists():
        return True
    if need == "read":
        raise fail(
            f"no integrity catalog at {fresh}: nothing was ingested with the {_home(settings)}"
        )
    if need == "optional":
        say(
            f"no integrity catalog at {fresh}, so nothing is recorded; {_home(settings)}",
            *NOTE,
            err=True,
        )
        return False
    say(f"new integrity catalog at {fresh}; {_home(settings)}", *NOTE, err=True)
    return True


@asynccontextmanager
async def _recorder(settings: Settings, site: str) -> AsyncIterator[tuple[ops.Recorder, Catalog]]:
    """Catalog + event publisher for one command; says so when the bus is unreachable."""
    opened = await Catalog.open(settings.store.url)
    try:
        async with EventPublisher.for_settings(settings, site) as events:
            if events.unavailable:
                say(
                    f"{events.unavailable}: sys.integrity events are not published; "
                    "the catalog is still updated",
                    *NOTE,
                    err=True,
                )
            yield ops.Recorder(site=site, catalog=opened, emit=events.publish), opened
    finally:
        await opened.close()


def _sizes(paths: list[Path], store: Path | None) -> int | None:
    sizes = [verify_size(p, store) for p in paths]
    return sum(s for s in sizes if s is not None) or None


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
    _check_home(settings, "write")
    async with _recorder(settings, site) as (recorder, catalog):
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


async def _no_site(catalog: Catalog, site: str) -> typer.Exit:
    """The error for a site without replicas, naming the sites that have some."""
    known = await catalog.sites()
    sites = f"sites with replicas: {', '.join(known)}" if known else "the catalog is empty"
    return fail(f"no replicas of site {site!r} in the catalog ({sites}); check --site")


async def _targets(
    catalog: Catalog | None, settings: Settings, site: str | None, paths: list[Path]
) -> list[tuple[Path, Located]]:
    """What to verify: the paths given (directories walked), or every replica of the site."""
    if not paths:
        at = site or settings.site
        if catalog is None:
            raise fail(f"no replicas of site {at!r}: there is no catalog")
        rows = await catalog.replicas(at, limit=10**9)
        if not rows:
            raise await _no_site(catalog, at)
        return [(Path(r["path"]), Located(at, str(r["name"]))) for r in rows]
    files = await asyncio.to_thread(expand, paths, Path(settings.home))
    found = [(p, await locate(catalog, str(p), site, settings.site)) for p in files]
    gone = await asyncio.to_thread(lambda: [p for p, at in found if not at.name and not p.exists()])
    if gone:
        raise fail(f"no such file: {', '.join(map(str, gone))}; check the path")
    return found


async def _hint(
    catalog: Catalog | None, path: Path, at: Located, checked: ops.Checked, repair: bool
) -> str | None:
    """What to do about a file that stays damaged (or was never ingested)."""
    state, report = checked.state, checked.report
    if state in ("ok", "repaired"):
        return None
    if state == "unverified":
        return f"`stalwart ingest {path}` records its checksums and parity"
    if state == "corrupt" and not repair:
        if report.manifest is not None:
            return f"`stalwart verify {path} --repair` repairs it from its parity"
        if checked.catalogued:
            return f"`stalwart verify {path} --repair` rebuilds its manifest if the data is intact"
    others = []
    if catalog is not None and at.name is not None:
        others = [
            r
            for r in await catalog.replicas(None, name=at.name)
            if r["site"] != at.site and r["state"] in ("ok", "repaired")
        ]
    what = "missing" if state == "missing" else "still damaged"
    if others and checked.catalogued:
        return (
            f"{what}: `stalwart scrub --site {at.site}` repairs it from the replica at "
            f"{others[0]['site']} ({others[0]['path']})"
        )
    if others:
        good = others[0]["path"]
        return f"{what}: `stalwart transfer {good} {path}` copies a good replica over it"
    return f"{what}, and no good replica elsewhere is catalogued: restore it from a backup"


async def verify(
    settings: Settings,
    store: Path | None,
    site: str | None,
    paths: list[Path],
    repair: bool,
    as_json: bool,
) -> int:
    """Verify (and repair) files or a site's replicas; the number still damaged."""
    if not _check_home(settings, "optional"):
        rows = await _verify_all(
            ops.Recorder(site or settings.site), None, settings, store, site, paths, repair
        )
    else:
        async with _recorder(settings, site or settings.site) as (recorder, catalog):
            rows = await _verify_all(recorder, catalog, settings, store, site, paths, repair)
    columns = ["path", "site", "state", "problems", "repaired_blocks"]
    print_rows("verify", rows, columns, as_json)
    for row in [] if as_json else rows:  # in JSON, the rows carry their hints
        if row["hint"]:
            say(f"{row['path']}: {row['hint']}", "hint:", "yellow", err=True)
    if not as_json and any(r["site"] is None for r in rows):
        say(
            "a path with no site is not a catalogued replica: its result is not recorded "
            "(`stalwart ingest` registers a file)",
            *NOTE,
            err=True,
        )
    return sum(r["state"] not in ("ok", "repaired") for r in rows)


async def _verify_all(
    recorder: ops.Recorder,
    catalog: Catalog | None,
    settings: Settings,
    store: Path | None,
    site: str | None,
    paths: list[Path],
    repair: bool,
) -> list[Row]:
    rows: list[Row] = []
    targets = await _targets(catalog, settings, site, paths)
    total = await asyncio.to_thread(_sizes, [p for p, _ in targets], store)
    with byte_bar() as bar:
        bar.start("verify", total)
        for path, at in targets:
            bar.label(f"verify {path.name}")
            checked = await ops.verify(
                path,
                dataclasses.replace(recorder, site=at.site),
                name=at.name,
                store=store,
                repair=repair,
                progress=bar.advance,
            )
            fixed = checked.repair
            rows.append(
                {
                    "path": str(path),
                    "site": at.site if checked.catalogued else None,
                    "state": checked.state,
                    "problems": "; ".join(checked.report.problems()) or None,
                    "repaired_blocks": len(fixed.from_parity) + len(fixed.refetched)
                    if fixed
                    else 0,
                    "manifest_rebuilt": checked.rebuilt,
                    "hint": await _hint(catalog, path, at, checked, repair),
                }
            )
    return rows


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
    if not _check_home(settings, "optional" if dry_run else "write"):
        await _transfer_plan(None, site, source, target, checksum)
        return
    async with _recorder(settings, site) as (recorder, catalog):
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
        _check_home(settings, "read")
        async with _recorder(settings, options.site) as (recorder, catalog):
            if not await catalog.replicas(options.site, limit=1):
                raise await _no_site(catalog, options.site)
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
        raise fail("catalog files has no site; use `stalwart catalog replicas --site S`")
    if what == "scrubs" and match is not None:
        raise fail("catalog scrubs has no names; filter them with --site")
    _check_home(settings, "read")
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
