"""The cost of effectively-once: service throughput before and after claims and durable states.

Before is the runtime of ``--baseline`` (default: the parent of the commit
that added claims and durable final states), checked out in a temporary git
worktree; after is this tree's ``src/`` (or ``--after REF``, checked out the
same way: a snapshot that edits in the tree cannot change). Each measurement
runs in a child process (:mod:`benchmarks._effectively_once_child`) with
``PYTHONPATH`` at one of the two, in the same virtualenv: one service, one
no-op handler (idempotent or not), concurrency 16, ``--count`` messages
preloaded, timed from the runner's start until all are acked. A queue bound
to every topic, never consumed, stands for the persister's, so life-cycle
batches are stored (and confirmed) as in a deployment. Buses: the embedded
one (a fresh SQLite home per run, SQLite store) and RabbitMQ (a fresh
exchange and quorum queues per run, dropped after, behind the outbox as
``stalwart run`` opens it; store: a fresh PostgreSQL database). Each round
runs every configuration before then after; it prints the medians and
after / before. A run that fails (a broker restarted meanwhile) is reported
and left out of the medians, and the exit status is 1.

Run: ``.venv/bin/python -m benchmarks.bench_effectively_once [--count N] [--rounds R]
[--baseline REF] [--after REF] [--only sqlite-plain ...]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
from rich.progress import Progress

from benchmarks._amqp_queue import RECORDER, SERVICE, drop
from benchmarks._effectively_once_child import Measurement
from benchmarks._postgres import fresh_database

__all__ = ["Config", "main", "run_child"]

ROOT = Path(__file__).resolve().parent.parent
CURRENT_SRC = ROOT / "src"
AMQP = os.environ.get("STALWART_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672/")
BASELINE = "a486973^"  # the runtime before claims and durable final states


@dataclass(frozen=True)
class Config:
    bus: str  # "sqlite" (embedded, SQLite store) or "amqp" (RabbitMQ, PostgreSQL store)
    idempotent: bool

    def __str__(self) -> str:
        return f"{self.bus} {'idempotent' if self.idempotent else 'plain'}"

    @property
    def key(self) -> str:
        return str(self).replace(" ", "-")


CONFIGS = tuple(Config(bus, idem) for bus in ("sqlite", "amqp") for idem in (True, False))


@contextlib.contextmanager
def _stores(config: Config, home: str) -> Iterator[tuple[str, str]]:
    """(bus URL, store URL) for one run, fresh; the PostgreSQL database is dropped after."""
    if config.bus == "sqlite":
        yield f"sqlite:///{home}/bus.db", f"sqlite:///{home}/store.db"
        return
    with fresh_database("stalwart_bench_eo") as store_url:
        yield AMQP, store_url


def run_child(src: Path, config: Config, count: int, timeout: float = 600.0) -> Measurement:
    """One measurement in a child process running the stalwart found at ``src``."""
    exchange = f"bench-eo-{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="bench-eo-") as home, _stores(config, home) as urls:
        command = [
            sys.executable,
            "-m",
            "benchmarks._effectively_once_child",
            *("--bus-url", urls[0], "--store-url", urls[1], "--home", home),
            *("--exchange", exchange, "--count", str(count), "--timeout", str(timeout)),
            *(["--idempotent"] if config.idempotent else []),
        ]
        env = {**os.environ, "PYTHONPATH": str(src)}
        try:
            done = subprocess.run(
                command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout + 120
            )
        finally:
            if config.bus == "amqp":
                _drop(exchange)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{config} with {src} failed (exit {done.returncode}): {tail}")
    measured = Measurement(**json.loads(done.stdout.strip().splitlines()[-1]))
    if not Path(measured.stalwart).is_relative_to(src):
        raise RuntimeError(f"the child ran {measured.stalwart}, not the stalwart under {src}")
    if measured.consumed != count or measured.left:
        raise RuntimeError(
            f"{config} with {src}: {measured.consumed} of {count} acked, {measured.left} left "
            f"in the queue after {measured.seconds:.0f} s"
        )
    return measured


def _drop(exchange: str) -> None:
    try:
        asyncio.run(drop(AMQP, exchange, (SERVICE, RECORDER)))
    except Exception as exc:  # the broker is away: say what is left, keep the figures
        print(f"could not drop exchange {exchange} ({exc}); delete it and its queues by hand")


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(ROOT), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@contextlib.contextmanager
def _checked_out_src(ref: str) -> Iterator[Path]:
    """``ref``'s src/ in a temporary detached worktree, removed on exit."""
    folder = Path(tempfile.mkdtemp(prefix="bench-eo-worktree-"))
    try:
        _git("worktree", "add", "--detach", str(folder), ref)
        yield folder / "src"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            _git("worktree", "remove", "--force", str(folder))
        shutil.rmtree(folder, ignore_errors=True)
        _git("worktree", "prune")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _describe(ref: str | None) -> str:
    if ref is not None:
        return f"{ref} = {_commit(ref)}"
    dirty = " with uncommitted changes" if _git("status", "--porcelain", "--", "src") else ""
    return f"the working tree (HEAD {_commit('HEAD')}{dirty})"


