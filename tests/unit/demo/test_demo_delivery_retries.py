"""The demo's delivery outlasts transient infrastructure faults: its retries span
minutes, not the 8 s in which five attempts gave up on two full disks in a row."""

from __future__ import annotations

from stalwart.demo.services import delivery
from stalwart.service import Service


def _longest_wait(service: Service, initial: float = 0.5, cap: float = 60.0) -> float:
    """Seconds the retries of ``service`` may wait in all (backoff caps, full jitter)."""
    attempts = service.max_attempts or 5
    return sum(min(cap, initial * 2**n) for n in range(attempts - 1))


def test_delivery_keeps_trying_for_minutes() -> None:
    assert _longest_wait(delivery) >= 240.0
    assert _longest_wait(Service("plain")) < 10.0  # the bus's default gives up in seconds
