"""The integrity catalog in the store: files, replicas per site, transfers, repairs, scrubs.

Its tables (``integrity_*``, see ``_schema``) are made by the store's
migrations, in SQLite or PostgreSQL alike. :func:`summary` is what the dashboard panel
shows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from stalwart.envelope import utcnow
from stalwart.errors import StoreUnavailable
from stalwart.integrity._schema import (
    files,
    prune_history,
    repairs,
    replicas,
    scrubs,
    transfers,
)
from stalwart.integrity.manifest import Manifest
from stalwart.store.engine import open_engine

__all__ = ["GOOD_STATES", "RETIRING", "Catalog", "ScrubCounts", "local_database", "summary"]

Row = dict[str, Any]

# The states of a replica whose bytes are known to be right.
GOOD_STATES: Final = ("ok", "repaired")
# A replica being deleted on purpose (retention): nothing checks, counts or restores it.
RETIRING: Final = "retiring"


@dataclass(slots=True)
class ScrubCounts:
    """Running totals of one scrub run."""

    checked: int = 0
    ok: int = 0
    corrupt: int = 0
    repaired: int = 0
    missing: int = 0
    dark: int = 0
    bytes_read: int = 0


def local_database(url: str) -> Path | None:
    """The file of a SQLite ``url`` (which opening it would create), else None."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database).absolute()


def _rows(result: Any) -> list[Row]:
    return [dict(row._mapping) for row in result]


