"""Dashboard benchmark: page server time on a 1,000,000-message store, and live viewers.

Part 1, pages: every route of the application (pages, API, panels,
``/metrics``, actions; ``benchmarks/_dashboard_routes.py`` says how each is
requested, and a route without a probe stops the run), served in-process
(server time: routing, queries, rendering; no network), cold (the aggregate
cache off, so every request reads the store) and warm (the 1 s cache, as
served). Peer in the same run: the store's own query for the same data
(``stalwart.store.queries`` and the parts' panel queries), so the ratio is
what the dashboard adds. The store is PostgreSQL by default, seeded once by
``scripts/generate_store.py`` (COPY) and kept between runs.

Part 2, live: 50 SSE viewers while 1,000 msg/s flow on the embedded bus,
against ``stalwart dashboard`` in its own process: updates dropped, latency
from publish to the viewer, and the server's CPU. Peer in the same run: the
textbook feed (``benchmarks/_dashboard_sse_peer.py``: sse-starlette, one
event per message and viewer, unbounded queues).

Run: ``.venv/bin/python -m benchmarks.bench_dashboard [--url URL] [--reps N] [--runs 3]
[--reseed] [--check-routes] [--viewers 50] [--rate 1000] [--seconds 10] [--skip-pages]
[--skip-live]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from sqlalchemy.engine import make_url

from benchmarks._dashboard_routes import PASSWORD, USER, Probe, declare_queue, plan, uncovered

# The store benchmark's timing helpers: the same percentiles for both parts.
from benchmarks.bench_store_queries import _p, _time
from stalwart.bus import open_transport
from stalwart.config import Settings
from stalwart.dashboard import DashboardSettings, create_app
from stalwart.dashboard.auth import hash_password
from stalwart.dashboard.storesource import StoreSource
from stalwart.envelope import Envelope
from stalwart.store import Store

__all__ = ["main"]

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/stalwart_bench_dashboard_1m"
_ROOT = Path(__file__).resolve().parent.parent
_TARGET_MS = 100.0


def _ensure_store(url: str, count: int, reseed: bool) -> None:
    """Build the store once; a PostgreSQL one is kept between runs (marked when complete)."""
    parsed = make_url(url)
    script = [sys.executable, str(_ROOT / "scripts" / "generate_store.py"), "--url", url]
    script += ["--count", str(count)]
    if parsed.get_backend_name() == "sqlite":
        if reseed or not Path(parsed.database or "").exists():
            subprocess.run(script, check=True)
        return
    name = parsed.database or ""
    admin = parsed.set(drivername="postgresql", database="postgres")
    marker = f"stalwart dashboard benchmark store of {count} messages, seeded "
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        row = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (name,),
        ).fetchone()
        if row and (row[0] or "").startswith(marker) and not reseed:
            print(f"reusing {name}: {row[0]} (--reseed builds it anew)")
            return
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    subprocess.run(script, check=True)
    with psycopg.connect(admin.render_as_string(hide_password=False), autocommit=True) as conn:
        seeded = datetime.now(UTC).isoformat(timespec="seconds")
        conn.execute(f"COMMENT ON DATABASE \"{name}\" IS '{marker}{seeded}'")


class _Warnings(logging.Handler):
    """Counts the warnings a probe's requests log: a page that could not read the
    store still answers 200 (with the reason on it), and its time measures nothing."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.by_probe: dict[str, int] = {}
        self.current = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.by_probe[self.current] = self.by_probe.get(self.current, 0) + 1


_WARNINGS = _Warnings()


async def _time_probe(client: httpx.AsyncClient, probe: Probe, reps: int) -> list[float]:
    """Seconds per request, the first (statements prepared, pools filled) first.

    A 503 (the shared PostgreSQL restarted under the pool, say) is logged and that
    request made again after a pause, up to three times; any other status stops.
    """
    _WARNINGS.current = probe.label
    out: list[float] = []
    retries = 3
    while len(out) < reps + 1:
        if probe.prepare is not None:
            await probe.prepare(client)
        started = time.perf_counter()
        response = await probe.send(client)
        elapsed = time.perf_counter() - started
        if response.status_code in probe.ok:
            out.append(elapsed)
            continue
        if response.status_code != 503 or not retries:
            raise RuntimeError(
                f"{probe.label}: {probe.method} answered {response.status_code}, expected "
                f"{sorted(probe.ok)}: {response.text[:300]}"
            )
        retries -= 1
        logging.getLogger("stalwart.bench").warning("%s: 503, again", probe.label)
        await asyncio.sleep(2.0)
    return out


