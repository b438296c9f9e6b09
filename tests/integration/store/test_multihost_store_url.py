"""The multi-host store URL of docs/deploy.md reaches the primary when a host is down.

docs/deploy.md tells operators to list every PostgreSQL host of a replicated
cluster in ``[store] url`` with ``target_session_attrs=read-write``, so that a
part connects to whichever host is the primary (after a Patroni failover
too). These tests take that very URL from the page, swap its hosts for an
unreachable port and the shared PostgreSQL, and open the store with it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from stalwart.config import Settings
from stalwart.errors import StoreUnavailable
from stalwart.redact import redact_url
from stalwart.store import current_revision, head_revision
from stalwart.store.engine import open_engine

DOC = Path(__file__).resolve().parents[3] / "docs" / "deploy.md"
UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: the connection is refused at once


def _doc_store_url() -> str:
    """The ``[store] url`` of the block under "### The store URL" in docs/deploy.md."""
    text = DOC.read_text()
    section = text[text.index("### The store URL") :]
    found = re.search(r'```toml\n\[store\]\nurl = "([^"]+)"\n```', section)
    assert found, "no [store] url block under '### The store URL' in docs/deploy.md"
    return found.group(1)


def _local(doc_url: str, postgres_url: str, *, first_down: bool = True, **query: str) -> str:
    """``doc_url`` with its hosts replaced by the test database's, after a dead one."""
    test_db = make_url(postgres_url)
    parsed = make_url(doc_url)
    hosts = (UNREACHABLE,) * first_down + (f"{test_db.host}:{test_db.port or 5432}",)
    local = parsed.set(
        username=test_db.username,
        password=test_db.password,
        database=test_db.database,
        query={**parsed.query, "host": hosts, **query},
    )
    return local.render_as_string(hide_password=False)


def test_the_documented_url_is_accepted_and_keeps_its_password_out_of_messages() -> None:
    url = _doc_store_url()
    query = make_url(url).query
    # The documented URL names two hosts, each with its port, and asks for the primary
    assert len(query["host"]) == 2 and all(":" in host for host in query["host"])
    assert query["target_session_attrs"] == "read-write"
    # And stalwart's settings accept it as it is
    assert Settings.model_validate({"store": {"url": url}}).store.url == url
    password = make_url(url).password
    assert password and password not in redact_url(url)


async def test_the_first_host_down_the_store_opens_on_the_next(postgres_url: str) -> None:
    # Given the documented URL whose first host refuses connections
    url = _local(_doc_store_url(), postgres_url)
    # When a part opens the store with it (migrating the empty database)
    engine = await open_engine(url)
    try:
        # Then it is connected to the shared PostgreSQL, the primary, at the newest schema
        async with engine.connect() as conn:
            port, in_recovery = (
                await conn.execute(sa.text("SELECT inet_server_port(), pg_is_in_recovery()"))
            ).one()
        assert (port, in_recovery) == (make_url(postgres_url).port or 5432, False)
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()


async def test_target_session_attrs_reaches_the_driver(postgres_url: str) -> None:
    # Given the documented URL on the primary alone, but asking for a standby
    # (with a host down, the driver reports that host's error instead)
    url = _local(_doc_store_url(), postgres_url, first_down=False, target_session_attrs="standby")
    # When a part opens the store, then it is refused with one line of advice
    with pytest.raises(StoreUnavailable) as raised:
        await open_engine(url)
    message = str(raised.value)
    assert "\n" not in message
    assert "target attribute" in message and "store.url" in message
