"""The leases of an amqp consumer: one timer releases whatever is due."""

from __future__ import annotations

import asyncio

from stalwart.bus.amqp._leases import Leases


def _leases() -> tuple[Leases[str], list[str]]:
    expired: list[str] = []
    return Leases(expired.append), expired


async def test_a_lease_not_dropped_expires_and_a_dropped_one_does_not() -> None:
    leases, expired = _leases()
    leases.hold("a", 0.02)
    leases.hold("b", 0.02)
    leases.drop("b")
    await asyncio.sleep(0.1)
    assert expired == ["a"]


async def test_renewing_pushes_the_deadline() -> None:
    leases, expired = _leases()
    leases.hold("a", 0.02)
    leases.hold("a", 60.0)  # extended before its first deadline
    await asyncio.sleep(0.1)
    assert expired == []
    leases.hold("a", 0.02)  # and renewed shorter: the new deadline counts
    await asyncio.sleep(0.1)
    assert expired == ["a"]


async def test_a_shorter_lease_after_a_longer_one_expires_first() -> None:
    # The timer is armed for the longer one; the shorter must re-arm it earlier.
    leases, expired = _leases()
    leases.hold("long", 5.0)
    leases.hold("short", 0.02)
    await asyncio.sleep(0.1)
    assert expired == ["short"]
    leases.clear()


async def test_clear_stops_every_lease() -> None:
    leases, expired = _leases()
    leases.hold("a", 0.02)
    leases.clear()
    await asyncio.sleep(0.06)
    assert expired == []
