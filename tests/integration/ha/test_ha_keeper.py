"""The lease keeper on SQLite: contend, hold, hand over, and report every change."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stalwart.ha import Lease, LeaseKeeper, request_step_down
from stalwart.store.engine import make_engine


async def test_keepers_hand_over_on_release_and_on_step_down_request(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    a = LeaseKeeper(Lease(engine, "dispatcher", ttl=2.0, holder="a"), renew_every=0.3, poll=0.05)
    b = LeaseKeeper(Lease(engine, "dispatcher", ttl=2.0, holder="b"), renew_every=0.3, poll=0.05)
    try:
        # Given a holds the role
        a.start()
        change = await a.next_change(5.0)
        assert change is not None and (change.kind, change.token) == ("acquired", 1)
        b.start()
        # When a stops and releases
        await a.stop(release=True)
        started = time.monotonic()
        change = await b.next_change(5.0)
        # Then b takes over at once, not after the 2 s lease
        assert change is not None and (change.kind, change.token) == ("acquired", 2)
        assert time.monotonic() - started < 1.0
        # When an operator requests a step-down
        assert await request_step_down(engine, "dispatcher") == 2
        change = await b.next_change(5.0)
        # Then b reports the loss and no longer holds
        assert change is not None and change.kind == "lost"
        assert "step-down" in change.reason
        assert b.holding is None and not b.lease.held()
    finally:
        await a.stop()
        await b.stop()
        await engine.dispose()


def test_renewing_too_rarely_is_refused(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/store.db")
    with pytest.raises(ValueError, match="half the lease"):
        LeaseKeeper(Lease(engine, "x", ttl=1.0), renew_every=0.5, poll=0.1)
