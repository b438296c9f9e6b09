"""The transfer service as sites run it: a real ServiceRunner on the embedded bus."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from integrity_support import BLOCK

from stalwart.bus import QueueSpec, Transport
from stalwart.config import Settings
from stalwart.envelope import Envelope
from stalwart.errors import ConfigError
from stalwart.integrity.catalog import Catalog
from stalwart.integrity.ingest import ingest_file
from stalwart.integrity.manifest import MANIFEST_SUFFIX, PARITY_SUFFIX
from stalwart.integrity.service import TransferReply, TransferRequest, build_service, transfer_topic
from stalwart.integrity.settings import integrity_settings
from stalwart.service import ServiceRunner, load_service


@pytest.fixture
async def transfer_service(bus: Transport, settings: Settings) -> AsyncIterator[ServiceRunner]:
    runner = ServiceRunner(build_service("eu"), bus, settings)
    await runner.start()
    try:
        yield runner
    finally:
        await runner.stop(grace=5.0)


@pytest.fixture
async def replies(
    bus: Transport, unique: str
) -> AsyncIterator[tuple[str, asyncio.Queue[Envelope]]]:
    topic = f"test.replies.r{unique}"
    spec = QueueSpec(name=f"replies-{unique}", patterns=(topic,), ephemeral=True)
    await bus.declare(spec)
    queue: asyncio.Queue[Envelope] = asyncio.Queue()

    async def collect() -> None:
        async for delivery in bus.consume(spec.name, 16):
            if delivery.envelope is not None:
                await queue.put(delivery.envelope)
            await delivery.ack()

    task = asyncio.create_task(collect())
    try:
        yield topic, queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _ask(bus: Transport, reply_to: str, request: TransferRequest) -> None:
    await bus.publish([Envelope.new(transfer_topic("eu"), request, reply_to=reply_to)])


async def test_transfer_request_is_served_verified_and_announced(
    transfer_service, bus, replies, events, settings, make_file, tmp_path: Path
) -> None:
    # Given an ingested file at jao and the eu transfer service running
    path, data = make_file("jao")
    await asyncio.to_thread(ingest_file, path, integrity_settings(settings).ingest_options())
    reply_to, inbox = replies
    # When eu is asked over the bus to fetch it
    dst = tmp_path / "eu" / "f.bin"
    await _ask(bus, reply_to, TransferRequest(src=str(path), dst=str(dst)))
    # Then the reply says it was transferred and verified
    reply = TransferReply.model_validate((await asyncio.wait_for(inbox.get(), 30)).body)
    assert reply.outcome == "transferred" and reply.site == "eu" and reply.size == len(data)
    assert reply.bytes_retransmitted == 0 and reply.digest and reply.digest.startswith("blake3:")
    assert dst.read_bytes() == data
    # And the outcome is an event with the bytes moved, and a catalogued replica
    event = (await events.wait("transferred"))[0]
    assert event["site"] == "eu" and event["bytes_moved"] == reply.bytes_moved > len(data)
    catalog = await Catalog.open(settings.store.url)
    try:
        replicas = await catalog.replicas("eu")
        assert replicas[0]["path"] == str(dst) and replicas[0]["state"] == "ok"
        assert (await catalog.transfers())[0]["outcome"] == "transferred"
    finally:
        await catalog.close()


async def test_failed_request_replies_failed_and_announces_it(
    transfer_service, bus, replies, events, tmp_path: Path
) -> None:
    # Given a request for a source that does not exist
    reply_to, inbox = replies
    await _ask(bus, reply_to, TransferRequest(src=str(tmp_path / "nope"), dst=str(tmp_path / "x")))
    # Then the reply and the event both say failed, with what to do
    reply = TransferReply.model_validate((await asyncio.wait_for(inbox.get(), 30)).body)
    assert reply.outcome == "failed" and reply.error and "does not exist" in reply.error
    assert "does not exist" in (await events.wait("failed"))[0]["detail"]


async def test_manifest_made_on_the_first_hop_verifies_the_next(
    transfer_service, bus, replies, make_file, tmp_path: Path
) -> None:
    # Given a plain file (no manifest) at jao
    path, data = make_file("jao", size=BLOCK * 12)
    reply_to, inbox = replies
    dst = tmp_path / "eu" / "f.bin"
    # When eu fetches it, Then the service builds manifest and parity while streaming
    await _ask(bus, reply_to, TransferRequest(src=str(path), dst=str(dst)))
    first = TransferReply.model_validate((await asyncio.wait_for(inbox.get(), 30)).body)
    assert first.outcome == "transferred"
    sidecars = [str(dst) + MANIFEST_SUFFIX, str(dst) + PARITY_SUFFIX]
    assert all(await asyncio.to_thread(lambda: [os.path.exists(p) for p in sidecars]))
    # When that replica is copied on, Then the first hop's manifest verifies it
    again = tmp_path / "eu" / "copy" / "g.bin"
    await _ask(bus, reply_to, TransferRequest(src=str(dst), dst=str(again)))
    second = TransferReply.model_validate((await asyncio.wait_for(inbox.get(), 30)).body)
    assert second.outcome == "transferred" and again.read_bytes() == data
    assert second.digest == first.digest and second.name == "f.bin"


async def test_chaos_mode_corrupts_copies_and_they_are_repaired(
    bus, settings, replies, events, make_file, tmp_path: Path
) -> None:
    # Given a transfer service that corrupts every first copy (demo chaos)
    runner = ServiceRunner(build_service("eu", chaos=1.0, rng=random.Random(7)), bus, settings)
    await runner.start()
    try:
        path, data = make_file("jao", size=BLOCK * 20)
        reply_to, inbox = replies
        # When a file is requested into a directory
        await _ask(bus, reply_to, TransferRequest(src=str(path), dst=str(tmp_path / "eu") + "/"))
        reply = TransferReply.model_validate((await asyncio.wait_for(inbox.get(), 30)).body)
    finally:
        await runner.stop(grace=5.0)
    # Then the damage was found on the disk and rebuilt from parity, nothing re-sent
    assert reply.outcome == "repaired" and reply.blocks_repaired >= 1
    assert reply.bytes_retransmitted == 0 and reply.bytes_refetched == 0
    assert (tmp_path / "eu" / "f.bin").read_bytes() == data
    assert (await events.wait("repaired"))[0]["blocks_repaired"] == reply.blocks_repaired


def test_chaos_share_is_validated() -> None:
    with pytest.raises(ConfigError, match="between 0 and 1"):
        build_service("eu", chaos=1.5)


def test_service_is_addressable_as_a_run_target() -> None:
    svc = load_service("stalwart.integrity.service:transfer_na")
    assert svc.name == "transfer-na" and svc.site == "na"
    assert [h.pattern.text for h in svc.handlers] == [transfer_topic("na")]