class Catalog:
    """Async access to the catalog tables. Open with :meth:`open`, then :meth:`close`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    async def open(cls, url: str) -> Catalog:
        """Connect to the store at ``url`` (migrated to the newest schema if behind);
        StoreUnavailable when it cannot be reached."""
        return cls(await open_engine(url))

    async def close(self) -> None:
        await self.engine.dispose()

    async def _upsert(
        self, conn: AsyncConnection, table: Any, row: Row, keys: Sequence[str]
    ) -> None:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        stmt = insert(table).values(**row)
        changes = {k: stmt.excluded[k] for k in row if k not in keys}
        await conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=changes))

    async def register_file(self, manifest: Manifest) -> None:
        now = utcnow()
        row: Row = {
            "name": manifest.name,
            "size": manifest.size,
            "algorithm": manifest.digest_algorithm,
            "digest": manifest.digest,
            "block_size": manifest.block_size,
            "blocks": manifest.block_count,
            "data_blocks": manifest.parity.data if manifest.parity else None,
            "parity_blocks": manifest.parity.parity if manifest.parity else None,
            "manifest_checksum": manifest.checksum,
            "created_at": manifest.created_at,
            "updated_at": now,
        }
        async with self.engine.begin() as conn:
            await self._upsert(conn, files, row, ["name"])

    async def set_replica(
        self,
        name: str,
        site: str,
        path: str,
        state: str,
        *,
        digest: str | None = None,
        size: int | None = None,
        verified: bool = False,
        detail: str | None = None,
        create: bool = True,
    ) -> bool:
        """Catalog the replica of ``name`` at ``site``; whether a row was written.

        ``create=False`` only updates a replica still catalogued and not
        ``retiring``: what a check finds must not bring back a replica removed
        meanwhile (the demo's retention marks a product retiring, deletes its
        data, then ``forget``s its rows, while a scrub may be checking it). An
        upsert there re-inserted the replica under a file row that was gone: a
        foreign-key violation that aborted the scrub (chaos campaign seed 8,
        faults 144 to 702).
        """
        now = utcnow()
        row: Row = {
            "name": name,
            "site": site,
            "path": path,
            "state": state,
            "digest": digest,
            "size": size,
            "updated_at": now,
            "detail": detail,
        }
        if verified:
            row["verified_at"] = now
        async with self.engine.begin() as conn:
            if create:
                await self._upsert(conn, replicas, row, ["name", "site"])
                return True
            changes = {k: v for k, v in row.items() if k not in ("name", "site")}
            result = await conn.execute(
                update(replicas)
                .where(
                    replicas.c.name == name,
                    replicas.c.site == site,
                    replicas.c.state != RETIRING,
                )
                .values(**changes)
            )
            return bool(result.rowcount)

    async def record_transfer(self, row: Row) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(transfers.insert().values(finished_at=utcnow(), **row))

    async def record_repair(
        self,
        *,
        path: str,
        method: str,
        blocks: Sequence[int],
        nbytes: int = 0,
        name: str | None = None,
        site: str | None = None,
        source: str | None = None,
    ) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                repairs.insert().values(
                    name=name,
                    site=site,
                    path=path,
                    method=method,
                    blocks=json.dumps(list(blocks)),
                    bytes=nbytes,
                    source=source,
                    at=utcnow(),
                )
            )

    async def file(self, name: str) -> Row | None:
        async with self.engine.connect() as conn:
            found = _rows(await conn.execute(select(files).where(files.c.name == name)))
        return found[0] if found else None

    async def sites(self) -> list[str]:
        """Every site that has replicas, sorted."""
        query = select(replicas.c.site).distinct().order_by(replicas.c.site)
        async with self.engine.connect() as conn:
            return [str(site) for site in (await conn.execute(query)).scalars()]

    async def replicas_at(self, path: str) -> list[Row]:
        """Every catalogued replica at ``path``, whatever its site (normally one)."""
        query = select(replicas).where(replicas.c.path == path).order_by(replicas.c.site)
        async with self.engine.connect() as conn:
            return _rows(await conn.execute(query))

    async def newest_good_replica(self, site: str, under: str) -> str | None:
        """The path of the replica at ``site``, below the folder ``under``, most
        recently catalogued as good (``ok`` or ``repaired``); None if there is none."""
        query = (
            select(replicas.c.path)
            .where(
                replicas.c.site == site,
                replicas.c.state.in_(GOOD_STATES),
                replicas.c.path.startswith(f"{under.rstrip('/')}/"),
            )
            .order_by(replicas.c.updated_at.desc())
            .limit(1)
        )
        async with self.engine.connect() as conn:
            path = (await conn.execute(query)).scalar()
        return None if path is None else str(path)

    async def sized_replicas(self) -> list[Row]:
        """Every replica (``name``, ``site``, ``path``, ``state``) with its file's
        catalogued ``size``: what an audit compares against the disks."""
        query = select(
            replicas.c.name, replicas.c.site, replicas.c.path, replicas.c.state, files.c.size
        ).join(files, files.c.name == replicas.c.name)
        async with self.engine.connect() as conn:
            return _rows(await conn.execute(query))

    async def due_for_removal(
        self, sites: Sequence[str], before: datetime, limit: int = 500
    ) -> dict[str, list[str]]:
        """Files catalogued before ``before`` with a good replica at every one of
        ``sites`` (a delivered product), and files already ``retiring`` (a removal
        that was interrupted): name -> the paths of all its replicas."""
        good = (
            select(replicas.c.name)
            .where(replicas.c.site.in_(sites), replicas.c.state.in_(GOOD_STATES))
            .group_by(replicas.c.name)
            .having(func.count() == len(set(sites)))
        )
        retiring = select(replicas.c.name).where(replicas.c.state == RETIRING)
        names = (
            select(files.c.name)
            .where(
                or_(
                    files.c.name.in_(retiring),
                    and_(files.c.created_at < before, files.c.name.in_(good)),
                )
            )
            .order_by(files.c.created_at)
            .limit(limit)
        )
        found: dict[str, list[str]] = {}
        async with self.engine.connect() as conn:
            chosen = list(await conn.scalars(names))
            query = select(replicas.c.name, replicas.c.path).where(replicas.c.name.in_(chosen))
            for row in await conn.execute(query):
                found.setdefault(row.name, []).append(row.path)
        return found

    async def retire(self, names: Sequence[str]) -> None:
        """Mark every replica of ``names`` ``retiring`` before their data is deleted:
        a removal interrupted after the deletion is then still known as one (and
        finished by the next ``due_for_removal``), not mistaken for lost data."""
        if not names:
            return
        async with self.engine.begin() as conn:
            await conn.execute(
                update(replicas)
                .where(replicas.c.name.in_(names))
                .values(state=RETIRING, updated_at=utcnow(), detail="being removed")
            )

    async def forget(self, names: Sequence[str]) -> None:
        """Remove files and all their replicas from the catalog (their data was deleted
        on purpose, so scrub must not report them missing). History rows stay."""
        if not names:
            return
        async with self.engine.begin() as conn:
            await conn.execute(delete(replicas).where(replicas.c.name.in_(names)))
            await conn.execute(delete(files).where(files.c.name.in_(names)))

    async def prune_history(self, before: datetime) -> int:
        """Delete transfer and repair records, and finished scrub runs (each site's
        latest kept), from before ``before``; how many."""
        async with self.engine.begin() as conn:
            return sum((await prune_history(conn, before)).values())

    # -- scrub runs -----------------------------------------------------------

    async def scrub_begin(self, site: str) -> tuple[int, str | None, ScrubCounts]:
        """Resume the site's unfinished scrub run, or start a new one."""
        query = (
            select(scrubs)
            .where(scrubs.c.site == site, scrubs.c.state.in_(("running", "interrupted")))
            .order_by(scrubs.c.id.desc())
            .limit(1)
        )
        async with self.engine.begin() as conn:
            found = _rows(await conn.execute(query))
            if found:
                run = found[0]
                await conn.execute(
                    update(scrubs).where(scrubs.c.id == run["id"]).values(state="running")
                )
                counts = ScrubCounts(**{k: run[k] for k in asdict(ScrubCounts())})
                return int(run["id"]), run["cursor"], counts
            result = await conn.execute(
                scrubs.insert().values(site=site, state="running", started_at=utcnow())
            )
            key = result.inserted_primary_key
            if key is None:
                raise StoreUnavailable("the store did not return the new scrub run's id; retry")
            return int(key[0]), None, ScrubCounts()

    async def scrub_progress(
        self,
        run_id: int,
        cursor: str | None,
        counts: ScrubCounts,
        state: str = "running",
        detail: str | None = None,
    ) -> None:
        values: Row = {"cursor": cursor, "state": state, **asdict(counts)}
        if state != "running":
            values["finished_at"] = utcnow()
        if detail is not None:
            values["detail"] = detail
        async with self.engine.begin() as conn:
            await conn.execute(update(scrubs).where(scrubs.c.id == run_id).values(**values))

    # -- queries ----------------------------------------------------------------

    async def files(self, limit: int = 100, *, match: str | None = None) -> list[Row]:
        query = _matching(select(files).order_by(files.c.name).limit(limit), files, None, match)
        async with self.engine.connect() as conn:
            return _rows(await conn.execute(query))

    async def replicas(
        self,
        site: str | None = None,
        *,
        after: str | None = None,
        limit: int = 1000,
        state: str | None = None,
        name: str | None = None,
        match: str | None = None,
        through: str | None = None,
    ) -> list[Row]:
        """Replicas in name order (those named after ``after`` and up to ``through``);
        ``name`` is exact, ``match`` a glob (``uid_*.fits``)."""
        query = select(replicas).order_by(replicas.c.name, replicas.c.site).limit(limit)
        query = _matching(query, replicas, site, match)
        if after is not None:
            query = query.where(replicas.c.name > after)
        if through is not None:
            query = query.where(replicas.c.name <= through)
        if state is not None:
            query = query.where(replicas.c.state == state)
        if name is not None:
            query = query.where(replicas.c.name == name)
        async with self.engine.connect() as conn:
            return _rows(await conn.execute(query))

    async def transfers(
        self, limit: int = 50, *, site: str | None = None, match: str | None = None
    ) -> list[Row]:
        return await self._recent(transfers, limit, site, match)

    async def repairs(
        self, limit: int = 50, *, site: str | None = None, match: str | None = None
    ) -> list[Row]:
        return await self._recent(repairs, limit, site, match)

    async def scrubs(self, limit: int = 50, *, site: str | None = None) -> list[Row]:
        return await self._recent(scrubs, limit, site, None)

    async def _recent(
        self, table: Any, limit: int, site: str | None, match: str | None
    ) -> list[Row]:
        query = _matching(
            select(table).order_by(table.c.id.desc()).limit(limit), table, site, match
        )
        async with self.engine.connect() as conn:
            return _rows(await conn.execute(query))