def _app(settings: Settings, store: Store, transport: Any, ttl: float) -> Any:
    """The dashboard over ``store``, limits off, with the probes' user."""
    cfg = DashboardSettings(
        rate_limit=1e9,
        rate_burst=10**9,
        login_rate_limit=1e9,
        login_burst=10**9,
        users={USER: hash_password(PASSWORD)},
    )
    source = StoreSource.of(store, cache_ttl=ttl)
    return create_app(settings, config=cfg, source=source, transport=transport)


def _missing(routes: set[tuple[str, str]]) -> str:
    names = ", ".join(f"{method} {path}" for method, path in sorted(routes))
    return f"no probe for {names}: add one to benchmarks/_dashboard_routes.py"


async def _check_routes() -> int:
    """0 when every route has a probe, else 1 naming the others (for the tests: no
    large store needed)."""
    home = Path(tempfile.mkdtemp(prefix="bench-routes-"))
    store = await Store.open(f"sqlite:///{home}/store.db")
    transport = open_transport(f"sqlite:///{home}/bus.db")
    try:
        await store.write([Envelope.new("bench.check", {"n": n}) for n in range(3)])
        app = _app(Settings(), store, transport, 0.0)
        missing = uncovered(app, await plan(app, store, Settings()))
    finally:
        await transport.close()
        await store.close()
    print(_missing(missing) if missing else "every route has a probe")
    return 1 if missing else 0


async def _pages_once(store: Store, transport: Any, reps: int) -> dict[str, dict[str, list[float]]]:
    """Every probe cold (aggregate cache off) and warm (1 s, as served), and every peer."""
    settings = Settings()
    timings: dict[str, dict[str, list[float]]] = {}
    for mode, ttl in (("cold", 0.0), ("warm", 1.0)):
        app = _app(settings, store, transport, ttl)
        probes = await plan(app, store, settings)
        missing = uncovered(app, probes)
        if missing:
            raise SystemExit(_missing(missing))
        async with _client(app) as client:
            for probe in probes:
                timings.setdefault(probe.label, {})[mode] = await _time_probe(client, probe, reps)
        if mode == "cold":
            for probe in probes:
                if probe.peer is not None:
                    timings[probe.label]["peer"] = await _time(probe.peer, reps)
    return timings


async def _pages(url: str, reps: int, runs: int) -> None:
    store = await Store.open(url)
    bus_dir = tempfile.mkdtemp(prefix="bench-dash-")
    transport = open_transport(f"sqlite:///{bus_dir}/bus.db")
    await transport.start()
    await declare_queue(transport)
    logging.getLogger("stalwart").addHandler(_WARNINGS)
    print(f"store {url}; {runs} run(s) of {reps} requests per probe (after a first one)")
    stats: dict[str, dict[str, list[float]]] = {}  # probe -> column -> one value per run
    try:
        for run in range(1, runs + 1):
            load = os.getloadavg()[0]
            started = datetime.now(UTC)
            timings = await _pages_once(store, transport, reps)
            print(
                f"\nrun {run}: {started:%H:%M:%S} to {datetime.now(UTC):%H:%M:%S} UTC, load "
                f"average {load:.1f} -> {os.getloadavg()[0]:.1f}"
            )
            this_run = {label: _columns(by_mode) for label, by_mode in timings.items()}
            _table({k: {c: [v] for c, v in cols.items()} for k, cols in this_run.items()})
            for label, cols in this_run.items():
                for column, value in cols.items():
                    stats.setdefault(label, {}).setdefault(column, []).append(value)
    finally:
        await transport.close()
        await store.close()
    if runs > 1:
        print(f"\nmedians over the {runs} runs (ms)")
        _table(stats)
    if _WARNINGS.by_probe:
        print("\nWARNINGS logged (store or bus failures: these probes' times are not valid):")
        for label, count in _WARNINGS.by_probe.items():
            print(f"  {label}: {count}")


_COLUMNS = ("cold p50", "cold p95", "warm p95", "peer p50", "peer p95", "1st cold")


def _columns(by_mode: dict[str, list[float]]) -> dict[str, float]:
    """A probe's figures of one run, in ms (the first request of each mode left out)."""
    cold, warm = by_mode["cold"], by_mode["warm"]
    out = {
        "cold p50": _p(cold[1:], 0.5),
        "cold p95": _p(cold[1:], 0.95),
        "warm p95": _p(warm[1:], 0.95),
        "1st cold": cold[0] * 1000,
    }
    if "peer" in by_mode:
        out |= {"peer p50": _p(by_mode["peer"], 0.5), "peer p95": _p(by_mode["peer"], 0.95)}
    return out


