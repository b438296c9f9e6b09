"""`stalwart status` leaves out instances and programs gone for longer than
[store] forget_after, and `stalwart store prune` deletes them."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from test_forget_instances import beat
from typer.testing import CliRunner

from stalwart.cli import build_app
from stalwart.dashboard.storesource import StoreSource
from stalwart.envelope import utcnow
from stalwart.store import Store
from stalwart.store.engine import make_engine
from stalwart.watchdog._store import watchdog_programs


async def _history(url: str) -> None:
    """Instances and programs as a store keeps them after many restarts."""
    now = utcnow()
    async with await Store.open(url) as store:
        await store.write([beat("qa-now", now), beat("qa-old", now - timedelta(days=3))])
    engine = make_engine(url)
    try:
        old = now - timedelta(days=3)
        rows = [("stopped-long-ago", "stopped", old), ("steady", "running", old)]
        async with engine.begin() as conn:
            for program, state, at in rows:
                await conn.execute(
                    watchdog_programs.insert().values(
                        host="h",
                        watchdog="w",
                        program=program,
                        instance=0,
                        state=state,
                        restarts=0,
                        updated_at=at,
                        history="[]",
                    )
                )
    finally:
        await engine.dispose()


def test_status_forgets_the_long_gone_and_prune_deletes_them(tmp_path: Path) -> None:
    # Given a store with an instance silent for three days and a program stopped as long
    url = f"sqlite:///{tmp_path}/store.db"
    config = tmp_path / "stalwart.toml"
    config.write_text(f'[store]\nurl = "{url}"\nforget_after = "24h"\n')
    asyncio.run(_history(url))
    app, cli = build_app(["status", "store"]), CliRunner()
    # When the operator asks for the status
    shown = cli.invoke(app, ["status", "--json", "-c", str(config)], env={"COLUMNS": "200"})
    # Then neither is listed, while a program running unchanged for days still is
    assert shown.exit_code == 0, shown.output
    assert "qa-now" in shown.output and "qa-old" not in shown.output
    assert "steady" in shown.output and "stopped-long-ago" not in shown.output
    # When the store is pruned, Then both are deleted, and it says so
    pruned = cli.invoke(app, ["store", "prune", "-o", "90d", "-c", str(config)])
    assert pruned.exit_code == 0, pruned.output
    assert "forgot 1 instance(s) and 1 program(s)" in pruned.output
    config.write_text(f'[store]\nurl = "{url}"\nforget_after = "1000d"\n')
    again = cli.invoke(app, ["status", "--json", "-c", str(config)], env={"COLUMNS": "200"})
    assert "qa-old" not in again.output and "stopped-long-ago" not in again.output


async def test_the_dashboard_leaves_them_out_too(tmp_path: Path) -> None:
    # Given the same history, When the dashboard's source lists the instances
    url = f"sqlite:///{tmp_path}/store.db"
    await _history(url)
    source = StoreSource(url, forget_after=24 * 3600.0)
    try:
        listed = [i.instance for i in await source.components()]
    finally:
        await source.close()
    # Then the long-silent instance is not among them
    assert listed == ["qa-now"]
