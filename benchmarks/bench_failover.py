"""Failover time of an HA service over repeated kill -9 of the active replica.

Three replica processes (``stalwart run --ha``, each started from a config file
as an operator or the watchdog starts one) of a small service share a
lease in the store. Each round waits until a standby is contending (seen in
``stalwart.ha.status``), then a random part of the renewal period,
kills the active replica with SIGKILL, and measures the time from the kill to
the successor's acquisition (stamped by the database's clock, on this host),
then starts a replacement so three replicas stay up. It reports median, p95
and max per lease time, against the target (lease + 1 s) and against the
peer figure: Patroni's documented defaults (ttl 30 s, loop_wait 10 s) give a
worst-case failover of about ttl + loop_wait = 40 s. That peer figure is
documented, not measured here (Patroni needs a DCS such as etcd).

Run: ``.venv/bin/python -m benchmarks.bench_failover [--kills 20] [--leases 5,1]
[--store-url postgresql://postgres@127.0.0.1/db]``
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.progress import Progress
from sqlalchemy.ext.asyncio import AsyncEngine

from stalwart.ha import status
from stalwart.store.engine import open_engine

__all__ = ["main"]

_ROOT = Path(__file__).resolve().parent.parent
_ROLE = "service.bench-failover"
_REPLICAS = 3
PATRONI_TTL = 30.0
PATRONI_LOOP_WAIT = 10.0
PATRONI_WORST = PATRONI_TTL + PATRONI_LOOP_WAIT


def _spawn(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(_ROOT), env.get("PYTHONPATH", "")])
    command = ["stalwart", "run", "--ha", "benchmarks._failover_app:svc", "-c", str(config)]
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", *command], env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def _holder(engine: AsyncEngine, exclude: int | None, timeout: float) -> tuple[int, float]:
    """(pid, acquired_at) of the live holder whose pid is not ``exclude``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for lease in (await status(engine)).leases:
            if lease.role == _ROLE and lease.live and lease.holder:
                pid = int(lease.holder.rsplit("-", 2)[1])
                if pid != exclude:
                    return pid, lease.acquired_at
        await asyncio.sleep(0.01)
    raise TimeoutError(f"no holder of {_ROLE} within {timeout}s")


async def _standby_ready(engine: AsyncEngine, active: int, timeout: float) -> None:
    """Wait until another replica is contending (seen standing by within a second)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for replica in (await status(engine)).replicas:
            pid = int(replica.holder.rsplit("-", 2)[1])
            if replica.role == _ROLE and pid != active and replica.seen_ago < 1.0:
                return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no standby of {_ROLE} within {timeout}s")


async def _run_lease(lease: float, kills: int, store_url: str | None, work: Path) -> list[float]:
    store = store_url or f"sqlite:///{work}/store-{lease:g}.db"
    config = work / f"stalwart-{lease:g}.toml"
    config.write_text(
        f'log_level = "WARNING"\n[bus]\nurl = "sqlite:///{work}/bus-{lease:g}.db"\n'
        f'[store]\nurl = "{store}"\n[ha]\nlease = {lease}\n'
    )
    log = work / f"replicas-{lease:g}.log"
    procs = {p.pid: p for p in (_spawn(config, log) for _ in range(_REPLICAS))}
    engine = await open_engine(store)
    times: list[float] = []
    try:
        with Progress() as bar:
            task = bar.add_task(f"lease {lease:g}s: kills", total=kills)
            for _ in range(kills):
                pid, _acquired = await _holder(engine, None, 60.0)
                await _standby_ready(engine, pid, 60.0)
                # Kill at a random point of the renewal period, as a real crash would.
                await asyncio.sleep(random.uniform(0.0, lease / 3))
                os.kill(pid, signal.SIGKILL)
                killed_at = time.time()
                _new, acquired_at = await _holder(engine, pid, lease * 3 + 10)
                times.append(acquired_at - killed_at)
                procs.pop(pid).wait(timeout=10)
                replacement = _spawn(config, log)
                procs[replacement.pid] = replacement
                bar.advance(task)
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=lease + 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        await engine.dispose()
    return times


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


async def _main(args: argparse.Namespace) -> None:
    leases = [float(x) for x in args.leases.split(",")]
    results: dict[float, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        for lease in leases:
            results[lease] = await _run_lease(lease, args.kills, args.store_url, Path(tmp))
            if args.show_logs:
                print((Path(tmp) / f"replicas-{lease:g}.log").read_text(errors="replace"))
    store = "PostgreSQL" if args.store_url else "SQLite"
    print(f"\nfailover after kill -9 of the active replica ({args.kills} kills, store: {store})")
    print(f"{'lease':>6} {'median':>8} {'p95':>8} {'max':>8} {'target':>8}  p95<=target")
    for lease, times in results.items():
        p95 = _p95(times)
        print(
            f"{lease:>5g}s {statistics.median(times):>7.2f}s {p95:>7.2f}s {max(times):>7.2f}s "
            f"{lease + 1:>7.2f}s  {'yes' if p95 <= lease + 1 else 'NO'}"
        )
    print(
        f"\npeer (documented, not measured): Patroni defaults ttl={PATRONI_TTL:g}s "
        f"loop_wait={PATRONI_LOOP_WAIT:g}s -> worst-case failover ~{PATRONI_WORST:g}s"
    )
    for lease, times in results.items():
        print(
            f"lease {lease:g}s: Patroni worst case / our max = {PATRONI_WORST / max(times):.1f}x; "
            f"/ our median = {PATRONI_WORST / statistics.median(times):.1f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--leases", default="5,1", help="comma-separated lease times (s)")
    parser.add_argument("--show-logs", action="store_true", help="print the replicas' logs")
    parser.add_argument("--store-url", default=None, help="default: SQLite in a temp dir")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
