"""A campaign stopped by SIGTERM or SIGINT unwinds like one stopped by Ctrl-C: its
cleanup runs (heals, the demo stopped, namespaces and servers removed)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from stalwart.cli.chaos import until_signalled


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_cancels_the_campaign_and_its_cleanup_runs(signum: int) -> None:
    cleaned: list[str] = []
    running = asyncio.Event()

    async def campaign() -> None:
        try:
            running.set()
            await asyncio.sleep(30)
        finally:
            cleaned.append("healed and removed")

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in a background job
    try:
        work = asyncio.ensure_future(until_signalled(campaign()))
        await running.wait()
        os.kill(os.getpid(), signum)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(work, 5.0)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert cleaned == ["healed and removed"]
    # the process's own handling of the signal is back once the campaign ended
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
