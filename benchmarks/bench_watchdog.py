"""Watchdog vs supervisord: which failures each detects, and how fast it restarts.

The same five misbehaving programs (crash, hang, slow, runaway memory,
runaway CPU) run under supervisord (PyPI ``supervisor``, in the foreground)
and under ``stalwart watchdog``, in one run, several repetitions.
Each program notes ``start`` and ``fail`` wall-clock times in a file;
detection-to-restart latency is the time from ``fail`` to the next ``start``
(interpreter start-up included, the same for both). For the watchdog the
detection and decision times also come from its events on the bus. Then
both supervise 100 idle processes and their own CPU use is measured.

Run: ``.venv/bin/python -m benchmarks.bench_watchdog [--reps 3] [--idle 100] [--idle-seconds 10]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xmlrpc.client import ServerProxy

import psutil

from stalwart.bus import QueueSpec, open_transport
from stalwart.envelope import Envelope
from stalwart.watchdog.beat import format_beat

SCENARIOS = ("crash", "hang", "slow", "mem", "cpu")
HEARTBEAT_TIMEOUT = 1.0
RATE_WINDOW = 1.0
CHECK_INTERVAL = 0.25
CPU_DURATION = 1.0
MAX_MEMORY = 150 * 2**20
MAX_CPU = 10.0  # percent of a core; low so a busy shared machine still shows the spin
OBSERVE = 6.0  # seconds to wait for a restart before calling a failure undetected

PROGRAM = r"""
import os, socket, sys, time
mode, d = sys.argv[1], os.environ["BENCH_DIR"]
log = open(os.path.join(d, mode + ".log"), "a")
def note(what):
    log.write(f"{what} {time.time()}\n"); log.flush()
note("start")
marker = os.path.join(d, mode + ".done")
first = not os.path.exists(marker)
open(marker, "w").close()
path = os.environ.get("STALWART_WATCHDOG_SOCKET")
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
def beat(progress):
    if path:
        line = f"{os.environ['STALWART_PROGRAM']} {os.environ['STALWART_INSTANCE']} {progress}"
        try:
            sock.sendto(line.encode(), path)
        except OSError:
            pass
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
t0, progress, failed, hog = time.time(), 0, False, []
while True:
    bad = first and time.time() - t0 > 0.5
    if bad and not failed and mode in ("crash", "hang", "slow", "cpu"):
        note("fail"); failed = True
    if bad and mode == "crash":
        sys.exit(1)
    if bad and mode == "hang":
        time.sleep(3600)
    if bad and mode == "mem" and rss() < LIMIT + (64 << 20):
        hog.append(b"x" * (16 << 20))
        if not failed and rss() > LIMIT:
            note("fail"); failed = True
    if not (bad and mode == "slow"):
        progress += 10
    beat(progress)
    if bad and mode == "cpu":
        end = time.time() + 0.1
        while time.time() < end:
            pass
    else:
        time.sleep(0.05)
