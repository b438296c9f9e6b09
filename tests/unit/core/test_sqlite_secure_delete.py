"""The SQLite files that are queues (the embedded bus, an outbox spool) delete rows
without zeroing their bytes where that costs a write (``secure_delete=FAST``):
Debian's SQLite zeroes them by default, a third of every ack's delete."""

from __future__ import annotations

from pathlib import Path

from stalwart.bus.outbox._spool import Spool
from stalwart.bus.sqlite._schema import connect

_FAST = 2  # what PRAGMA secure_delete reads for FAST


def test_the_spool_deletes_without_zeroing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", bus="amqp://broker/")
    try:
        assert spool._db.execute("PRAGMA secure_delete").fetchone()[0] == _FAST
    finally:
        spool.close()


def test_the_embedded_bus_deletes_without_zeroing(tmp_path: Path) -> None:
    conn = connect(tmp_path / "bus.db", "full")
    try:
        assert conn.execute("PRAGMA secure_delete").fetchone()[0] == _FAST
    finally:
        conn.close()
