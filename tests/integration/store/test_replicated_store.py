"""The store URL of docs/deploy.md finds the primary of a real primary + streaming replica.

A private pair of PostgreSQL servers is built here the way Patroni builds one
(``initdb``, then ``pg_basebackup -R`` for a replica that streams the
primary's WAL), on ports of its own; the shared server is not touched. The
documented URL, with the replica listed first, must land on the primary.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from test_multihost_store_url import _doc_store_url

from stalwart.store import current_revision, head_revision
from stalwart.store.engine import open_engine
from waiting import until

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def replicated_postgres() -> Iterator[tuple[int, int]]:
    """(primary port, replica port) of a fresh primary and its streaming replica."""
    if not BIN:
        pytest.skip("PostgreSQL's server programs (initdb, pg_basebackup) are not installed")
    as_root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="stalwart-pg-"))
    if as_root:  # the server refuses to run as root
        shutil.chown(base, "postgres")

    def run(*argv: str) -> None:
        command = [f"{BIN[-1]}/{argv[0]}", *argv[1:]]
        command = ["runuser", "-u", "postgres", "--", *command] if as_root else command
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{' '.join(command)} failed: {done.stderr}"

    ports = (_free_port(), _free_port())
    try:
        run("initdb", "-D", f"{base}/primary", "-A", "trust", "-U", "postgres")
        _start(run, base / "primary", ports[0])
        source = f"-h 127.0.0.1 -p {ports[0]} -U postgres"
        run("pg_basebackup", *source.split(), "-D", f"{base}/replica", "-R")
        _start(run, base / "replica", ports[1])
        yield ports
    finally:
        for name in ("replica", "primary"):
            if (base / name / "postmaster.pid").exists():
                run("pg_ctl", "stop", "-D", f"{base}/{name}", "-m", "immediate")
        shutil.rmtree(base, ignore_errors=True)


def _start(run: Callable[..., None], data: Path, port: int) -> None:
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={data}"
    run("pg_ctl", "start", "-w", "-D", str(data), "-o", options, "-l", f"{data}/log")


async def test_the_documented_url_skips_the_replica_listed_first(
    replicated_postgres: tuple[int, int],
) -> None:
    primary, replica = replicated_postgres
    # Given the documented URL with the replica as its first host
    doc = make_url(_doc_store_url())
    hosts = (f"127.0.0.1:{replica}", f"127.0.0.1:{primary}")
    local = doc.set(username="postgres", password=None, database="postgres")
    url = local.set(query={**doc.query, "host": hosts}).render_as_string(hide_password=False)
    # When a part opens the store with it, creating the tables
    engine = await open_engine(url)
    try:
        # Then it writes on the primary
        async with engine.connect() as conn:
            where = await conn.execute(sa.text("SELECT inet_server_port(), pg_is_in_recovery()"))
            assert where.one() == (primary, False)
        assert await current_revision(engine) == head_revision()
    finally:
        await engine.dispose()
    # And the replica, in recovery, has streamed the tables the part created
    on_replica = await open_engine(
        f"postgresql://postgres@127.0.0.1:{replica}/postgres", migrate=False
    )
    try:
        async with on_replica.connect() as conn:
            assert (await conn.execute(sa.text("SELECT pg_is_in_recovery()"))).scalar() is True
        await until(
            lambda: current_revision(on_replica),
            10.0,
            "the replica to have the newest schema",
            accept=lambda revision: revision == head_revision(),
        )
    finally:
        await on_replica.dispose()