""".replace("LIMIT", str(MAX_MEMORY))


def _notes(directory: Path, mode: str) -> list[tuple[str, float]]:
    path = directory / f"{mode}.log"
    if not path.exists():
        return []
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return [(kind, float(t)) for kind, t in rows]


def _latency(directory: Path, mode: str) -> float | None:
    """Seconds from the first ``fail`` to the next ``start``; None if it never restarted."""
    notes = _notes(directory, mode)
    fails = [t for kind, t in notes if kind == "fail"]
    if not fails:
        return None
    restarts = [t for kind, t in notes if kind == "start" and t > fails[0]]
    return restarts[0] - fails[0] if restarts else None


def _wait_all(directory: Path, timeout: float) -> None:
    """Wait for every program to start, then up to ``timeout`` for every restart."""
    started = time.monotonic() + 30
    while time.monotonic() < started and not all(_notes(directory, m) for m in SCENARIOS):
        time.sleep(0.1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_latency(directory, m) is not None for m in SCENARIOS):
            return
        time.sleep(0.1)


def _command(directory: Path, mode: str) -> list[str]:
    return [sys.executable, "-S", str(directory / "program.py"), mode]


# -- supervisord -------------------------------------------------------------


def _supervisord_conf(directory: Path, programs: dict[str, str]) -> Path:
    sections = [
        f"""
        [supervisord]
        nodaemon=true
        logfile={directory}/supervisord.log
        pidfile={directory}/supervisord.pid
        childlogdir={directory}
        [unix_http_server]
        file={directory}/supervisor.sock
        [rpcinterface:supervisor]
        supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
        """
    ]
    for name, body in programs.items():
        sections.append(f"[program:{name}]\n{textwrap.dedent(body)}")
    conf = directory / "supervisord.conf"
    conf.write_text("\n".join(textwrap.dedent(s) for s in sections))
    return conf


@contextlib.contextmanager
def _supervisord(directory: Path, programs: dict[str, str]) -> Iterator[psutil.Process]:
    conf = _supervisord_conf(directory, programs)
    exe = str(Path(sys.executable).with_name("supervisord"))
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL)
    try:
        rpc = ServerProxy(
            "http://127.0.0.1",
            transport=_unix_transport(f"unix://{directory}/supervisor.sock"),
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, Exception):
                if rpc.supervisor.getState()["statename"] == "RUNNING":
                    break
            time.sleep(0.1)
        yield psutil.Process(proc.pid)
    finally:
        _terminate(proc)


def _terminate(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    """SIGTERM (a graceful stop of everything supervised), then SIGKILL if it hangs."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _unix_transport(url: str) -> Any:
    from supervisor.xmlrpc import SupervisorTransport

    return SupervisorTransport(None, None, serverurl=url)


def run_supervisord(directory: Path) -> dict[str, float | None]:
    env = f'BENCH_DIR="{directory}"'
    programs = {
        m: f"""
        command={" ".join(_command(directory, m))}
        environment={env}
        autorestart=true
        startsecs=0
        startretries=100
        stopasgroup=true
        killasgroup=true
        stopwaitsecs=2
        """
        for m in SCENARIOS
    }
    with _supervisord(directory, programs):
        _wait_all(directory, OBSERVE)
    return {m: _latency(directory, m) for m in SCENARIOS}


# -- stalwart watchdog --------------------------------------------------------


def _toml_program(name: str, command: list[str], extra: str) -> str:
    quoted = ", ".join(f'"{c}"' for c in command)
    return f"""
[[watchdog.programs]]
name = "{name}"
command = [{quoted}]
check_interval = {CHECK_INTERVAL}
stop_grace = 2.0
restart = "always"
{extra}
[watchdog.programs.backoff]
initial = 0.05
jitter = 0.1
[watchdog.programs.intensity]
max_restarts = 1000
"""


def _watchdog_conf(directory: Path, programs: str) -> Path:
    conf = directory / "stalwart.toml"
    conf.write_text(
        f"""
home = "{directory}/home"
log_level = "WARNING"
[bus]
url = "sqlite:///{directory}/bus.db"
[store]
url = "sqlite:///{directory}/store.db"
[watchdog]
socket = "{directory}/wd.sock"
"""
        + programs
    )
    return conf


@contextlib.contextmanager
def _watchdog(directory: Path, programs: str) -> Iterator[psutil.Process]:
    conf = _watchdog_conf(directory, programs)
    env = {**os.environ, "BENCH_DIR": str(directory)}
    cmd = [sys.executable, "-m", "stalwart", "watchdog", "-c", str(conf)]
    proc = subprocess.Popen(cmd, env=env)
    try:
        yield psutil.Process(proc.pid)
    finally:
        _terminate(proc)