def _matching(query: Any, table: Any, site: str | None, match: str | None) -> Any:
    """``query`` narrowed to ``site`` and to names matching the glob ``match``."""
    if site is not None:
        query = query.where(table.c.site == site)
    if match is not None:
        escaped = match.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = escaped.replace("*", "%").replace("?", "_")
        query = query.where(table.c.name.like(like, escape="\\"))
    return query


async def summary(engine: AsyncEngine, recent: int = 10) -> dict[str, Any]:
    """The dashboard panel's data: replica states per site, recent transfers and
    repairs, and each site's latest scrub."""
    catalog = Catalog(engine)
    counts = (
        select(replicas.c.site, replicas.c.state, func.count().label("n"))
        .group_by(replicas.c.site, replicas.c.state)
        .order_by(replicas.c.site)
    )
    latest = select(func.max(scrubs.c.id)).group_by(scrubs.c.site)
    async with engine.connect() as conn:
        per_site: dict[str, dict[str, int]] = {}
        for row in await conn.execute(counts):
            per_site.setdefault(row.site, {})[row.state] = int(row.n)
        last_scrubs = _rows(
            await conn.execute(
                select(scrubs).where(scrubs.c.id.in_(latest)).order_by(scrubs.c.site)
            )
        )
        nfiles = int((await conn.execute(select(func.count()).select_from(files))).scalar_one())
    return {
        "files": nfiles,
        "replicas": per_site,
        "transfers": _json_ready(await catalog.transfers(recent)),
        "repairs": _json_ready(await catalog.repairs(recent)),
        "scrubs": _json_ready(last_scrubs),
    }


def _json_ready(rows: list[Row]) -> list[Row]:
    return [
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in r.items()} for r in rows
    ]
