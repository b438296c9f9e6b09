"""Services for the dashboard's browser tests, run as real child processes.

``qa`` checks units of work and publishes a verdict (a causal chain); a body
with ``"poison": true`` always fails, so it ends in the dead-letter queue.
"""

from __future__ import annotations

from typing import Any

from stalwart.service import Context, Service

qa = Service("qa", site="eu", heartbeat_interval=1.0, max_attempts=2)


@qa.handler("work.qa.#")
async def check(ctx: Context, body: Any) -> None:
    if isinstance(body, dict) and body.get("poison"):
        raise RuntimeError("this unit of work is poison: the checker cannot read it")
    unit = body.get("unit") if isinstance(body, dict) else None
    await ctx.publish("work.verdict", {"unit": unit, "ok": True}, kind="Verdict")
