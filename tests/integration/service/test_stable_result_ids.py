"""A result published again by a handler run again for the same message is taken once."""

from __future__ import annotations

from typing import Any

from stalwart.bus import Transport
from stalwart.config import Settings
from stalwart.envelope import Envelope
from stalwart.service import Context, Service, ServiceRunner
from waiting import until


async def test_a_result_with_a_stable_id_is_taken_once_downstream(
    bus: Transport, settings: Settings, unique: str
) -> None:
    # Given a step that publishes its result with ctx.stable_id, and an idempotent
    # consumer of the results
    results: list[str] = []
    published: list[str] = []
    step, review = Service(f"step-{unique}"), Service(f"review-{unique}")

    @step.handler(f"work.{unique}")
    async def work(ctx: Context, body: Any) -> None:
        sent = await ctx.publish(f"done.{unique}", body, id=ctx.stable_id("done"))
        published.append(sent.id)

    @review.handler(f"done.{unique}", idempotent=True)
    async def take(ctx: Context, body: Any) -> None:
        results.append(ctx.envelope.id)

    runners = [ServiceRunner(step, bus, settings), ServiceRunner(review, bus, settings)]
    for runner in runners:
        await runner.start()
    try:
        # When the step runs twice for one message (as after a crash before its ack),
        # and once for another
        cause = Envelope.new(f"work.{unique}", {"n": 1})
        await bus.publish([cause])
        await until(lambda: len(published) == 1, 10.0, "the first run")
        await bus.publish([cause])
        await until(lambda: len(published) == 2, 10.0, "the second run")
        await bus.publish([Envelope.new(f"work.{unique}", {"n": 2})])
        await until(lambda: len(results) == 2, 10.0, "two results taken")
        # Then both runs published one id, and the consumer took it once
        assert published[0] == published[1]
        await until(lambda: len(published) == 3, 10.0, "the other message's run")
        assert sorted(results) == sorted({published[0], published[2]})
    finally:
        for runner in runners:
            await runner.stop(grace=1.0)