def _table(stats: dict[str, dict[str, list[float]]]) -> None:
    """One line per probe, the median of each column, and what is over the target."""
    print(f"{'probe':<34}" + "".join(f"{c:>10}" for c in _COLUMNS))
    for label, cols in stats.items():
        med = {c: statistics.median(v) for c, v in cols.items()}
        line = f"{label:<34}" + "".join(
            f"{med[c]:10.1f}" if c in med else f"{'-':>10}" for c in _COLUMNS
        )
        if max(med["cold p95"], med["warm p95"]) >= _TARGET_MS:
            line += "  over 100 ms"
        print(line)


class _client:
    """An in-process client whose app has been through its lifespan."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lifespan = app.router.lifespan_context(app)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 1))
        self._client = httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8321")

    async def __aenter__(self) -> httpx.AsyncClient:
        await self._lifespan.__aenter__()
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()
        await self._lifespan.__aexit__(None, None, None)


# -- live viewers -------------------------------------------------------------------------
#
# Viewers run in child processes of their own (``--viewers-child``), so that
# parsing their streams does not starve the publisher of the CPU it needs to
# keep the rate. A child prints "ready" once each of its viewers has heard the
# bus, and its counts as JSON when its stdin closes.

_MEASURED = "bench.live."


class _Viewer:
    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.latencies: list[float] = []
        self.reported_drops = 0
        self.heard = asyncio.Event()


async def _watch(client: httpx.AsyncClient, url: str, viewer: _Viewer) -> None:
    async with client.stream("GET", url) as stream:
        event = ""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event in ("messages", "message", "dropped"):
                data = json.loads(line[6:])
                if event == "dropped":
                    viewer.reported_drops = data["dropped"]
                    continue
                items = data if event == "messages" else [data]
                viewer.heard.set()
                fresh = [m for m in items if m["topic"].startswith(_MEASURED)]
                viewer.ids.update(m["id"] for m in fresh)
                if fresh:  # one latency sample per event: publish -> this viewer
                    sent = datetime.fromisoformat(fresh[-1]["created_at"]).timestamp()
                    viewer.latencies.append(time.time() - sent)


async def _viewers_child(url: str, count: int) -> None:
    viewers = [_Viewer() for _ in range(count)]
    limits = httpx.Limits(max_connections=count + 5)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:
        tasks = [asyncio.create_task(_watch(client, url, v)) for v in viewers]
        await asyncio.wait_for(asyncio.gather(*(v.heard.wait() for v in viewers)), 60)
        print("ready", flush=True)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes it
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    result = {
        "delivered": sum(len(v.ids) for v in viewers),
        "reported": sum(v.reported_drops for v in viewers),
        "latencies": [x for v in viewers for x in v.latencies],
    }
    print(json.dumps(result), flush=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not start within {timeout} s")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), 15)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _publish(transport: Any, rate: int, seconds: float) -> tuple[int, float]:
    """Publish ``rate`` msg/s for ``seconds`` in 50 ms ticks; returns (count, wall)."""
    sent, tick, per_tick = 0, 0.05, max(1, int(rate * 0.05))
    started = next_at = time.monotonic()
    while time.monotonic() - started < seconds:
        batch = [
            Envelope.new(f"{_MEASURED}s{i % 4}", {"i": i, "pad": "x" * 200})
            for i in range(sent, sent + per_tick)
        ]
        await transport.publish(batch)
        sent += len(batch)
        next_at += tick
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
    return sent, time.monotonic() - started


async def _live_run(
    argv: list[str], url: str, port: int, bus_url: str, viewers: int, rate: int, seconds: float
) -> dict[str, float]:
    quiet = asyncio.subprocess.DEVNULL
    server = await asyncio.create_subprocess_exec(*argv, stdout=quiet, stderr=quiet)
    transport = open_transport(bus_url)
    await transport.start()
    children: list[asyncio.subprocess.Process] = []
    try:
        await _wait_port(port)
        proc = psutil.Process(server.pid)
        groups = max(1, min(5, viewers // 10))
        for share in [viewers // groups + (i < viewers % groups) for i in range(groups)]:
            children.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "benchmarks.bench_dashboard",
                    "--viewers-child",
                    url,
                    str(share),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                )
            )

        async def ready(child: asyncio.subprocess.Process) -> None:
            assert child.stdout is not None
            line = await child.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError(f"a viewer process failed to start: {line!r}")

        waiting = asyncio.ensure_future(asyncio.gather(*(ready(c) for c in children)))
        deadline = time.monotonic() + 60
        while not waiting.done() and time.monotonic() < deadline:
            await transport.publish([Envelope.new("bench.warmup", {})])
            await asyncio.sleep(0.1)
        await asyncio.wait_for(waiting, 1)
        cpu0 = proc.cpu_times()
        sent, wall = await _publish(transport, rate, seconds)
        cpu1 = proc.cpu_times()
        await asyncio.sleep(3.0)  # let the last updates arrive
        results = []
        for child in children:
            if child.stdin is not None:
                child.stdin.close()  # communicate() without input leaves it open
            output, _ = await asyncio.wait_for(child.communicate(), 60)
            results.append(json.loads(output.splitlines()[-1]))
        latencies = [x for r in results for x in r["latencies"]]
        delivered = sum(r["delivered"] for r in results)
        return {
            "rate": sent / wall,
            "expected": sent * viewers,
            "delivered": delivered,
            "dropped": sent * viewers - delivered,
            "reported": sum(r["reported"] for r in results),
            "cpu": (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall * 100,
            "lat50": statistics.median(latencies) * 1000 if latencies else float("nan"),
            "lat99": _p(latencies, 0.99) if latencies else float("nan"),
            "rss": proc.memory_info().rss / 2**20,
        }
    finally:
        for child in children:
            await _stop(child)
        await _stop(server)
        await transport.close()


async def _live(viewers: int, rate: int, seconds: float) -> None:
    home = Path(tempfile.mkdtemp(prefix="bench-live-"))
    bus_url = f"sqlite:///{home}/bus.db"
    config = home / "stalwart.toml"
    config.write_text(
        f'home = "{home}"\n[bus]\nurl = "{bus_url}"\n[store]\nurl = "sqlite:///{home}/store.db"\n'
        "[dashboard]\nrate_limit = 1000000.0\nrate_burst = 1000000\nlive_per_client = 1000\n",
        encoding="utf-8",
    )
    stalwart = str(Path(sys.executable).with_name("stalwart"))
    port = _free_port()
    ours = await _live_run(
        [stalwart, "dashboard", "-c", str(config), "--bind", f"127.0.0.1:{port}"],
        f"http://127.0.0.1:{port}/live?pattern=bench.%23",
        port,
        bus_url,
        viewers,
        rate,
        seconds,
    )
    port = _free_port()
    peer = await _live_run(
        [sys.executable, "-m", "benchmarks._dashboard_sse_peer", bus_url, str(port)],
        f"http://127.0.0.1:{port}/live",
        port,
        bus_url,
        viewers,
        rate,
        seconds,
    )
    print(f"\nLive: {viewers} SSE viewers, {rate} msg/s target for {seconds:.0f} s")
    head = f"{'server':<22}{'msg/s':>8}{'updates':>10}{'delivered':>11}{'missing':>9}"
    print(head + f"{'lat p50':>9}{'lat p99':>9}{'CPU %':>8}{'RSS MB':>8}")
    for label, r in (("stalwart dashboard", ours), ("sse-starlette peer", peer)):
        print(
            f"{label:<22}{r['rate']:8.0f}{r['expected']:10.0f}{r['delivered']:11.0f}"
            f"{r['dropped']:9.0f}{r['lat50']:9.0f}{r['lat99']:9.0f}{r['cpu']:8.1f}{r['rss']:8.0f}"
        )
    if peer["cpu"]:
        print(f"server CPU ratio (stalwart / peer): {ours['cpu'] / peer['cpu']:.2f}")
    print("missing: updates not at their viewer 3 s after the last publish (dropped or late)")
    print(f"drops the dashboard reported to its viewers: {ours['reported']:.0f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL)
    parser.add_argument("--count", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3, help="page passes; medians are printed")
    parser.add_argument("--reseed", action="store_true", help="build the store anew")
    parser.add_argument("--viewers", type=int, default=50)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip-pages", action="store_true")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--viewers-child", nargs=2, metavar=("URL", "N"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--check-routes", action="store_true", help="only check that every route has a probe"
    )
    args = parser.parse_args(argv)
    if args.check_routes:
        sys.exit(asyncio.run(_check_routes()))
    if args.viewers_child:
        asyncio.run(_viewers_child(args.viewers_child[0], int(args.viewers_child[1])))
        return
    if not args.skip_pages:
        _ensure_store(args.url, args.count, args.reseed)
        asyncio.run(_pages(args.url, args.reps, args.runs))
    if not args.skip_live:
        asyncio.run(_live(args.viewers, args.rate, args.seconds))


if __name__ == "__main__":
    main()
