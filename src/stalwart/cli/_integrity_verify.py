"""``stalwart integrity verify``: files, directories or a site's replicas, each on the
replica the catalog has it as, with a hint for what stays damaged."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import typer

from stalwart.cli._common import fail
from stalwart.cli._integrity_home import NOTE, check_home, recording
from stalwart.cli._integrity_view import byte_bar, print_rows, say
from stalwart.config import Settings
from stalwart.integrity import ops
from stalwart.integrity.catalog import GOOD_STATES, Catalog, Row
from stalwart.integrity.locate import Located, locate
from stalwart.integrity.verify import verify_size
from stalwart.integrity.walk import expand

__all__ = ["no_site", "verify"]


def _sizes(paths: list[Path], store: Path | None) -> int | None:
    sizes = [verify_size(p, store) for p in paths]
    return sum(s for s in sizes if s is not None) or None


async def no_site(catalog: Catalog, site: str) -> typer.Exit:
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
            raise await no_site(catalog, at)
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
    if state in GOOD_STATES:
        return None
    if state == "unverified":
        return f"`stalwart integrity ingest {path}` records its checksums and parity"
    if state == "corrupt" and not repair:
        if report.manifest is not None:
            return f"`stalwart integrity verify {path} --repair` repairs it from its parity"
        if checked.catalogued:
            return (
                f"`stalwart integrity verify {path} --repair` rebuilds its manifest"
                " if the data is intact"
            )
    if report.manifest is None and not checked.catalogued and state != "missing":
        return (
            "its manifest is damaged and the catalog has no digest to check the data "
            f"against: if the data is trusted, `stalwart integrity ingest {path}` makes a new one"
        )
    others = []
    if catalog is not None and at.name is not None:
        others = [
            r
            for r in await catalog.replicas(None, name=at.name)
            if r["site"] != at.site and r["state"] in GOOD_STATES
        ]
    what = "missing" if state == "missing" else "still damaged"
    if others and checked.catalogued:
        return (
            f"{what}: `stalwart integrity scrub --site {at.site}` repairs it from the replica at "
            f"{others[0]['site']} ({others[0]['path']})"
        )
    if others:
        good = others[0]["path"]
        return f"{what}: `stalwart integrity transfer {good} {path}` copies a good replica over it"
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
    if not check_home(settings, "optional"):
        rows = await _verify_all(
            ops.Recorder(site or settings.site), None, settings, store, site, paths, repair
        )
    else:
        async with recording(settings, site or settings.site) as (recorder, catalog):
            rows = await _verify_all(recorder, catalog, settings, store, site, paths, repair)
    columns = ["path", "site", "state", "problems", "repaired_blocks"]
    print_rows("verify", rows, columns, as_json)
    for row in [] if as_json else rows:  # in JSON, the rows carry their hints
        if row["hint"]:
            say(f"{row['path']}: {row['hint']}", "hint:", "yellow", err=True)
    if not as_json and any(r["site"] is None for r in rows):
        say(
            "a path with no site is not a catalogued replica: its result is not recorded "
            "(`stalwart integrity ingest` registers a file)",
            *NOTE,
            err=True,
        )
    return sum(r["state"] not in GOOD_STATES for r in rows)


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
