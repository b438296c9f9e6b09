"""Every stored message's life cycle starts at `sent`: its publisher and the time it sent it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from store_traffic import Traffic
from typer.testing import CliRunner

from stalwart.cli import build_app
from stalwart.store import Store
from stalwart.store.queries import counts_by_state, get_message


def _show(store_url: str, tmp_path: Path, message_id: str) -> list[str]:
    config = tmp_path / "stalwart.toml"
    config.write_text(f'[store]\nurl = "{store_url}"\n')
    result = CliRunner().invoke(
        build_app(["store"]), ["show", message_id, "-c", str(config)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    return result.output.splitlines()


async def test_show_lists_sent_first_with_publisher_and_time(
    store: Store, store_url: str, traffic: Traffic, tmp_path: Path
) -> None:
    # Given a message sent by the dispatcher, then received and consumed at qa
    env = traffic.message(sender="dispatcher@jao/host-1")
    later = env.created_at + timedelta(seconds=2)
    steps = [traffic.step(env, "qa", s, at=later) for s in ("received", "consumed")]
    await store.write([env, traffic.lifecycle(*steps)])
    # When its detail is read
    detail = await get_message(store, env.id)
    # Then its life cycle starts at sent, by its publisher at its creation time
    assert detail is not None
    assert (detail.sent.state, detail.sent.sender, detail.sent.service) == (
        "sent",
        "dispatcher@jao/host-1",
        "dispatcher",
    )
    assert detail.sent.at == env.created_at
    assert list(detail.model_dump(mode="json"))[3:5] == ["sent", "deliveries"]
    # And sent is no service's delivery: the counts by state do not hold it
    assert await counts_by_state(store) == {"qa": {"consumed": 1}}
    # And `stalwart show` lists it before the deliveries
    lines = await asyncio.to_thread(_show, store_url, tmp_path, env.id)
    timeline = [line for line in lines if " sent " in line or " consumed " in line]
    assert timeline[0].split()[:2] == ["dispatcher", "sent"]
    assert env.created_at.strftime("%m-%d %H:%M:%S") in timeline[0]
    assert timeline[1].split()[:2] == ["qa", "consumed"]
