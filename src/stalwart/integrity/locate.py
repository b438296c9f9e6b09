"""Which catalogued replica a local path is: its site and its catalog name.

A file ingested with ``--site jao`` and verified later without ``--site`` is
still jao's replica: the catalog knows the path, so the site comes from
there rather than from the configuration's default site.
"""

from __future__ import annotations

from dataclasses import dataclass

from stalwart.errors import IntegrityError
from stalwart.integrity.catalog import Catalog

__all__ = ["Located", "locate"]


@dataclass(frozen=True, slots=True)
class Located:
    """A path's site, and its catalog name when the catalog has it there."""

    site: str
    name: str | None = None


async def locate(catalog: Catalog | None, path: str, site: str | None, default: str) -> Located:
    """The replica at ``path`` (absolute): at ``site`` if given, else wherever the
    catalog has it, else at ``default`` (uncatalogued).

    Raises IntegrityError, listing the candidates, when the catalog has the
    path at several sites and ``site`` does not choose.
    """
    rows = await catalog.replicas_at(path) if catalog is not None else []
    if site is not None:
        at = [r for r in rows if r["site"] == site]
        return Located(site, str(at[0]["name"]) if at else None)
    if not rows:
        return Located(default)
    if len(rows) > 1:
        candidates = ", ".join(f"{r['site']} ({r['name']})" for r in rows)
        raise IntegrityError(
            f"{path} is catalogued at several sites: {candidates}; choose one with --site"
        )
    return Located(str(rows[0]["site"]), str(rows[0]["name"]))