def _scenario_programs(directory: Path) -> str:
    limits = {
        "crash": "",
        "hang": "",
        "slow": f"min_rate = 50.0\nrate_window = {RATE_WINDOW}",
        "mem": f"max_memory = {MAX_MEMORY}",
        "cpu": f"max_cpu = {MAX_CPU}\ncpu_duration = {CPU_DURATION}",
    }
    return "".join(
        _toml_program(
            m,
            _command(directory, m),
            f"heartbeat_timeout = {HEARTBEAT_TIMEOUT}\nstartup_time = 10.0\n{limits[m]}",
        )
        for m in SCENARIOS
    )


async def _tap_events(url: str, queue: str, into: list[Envelope], stop: asyncio.Event) -> None:
    transport = open_transport(url)
    await transport.start()

    async def consume() -> None:
        async for delivery in transport.consume(queue, prefetch=100):
            if delivery.envelope is not None:
                into.append(delivery.envelope)
            await delivery.ack()

    try:
        await transport.declare(QueueSpec(queue, ("sys.watchdog.#",)))
        consumer = asyncio.create_task(consume())
        await stop.wait()
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
    finally:
        await transport.close()


def run_watchdog(directory: Path) -> tuple[dict[str, float | None], dict[str, dict[str, float]]]:
    """Latencies from the notes, plus detection/decision figures from the bus events."""
    events: list[Envelope] = []
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    url = f"sqlite:///{directory}/bus.db"
    tap = loop.create_task(_tap_events(url, "bench-tap", events, stop))
    loop.run_until_complete(asyncio.sleep(0.5))  # the tap queue exists before events flow
    with _watchdog(directory, _scenario_programs(directory)):
        _wait_all(directory, OBSERVE)  # the tap task runs again below
        loop.run_until_complete(asyncio.sleep(1.0))  # let the last events arrive
    stop.set()
    loop.run_until_complete(tap)
    loop.close()
    figures: dict[str, dict[str, float]] = {}
    for mode in SCENARIOS:
        fails = [t for kind, t in _notes(directory, mode) if kind == "fail"]
        mine = [e.body for e in events if e.body.get("program") == mode]
        detect = next(
            (b for b in mine if b["event"] in ("exited", "late", "slow", "runaway")), None
        )
        restart = next((b for b in mine if b["event"] == "restarted"), None)
        if fails and detect is not None:
            at = _wall(detect["at"])
            figures[mode] = {"detected_after": at - fails[0], "kind": detect["event"]}  # type: ignore[dict-item]
            if restart is not None:
                figures[mode]["decided_in"] = restart["evidence"].get("decided_in") or 0.0
    return {m: _latency(directory, m) for m in SCENARIOS}, figures


