"""Quorum-queue leader moves as ``sys.ha.queue-leader`` events.

RabbitMQ elects a new leader for a quorum queue when its leader's node dies,
stops or is cut off; AMQP clients are not told. :class:`QueueLeaderWatch`
reads every queue's leader periodically (``rabbitmqctl list_queues name
leader`` on any node that answers: :func:`rabbitmqctl_leaders`) and publishes
a :class:`QueueLeaderMove` for each queue whose leader changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence

from stalwart.events import QueueLeaderMove
from stalwart.service import EventPublisher

__all__ = ["LeaderReader", "QueueLeaderWatch", "rabbitmqctl_leaders"]

_log = logging.getLogger("stalwart.ha.queue_leaders")

LeaderReader = Callable[[], Awaitable[Mapping[str, str]]]
"""Returns ``{queue: leader node}``; raises OSError or RuntimeError when it cannot read."""


class QueueLeaderWatch:
    """Publishes a :class:`QueueLeaderMove` for every leader change it reads (one the bus
    does not take is published again at the next read)."""

    def __init__(
        self, read: LeaderReader, events: EventPublisher, *, prefix: str = "", interval: float = 2.0
    ) -> None:
        self._read = read
        self._events = events
        self._prefix = prefix
        self.interval = interval
        self._leaders: dict[str, str] = {}
        self._unpublished: list[QueueLeaderMove] = []

    async def step(self) -> list[QueueLeaderMove]:
        """Publish the moves the bus refused before, read the leaders once, and publish
        and return the moves since the last read."""
        # A move happens when the broker is in trouble: one the bus refused is tried
        # again first, as a reading may then take long or fail.
        await self._publish([])
        try:
            now = {q: n for q, n in (await self._read()).items() if q.startswith(self._prefix)}
        except Exception as exc:  # a probe of a broker in trouble: whatever it was, next step
            _log.warning("queue leaders not read: %r", exc)
            return []
        moves = [
            QueueLeaderMove(queue=queue, from_node=self._leaders[queue], to_node=node)
            for queue, node in sorted(now.items())
            if node and queue in self._leaders and self._leaders[queue] != node
        ]
        self._leaders.update({q: n for q, n in now.items() if n})
        await self._publish(moves)
        return moves

    @property
    def unpublished(self) -> int:
        """Moves read but not yet taken by the bus."""
        return len(self._unpublished)

    async def _publish(self, moves: list[QueueLeaderMove]) -> None:
        self._unpublished += moves
        self._unpublished = [
            move for move in self._unpublished if not await self._events.publish(move)
        ]

    async def run(self, stop: asyncio.Event) -> None:
        """Read every ``interval`` seconds until ``stop``."""
        while not stop.is_set():
            await self.step()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await stop.wait()


async def rabbitmqctl_leaders(
    commands: Sequence[Sequence[str]],
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> dict[str, str]:
    """``{queue: leader}`` from the first of ``commands`` (each a ``rabbitmqctl -n NODE``
    prefix, one per node) that answers within ``timeout`` seconds."""
    errors = []
    for prefix in commands:
        argv = [*prefix, "list_queues", "name", "leader", "--formatter", "json", "--quiet"]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env) if env is not None else None,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError:
            errors.append(f"{' '.join(prefix)}: no answer within {timeout:.0f}s")
            continue
        finally:
            if proc.returncode is None:  # timed out, or the watch was cancelled
                proc.kill()
                await proc.wait()
        if proc.returncode == 0:
            rows = json.loads(out or b"[]")
            return {str(r["name"]): str(r.get("leader") or "") for r in rows}
        errors.append(f"{' '.join(prefix)}: {err.decode(errors='replace').strip()[-200:]}")
    raise RuntimeError("no node answered list_queues: " + "; ".join(errors))
