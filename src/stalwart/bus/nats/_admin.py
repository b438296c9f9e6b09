"""The directory, queue statistics and dead letters of the nats transport.

The directory is the work stream's consumers: each describes its service's
queue settings (see ``_names``). Dead letters are the messages on
``N-dead.S`` in the dead-letter stream; a dead letter's key is its stream
sequence, so that list, requeue and purge address the same message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime

from nats.js.api import ConsumerInfo
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from stalwart.bus._transport import DeadLetter, QueueSpec, QueueStats
from stalwart.bus.nats._consumer import header_int
from stalwart.bus.nats._names import (
    ATTEMPT_HEADER,
    DIED_AT_HEADER,
    REASON_HEADER,
    TOPIC_HEADER,
    dead_stream,
    dead_subject,
    direct_subject,
    spec_from_description,
    work_stream,
)
from stalwart.envelope import decode, utcnow
from stalwart.errors import DecodeError, TransportError

__all__ = ["Admin"]

_PAGE = 256  # consumers per listing page (the server's limit)


class Admin:
    """Reads and changes a namespace's directory and dead letters through ``js``."""

    def __init__(self, js: JetStreamContext, namespace: str, display: str) -> None:
        self._js = js
        self._ns = namespace
        self._display = display

    async def consumers(self) -> list[tuple[ConsumerInfo, QueueSpec]]:
        """Every stalwart consumer of the work stream with the queue it serves."""
        found: list[tuple[ConsumerInfo, QueueSpec]] = []
        offset = 0
        while True:
            page = await self._js.consumers_info(work_stream(self._ns), offset=offset or None)
            for info in page:
                spec = spec_from_description(info.config.description)
                if spec is not None:
                    found.append((info, spec))
            if len(page) < _PAGE:
                return found
            offset += len(page)

    async def of(self, queue: str) -> list[ConsumerInfo]:
        """The consumers of ``queue``; TransportError if it has none."""
        mine = [info for info, spec in await self.consumers() if spec.name == queue]
        if not mine:
            raise TransportError(
                f"queue {queue!r} does not exist on {self._display}; check the service name "
                "(see `stalwart dlq list`) or start the service so that it declares it"
            )
        return mine

    async def queues(self) -> list[str]:
        return sorted({spec.name for _, spec in await self.consumers() if not spec.ephemeral})

    async def stats(self, queue: str, delayed: int) -> QueueStats:
        """Counts across every consumer of ``queue``.

        JetStream counts a message NAKed with a delay as pending acknowledgement:
        ``delayed`` is how many of those this process knows of, told apart here.
        """
        mine = await self.of(queue)
        ready = sum(info.num_pending or 0 for info in mine)
        pending = sum(info.num_ack_pending or 0 for info in mine)
        return QueueStats(
            name=queue,
            ready=ready,
            inflight=max(0, pending - delayed),
            delayed=delayed,
            dead=await self.dead_count(queue),
        )

    async def dead_count(self, queue: str) -> int:
        subject = dead_subject(self._ns, queue)
        info = await self._js.stream_info(dead_stream(self._ns), subjects_filter=subject)
        return int((info.state.subjects or {}).get(subject, 0))

    async def dead_letters(self, queue: str, limit: int) -> list[DeadLetter]:
        subject = dead_subject(self._ns, queue)
        letters: list[DeadLetter] = []
        seq = 0
        while len(letters) < limit:
            try:
                raw = await self._js.get_msg(
                    dead_stream(self._ns), seq=seq + 1, subject=subject, next=True
                )
            except NotFoundError:
                break
            seq = int(raw.seq or seq + 1)
            letters.append(_letter(queue, seq, raw.data or b"", raw.headers or {}))
        return letters

    async def requeue(self, queue: str, keys: Sequence[str] | None) -> int:
        """Copies of the chosen dead letters on ``N-to.S`` as first attempts, then deleted."""
        moved = 0
        for letter in await self._chosen(queue, keys):
            headers = {ATTEMPT_HEADER: "1"}
            if letter.envelope is not None:
                headers[TOPIC_HEADER] = letter.envelope.topic
            await self._js.publish(direct_subject(self._ns, queue), letter.raw, headers=headers)
            with contextlib.suppress(NotFoundError):
                await self._js.delete_msg(dead_stream(self._ns), int(letter.key))
            moved += 1
        return moved

    async def purge(self, queue: str, keys: Sequence[str] | None) -> int:
        if keys is None:
            count = await self.dead_count(queue)
            await self._js.purge_stream(
                dead_stream(self._ns), subject=dead_subject(self._ns, queue)
            )
            return count
        removed = 0
        for letter in await self._chosen(queue, keys):
            with contextlib.suppress(NotFoundError):
                removed += bool(await self._js.delete_msg(dead_stream(self._ns), int(letter.key)))
        return removed

    async def _chosen(self, queue: str, keys: Sequence[str] | None) -> list[DeadLetter]:
        letters = await self.dead_letters(queue, limit=10**9)
        if keys is None:
            return letters
        wanted = set(keys)
        return [letter for letter in letters if letter.key in wanted]


def _letter(queue: str, seq: int, data: bytes, headers: dict[str, str]) -> DeadLetter:
    try:
        envelope = decode(data)
    except DecodeError:
        envelope = None
    try:
        died_at = datetime.fromisoformat(headers.get(DIED_AT_HEADER, ""))
    except ValueError:
        died_at = utcnow()
    return DeadLetter(
        envelope=envelope,
        raw=data,
        queue=queue,
        reason=headers.get(REASON_HEADER, ""),
        attempts=header_int(headers.get(ATTEMPT_HEADER), 1),
        died_at=died_at,
        key=str(seq),
    )