def _wall(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


# -- 100 idle processes: the supervisor's own CPU -----------------------------


def _cpu_share(proc: psutil.Process, seconds: float, beat: Any = None) -> float:
    """Percent of one core ``proc`` (and its non-program helpers) used over ``seconds``."""
    before = proc.cpu_times()
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if beat is not None:
            beat()
        time.sleep(1.0)
    after = proc.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return 100.0 * used / (time.monotonic() - start)


def idle_watchdog(directory: Path, count: int, seconds: float) -> float:
    program = _toml_program(
        "idle",
        ["sleep", "3600"],
        f"replicas = {count}\nheartbeat_timeout = 30.0\nmax_memory = {MAX_MEMORY}\nmax_cpu = 90.0",
    ).replace(f"check_interval = {CHECK_INTERVAL}", "check_interval = 1.0")
    with _watchdog(directory, program) as proc:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.setblocking(False)

        def beat() -> None:
            for i in range(count):
                with contextlib.suppress(OSError):  # a full socket drops the beat
                    sock.sendto(format_beat("idle", i), str(directory / "wd.sock"))

        _settle(proc, count)
        share = _cpu_share(proc, seconds, beat)
        sock.close()
    return share


def idle_supervisord(directory: Path, count: int, seconds: float) -> float:
    program = {
        "idle": f"""
        command=sleep 3600
        process_name=%(program_name)s_%(process_num)03d
        numprocs={count}
        autorestart=true
        startsecs=0
        """
    }
    with _supervisord(directory, program) as proc:
        _settle(proc, count)
        return _cpu_share(proc, seconds)


def _settle(proc: psutil.Process, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(proc.children()) < count:
        time.sleep(0.2)
    time.sleep(2.0)


# -- report -------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "not detected" if value is None else f"{value:.2f} s"


def _median(values: list[float | None]) -> float | None:
    seen = [v for v in values if v is not None]
    return statistics.median(seen) if len(seen) * 2 > len(values) else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--idle", type=int, default=100, help="processes for the CPU test")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    sup: dict[str, list[float | None]] = {m: [] for m in SCENARIOS}
    wd: dict[str, list[float | None]] = {m: [] for m in SCENARIOS}
    detected: dict[str, list[float]] = {m: [] for m in SCENARIOS}
    decided: dict[str, list[float]] = {m: [] for m in SCENARIOS}
    for rep in range(args.reps):
        for runner in ("supervisord", "watchdog"):
            with tempfile.TemporaryDirectory(prefix="bw") as tmp:
                directory = Path(tmp)
                (directory / "program.py").write_text(PROGRAM)
                if runner == "supervisord":
                    for m, v in run_supervisord(directory).items():
                        sup[m].append(v)
                else:
                    latencies, figures = run_watchdog(directory)
                    for m, v in latencies.items():
                        wd[m].append(v)
                    for m, f in figures.items():
                        detected[m].append(f["detected_after"])
                        decided[m].append(f.get("decided_in", 0.0))
        print(f"repetition {rep + 1}/{args.reps} done", flush=True)
    targets = {
        "crash": "decision < 0.2 s",
        "hang": f"<= timeout {HEARTBEAT_TIMEOUT:g} + 1 s",
        "slow": f"<= window {RATE_WINDOW:g} + 1 s",
        "mem": f"<= check {CHECK_INTERVAL:g} + 1 s",
        "cpu": f"<= duration {CPU_DURATION:g} + check {CHECK_INTERVAL:g} + 1 s",
    }
    print(f"\nmedians of {args.reps} runs: failure -> restarted (program start-up included)")
    print(
        f"{'failure':8} {'supervisord':>14} {'stalwart':>14} {'ratio':>7}  "
        f"{'stalwart detect':>15} {'decision':>9}  target"
    )
    for m in SCENARIOS:
        s, w = _median(sup[m]), _median(wd[m])
        ratio = f"{s / w:.1f}x" if s is not None and w else "-"
        det = statistics.median(detected[m]) if detected[m] else None
        dec = statistics.median(decided[m]) * 1000 if decided[m] else None
        print(
            f"{m:8} {_fmt(s):>14} {_fmt(w):>14} {ratio:>7}  {_fmt(det):>15} "
            f"{'-' if dec is None else f'{dec:.1f} ms':>9}  {targets[m]}"
        )
    shares: dict[str, list[float]] = {"supervisord": [], "watchdog": []}
    for _ in range(max(1, min(args.reps, 2))):
        with tempfile.TemporaryDirectory(prefix="bw") as tmp:
            shares["supervisord"].append(idle_supervisord(Path(tmp), args.idle, args.idle_seconds))
        with tempfile.TemporaryDirectory(prefix="bw") as tmp:
            shares["watchdog"].append(idle_watchdog(Path(tmp), args.idle, args.idle_seconds))
    s_cpu, w_cpu = (statistics.median(shares[k]) for k in ("supervisord", "watchdog"))
    print(
        f"\nsupervising {args.idle} processes ({args.idle_seconds:g} s, median): "
        f"supervisord {s_cpu:.2f}% of a core, stalwart watchdog {w_cpu:.2f}% "
        f"(heartbeats, RSS and CPU probes every 1 s); ratio {w_cpu / max(s_cpu, 1e-6):.1f}x"
    )


if __name__ == "__main__":
    main()