def _bench(
    count: int, rounds: int, refs: dict[str, str | None], configs: tuple[Config, ...]
) -> int:
    """Measure and print; the number of runs that failed."""
    for side, ref in refs.items():
        print(f"{side}: {_describe(ref)}")
    print(f"load average at start: {_load()}")
    rates: dict[tuple[Config, str], list[float]] = {(c, side): [] for c in configs for side in refs}
    failed = 0
    with contextlib.ExitStack() as stack, Progress() as progress:
        sides = {
            side: CURRENT_SRC if ref is None else stack.enter_context(_checked_out_src(ref))
            for side, ref in refs.items()
        }
        task = progress.add_task("measuring", total=rounds * len(configs) * len(sides))
        for round_ in range(1, rounds + 1):
            for config in configs:
                for side, src in sides.items():
                    progress.update(task, description=f"round {round_}: {config}, {side}")
                    run = f"round {round_} {config!s:18} {side:6}"
                    try:
                        rate = run_child(src, config, count).rate
                    except (
                        RuntimeError,
                        OSError,
                        subprocess.SubprocessError,
                        psycopg.Error,
                    ) as exc:
                        failed += 1  # one lost run (a broker restarted by others) keeps the rest
                        progress.console.print(f"{run} failed: {exc}", markup=False)
                    else:
                        rates[config, side].append(rate)
                        progress.console.print(f"{run} {rate:8,.0f} msg/s")
                    progress.advance(task)
    print(f"load average at end: {_load()}")
    print(f"\n{count} messages, concurrency 16, medians of {rounds} rounds (msg/s)")
    print(f"{'configuration':18}  {'before':>8}  {'after':>8}  {'after/before':>12}  runs")
    for config in configs:
        old, new = rates[config, "before"], rates[config, "after"]
        if not old or not new:
            print(f"{config!s:18}  no figures: every run of one side failed")
            continue
        before, after = statistics.median(old), statistics.median(new)
        print(
            f"{config!s:18}  {before:8,.0f}  {after:8,.0f}  {after / before:12.2f}  "
            f"{len(old)}/{len(new)}"
        )
    return failed


def _commit(ref: str) -> str:
    return _git("rev-parse", "--short", "--verify", f"{ref}^{{commit}}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench_effectively_once", description=__doc__)
    parser.add_argument("--count", type=int, default=5000, help="messages per run")
    parser.add_argument("--rounds", type=int, default=3, help="before/after pairs per setup")
    parser.add_argument("--baseline", default=BASELINE, help="git ref of the code before")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[c.key for c in CONFIGS],
        help="measure only these configurations (default: all four)",
    )
    parser.add_argument(
        "--after", metavar="REF", help="git ref of the code after (default: this tree's src/)"
    )
    args = parser.parse_args(argv)
    if args.count < 1 or args.rounds < 1:
        parser.error("--count and --rounds must be at least 1")
    refs = {"before": args.baseline, "after": args.after}
    for side, ref in refs.items():
        try:
            if ref is not None:
                _commit(ref)
        except subprocess.CalledProcessError:
            parser.error(f"the {side} ref {ref!r} is no commit here; pass one `git log` lists")
    configs = tuple(c for c in CONFIGS if args.only is None or c.key in args.only)
    if _bench(args.count, args.rounds, refs, configs):
        sys.exit(1)


if __name__ == "__main__":
    main()
