"""A service process opens the catalog once, not per message, and closes it at its end."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from stalwart.errors import StoreUnavailable
from stalwart.integrity.catalog import Catalog
from stalwart.integrity.shared import shared_catalog


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Catalog]:
    """Every catalog opened, in order; closing one sets its ``closed`` attribute."""
    found: list[Catalog] = []
    real_open, real_close = Catalog.open.__func__, Catalog.close  # type: ignore[attr-defined]

    async def counted(cls: type[Catalog], url: str) -> Catalog:
        catalog: Catalog = await real_open(cls, url)
        found.append(catalog)
        return catalog

    async def close(self: Catalog) -> None:
        self.closed = True  # type: ignore[attr-defined]
        await real_close(self)

    monkeypatch.setattr(Catalog, "open", classmethod(counted))
    monkeypatch.setattr(Catalog, "close", close)
    return found


def test_every_message_of_a_process_gets_the_same_catalog(
    tmp_path: Path, opened: list[Catalog]
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"

    async def process() -> list[Catalog]:
        # Given messages handled at once and one after the other
        first = await asyncio.gather(*(shared_catalog(url) for _ in range(5)))
        return [*first, await shared_catalog(url)]

    # When a process handles them
    used = asyncio.run(process())
    # Then one catalog was opened for all of them, and closed when the process's loop ended
    assert len(opened) == 1 and all(c is opened[0] for c in used)
    assert getattr(opened[0], "closed", False)


def test_a_store_that_was_away_is_tried_again_on_the_next_message(
    tmp_path: Path, opened: list[Catalog], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    real = Catalog.open.__func__  # type: ignore[attr-defined]
    failures = [StoreUnavailable("the store is away")]

    async def flaky(cls: type[Catalog], url: str) -> Any:
        if failures:
            raise failures.pop()
        return await real(cls, url)

    monkeypatch.setattr(Catalog, "open", classmethod(flaky))

    async def process() -> Catalog:
        # Given a first message that met the store away
        with pytest.raises(StoreUnavailable):
            await shared_catalog(url)
        # When the next one comes, Then it gets a catalog
        return await shared_catalog(url)

    catalog = asyncio.run(process())
    assert opened == [catalog]
