"""The queue directory: which services declared which queues, kept on the broker.

Plain AMQP cannot list queues (that needs the management plugin), so every
``declare`` leaves a small persistent record in ``<exchange>.directory``.
Reading browses the records (get, then give back by closing the channel);
writing adds a record and removes older ones for the same service, so the
newest record of a service always survives concurrent declares.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, DeliveryMode

from stalwart.bus._transport import QueueSpec
from stalwart.bus.amqp._channels import temporary_channel

__all__ = ["Directory"]

_MAX_RECORDS = 10_000


def _record(spec: QueueSpec) -> dict[str, Any]:
    data = asdict(spec)
    data["patterns"] = sorted(spec.patterns)
    data.pop("ephemeral", None)
    return data


def _spec(data: dict[str, Any]) -> QueueSpec | None:
    try:
        return QueueSpec(
            name=str(data["name"]),
            patterns=tuple(data.get("patterns", ())),
            max_attempts=int(data.get("max_attempts", 5)),
            retry_initial=float(data.get("retry_initial", 0.5)),
            retry_max=float(data.get("retry_max", 60.0)),
            lease=float(data.get("lease", 30.0)),
        )
    except (KeyError, TypeError, ValueError):
        return None


class Directory:
    """Records of declared (non-ephemeral) queues in one durable queue."""

    def __init__(self, queue_name: str, arguments: dict[str, Any]) -> None:
        self.queue_name = queue_name
        self._arguments = arguments

    async def ensure(self, channel: AbstractChannel) -> None:
        await channel.declare_queue(self.queue_name, durable=True, arguments=self._arguments)

    async def _scan(
        self, conn: AbstractConnection, drop: Callable[[dict[str, Any]], bool] | None = None
    ) -> list[dict[str, Any]]:
        """All records (newest last); acks (deletes) those for which ``drop`` is true."""
        records: list[dict[str, Any]] = []
        async with temporary_channel(conn) as channel:
            queue = await channel.get_queue(self.queue_name, ensure=False)
            for _ in range(_MAX_RECORDS):
                message = await queue.get(no_ack=False, fail=False, timeout=5.0)
                if message is None:
                    break
                try:
                    data = json.loads(message.body)
                except ValueError:
                    data = None
                if not isinstance(data, dict) or (drop is not None and drop(data)):
                    await message.ack()
                    continue
                records.append(data)
        records.sort(key=lambda r: float(r.get("declared_at", 0.0)))
        return records

    async def specs(self, conn: AbstractConnection) -> dict[str, QueueSpec]:
        """The newest declared spec of every service."""
        found: dict[str, QueueSpec] = {}
        for data in await self._scan(conn):
            spec = _spec(data)
            if spec is not None:
                found[spec.name] = spec
        return found

    async def record(self, conn: AbstractConnection, spec: QueueSpec) -> None:
        """Record ``spec`` as the newest declaration of its service."""
        wanted = _record(spec)
        current = [r for r in await self._scan(conn) if r.get("name") == spec.name]
        if current:
            latest = {k: v for k, v in current[-1].items() if k != "declared_at"}
            if latest == wanted and len(current) == 1:
                return
        stamp = time.time()
        async with temporary_channel(conn) as channel:
            await channel.default_exchange.publish(
                aio_pika.Message(
                    json.dumps({**wanted, "declared_at": stamp}).encode(),
                    content_type="application/json",
                    delivery_mode=DeliveryMode.PERSISTENT,
                ),
                routing_key=self.queue_name,
                timeout=10.0,
            )
        await self._scan(
            conn,
            drop=lambda r: r.get("name") == spec.name and float(r.get("declared_at", 0)) < stamp,
        )
