"""Input that does not decode is a message in the store, under the id services record too."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from store_traffic import Traffic, put_raw, running
from typer.testing import CliRunner

from stalwart.bus import Transport
from stalwart.cli import build_app
from stalwart.envelope import decode, message_id_of
from stalwart.errors import DecodeError
from stalwart.store import PERSIST_QUEUE, Persister, PersistOptions, Store
from stalwart.store.queries import MessageFilter, get_message, list_messages
from waiting import until

_FAST = PersistOptions(batch_size=50, batch_interval=0.02, prefetch=100)
_CLAIMING = {
    "id": "foreign-0001",
    "topic": "qa.verify.eu",
    "sender": "legacy-tool@eu/host-7",
    "created_at": "2026-11-22T03:20:37.547626Z",
    "colour": "red",  # an unknown field: the envelope is invalid
}


def _id_of(raw: bytes) -> str:
    """The id a service records its rejection of ``raw`` under."""
    try:
        decode(raw)
    except DecodeError as exc:
        return message_id_of(raw, exc)
    raise AssertionError("expected bytes that do not decode")


def _messages_cli(store_url: str, tmp_path: Path, *args: str) -> dict[str, object]:
    config = tmp_path / "stalwart.toml"
    config.write_text(f'[store]\nurl = "{store_url}"\n')
    result = CliRunner().invoke(
        build_app(["store"]), ["messages", "-c", str(config), "--json", *args]
    )
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.output))


async def test_undecodable_input_is_listed_under_the_id_services_use(
    store: Store, store_url: str, bus: Transport, traffic: Traffic, tmp_path: Path
) -> None:
    # Given bytes that claim a valid id, bytes that claim a 65-character id, and junk
    claiming = json.dumps(_CLAIMING).encode()
    too_long = json.dumps({"id": "z" * 65, "topic": "qa.verify.eu"}).encode()
    junk = b"\xff\x00 not json"
    persister = Persister(bus, store, _FAST)
    await persister.declare()
    for raw in (claiming, too_long, junk):
        put_raw(bus, raw)
    async with running(persister):
        # When the subscriber consumes them
        async def settled() -> bool:
            stats = await bus.queue_stats(PERSIST_QUEUE)
            letters = await bus.dead_letters(PERSIST_QUEUE)
            return len(letters) == 3 and stats.ready == stats.inflight == 0

        await until(settled, 30.0, "three dead letters, the queue drained")
    # Then each is a message of kind Undecodable, under the claimed id when it is
    # valid and raw-<hash> otherwise, and the bytes stay whole in the dead letters
    ids = {raw: _id_of(raw) for raw in (claiming, too_long, junk)}
    assert ids[claiming] == "foreign-0001"
    assert all(re.fullmatch("raw-[0-9a-f]{32}", ids[raw]) for raw in (too_long, junk))
    page = await list_messages(store, MessageFilter(kind="Undecodable"))
    assert {m.id: m.topic for m in page.items} == {
        ids[claiming]: "qa.verify.eu",
        ids[too_long]: "qa.verify.eu",
        ids[junk]: "undecodable",
    }
    assert {letter.raw for letter in await bus.dead_letters(PERSIST_QUEUE)} == set(ids)
    # And what the bytes claimed, the decode error and their start are kept
    detail = await get_message(store, ids[claiming])
    assert detail is not None and detail.envelope.sender == "legacy-tool@eu/host-7"
    assert detail.envelope.created_at.isoformat() == "2026-11-22T03:20:37.547626+00:00"
    assert "colour" in detail.envelope.body["error"]
    assert detail.envelope.body["raw"] == claiming.decode()
    junk_body = (await get_message(store, ids[junk])).envelope.body  # type: ignore[union-attr]
    assert junk_body["raw"] == "\ufffd\\x00 not json"
    # And a rejection a service records under the same id joins the message
    await store.write([traffic.lifecycle(traffic.step(detail.envelope, "qa", "rejected"))])
    joined = await get_message(store, ids[claiming])
    assert joined is not None and [d.state for d in joined.deliveries] == ["rejected"]
    # And `stalwart messages` lists them
    listed = await asyncio.to_thread(_messages_cli, store_url, tmp_path, "--kind", "Undecodable")
    assert {m["id"] for m in listed["items"]} == set(ids.values())  # type: ignore[attr-defined]
