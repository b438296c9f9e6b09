"""GroupCommit: concurrent requests share batches, each caller gets its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from stalwart.service._batch import GroupCommit


async def test_requests_made_while_a_batch_runs_share_the_next_one() -> None:
    batches: list[list[int]] = []

    async def run(payloads: Sequence[int]) -> list[int]:
        batches.append(list(payloads))
        await asyncio.sleep(0.01)
        return [p * 10 for p in payloads]

    batch = GroupCommit(run)
    results = await asyncio.gather(*(batch(n) for n in range(50)))
    assert results == [n * 10 for n in range(50)]
    assert len(batches) < 5  # not one transaction per request
    assert sorted(p for b in batches for p in b) == list(range(50))


async def test_a_failed_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    calls = 0

    async def run(payloads: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("store away")
        return list(payloads)

    batch = GroupCommit(run)
    with pytest.raises(RuntimeError, match="store away"):
        await batch(1)
    assert await batch(2) == 2


async def test_batches_are_capped() -> None:
    sizes: list[int] = []

    async def run(payloads: Sequence[int]) -> list[int]:
        sizes.append(len(payloads))
        await asyncio.sleep(0)
        return list(payloads)

    batch = GroupCommit(run, max_batch=8)
    await asyncio.gather(*(batch(n) for n in range(30)))
    assert max(sizes) <= 8 and sum(sizes) == 30
