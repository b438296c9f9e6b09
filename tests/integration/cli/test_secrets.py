"""No command prints a password or a secret from its configuration.

Every command, found from the Typer app, runs for real as its own process with
a configuration whose URLs carry passwords and whose security and dashboard
tables carry secrets: once against brokers and databases that are not there
(every error path that quotes a URL), once against a real PostgreSQL that
accepts the password (the paths that work). A command still running after a
few seconds is interrupted; all it printed is searched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cli_commands import invocation, leaves

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SECRETS = {
    "bus": "BusPassw0rd-4f1c",
    "store": "StorePassw0rd-8a2e",
    "ha_store": "HaStorePassw0rd-19d3",
    "monitor": "MonitorPassw0rd-77b0",
    "security": "TokenSecret-0123456789abcdef0123456789abcdef",
    "dashboard": "DashSecret-fedcba9876543210fedcba9876543210",
    "token": "eyJ-not-a-real-token-5e9c1d",
}
# Enough to cover each command's start: its errors, banners and first log lines.
RUN_FOR = 3.0
QUIET_FOR = 15.0
# Quick forms of commands that would otherwise wait for a long time.
EXTRA = {
    ("ha", "monitor"): ["--once"],
    ("outbox", "flush"): ["--timeout", "1"],
    ("dlq", "purge"): ["--yes"],
    ("dashboard", "hash-password"): ["--stdin"],
}
# Commands that must not run here at all, and why.
SKIP = {
    ("dev", "cluster", "up"): "starts a three-node RabbitMQ cluster",
    # A campaign of minutes that mounts disks and builds network namespaces, and
    # tears them down for longer than this test waits after its SIGINT (then
    # SIGKILL would leave them behind); it reads none of these settings: it runs
    # the demo in a private home of its own (tests/chaos/test_campaign.py).
    ("chaos",): "a fault campaign with its own settings, tested in tests/chaos",
}


def _config(home: Path, store_url: str, bus_url: str) -> Path:
    s = SECRETS
    config = home / "stalwart.toml"
    config.write_text(
        f'home = "{home}"\n'
        f'[bus]\nurl = "{bus_url}"\noutbox = "{home}/outbox.db"\n'
        f'[store]\nurl = "{store_url}"\n'
        f'[security]\nsecret = "{s["security"]}"\n'
        f'[dashboard]\nbind = "127.0.0.1:0"\nsecret = "{s["dashboard"]}"\n'
        f'[ha]\nstore_url = "{store_url.replace(s["store"], s["ha_store"])}"\n'
        '[[ha.monitors]]\nname = "broker"\nkind = "amqp"\ntimeout = 0.5\n'
        f'urls = ["amqp://ops:{s["monitor"]}@127.0.0.1:1/", "amqps://ops:{s["monitor"]}@127.0.0.1:2/"]\n'
    )
    return config


def _run(argv: list[str], home: Path, config: Path) -> str:
    """What ``stalwart ARGV`` prints by itself, or in RUN_FOR seconds after it starts printing."""
    env = {
        **os.environ,
        "STALWART_CONFIG": str(config),
        "STALWART_TOKEN": SECRETS["token"],
        "COLUMNS": "1000",  # no password split over two lines
    }
    with tempfile.TemporaryFile("w+") as output:
        proc = subprocess.Popen(
            [sys.executable, "-m", "stalwart", *argv],
            cwd=home,
            env=env,
            stdin=subprocess.PIPE,
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert proc.stdin is not None
        proc.stdin.write("pw\npw\n")
        proc.stdin.close()
        # On a busy machine starting may take a while; a command with nothing to say
        # (tail on a quiet bus) is stopped after that too, and what it prints then counts.
        started = time.monotonic()
        while proc.poll() is None and not os.fstat(output.fileno()).st_size:
            if time.monotonic() - started > QUIET_FOR:
                break
            time.sleep(0.1)
        try:
            proc.wait(timeout=RUN_FOR)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGINT)  # stops gracefully, printing what it prints then
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        output.seek(0)
        return output.read()


def _every_command(home: Path, config: Path) -> dict[str, str]:
    (home / "F.dat").write_bytes(b"some data\n")
    jobs = {
        " ".join(path): [*invocation(path, command, home), *EXTRA.get(path, [])]
        for path, command in leaves()
        if path not in SKIP
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        outputs = pool.map(lambda argv: _run(argv, home, config), jobs.values())
        return dict(zip(jobs, outputs, strict=True))


def _leaks(outputs: dict[str, str]) -> dict[str, list[str]]:
    return {
        name: sorted(kind for kind, secret in SECRETS.items() if secret in out)
        for name, out in outputs.items()
        if any(secret in out for secret in SECRETS.values())
    }


def test_no_command_prints_a_secret_when_nothing_answers(tmp_path: Path) -> None:
    # Given a broker and a database that are not there, reached with passwords
    config = _config(
        tmp_path,
        f"postgresql://ops:{SECRETS['store']}@127.0.0.1:1/stalwart",
        f"amqp://ops:{SECRETS['bus']}@127.0.0.1:1/,amqp://ops:{SECRETS['bus']}@127.0.0.1:2/",
    )
    # When every command runs
    outputs = _every_command(tmp_path, config)
    # Then each said something (the test saw it run), and none printed a secret
    assert all(outputs.values()), [name for name, out in outputs.items() if not out]
    assert _leaks(outputs) == {}
    assert any("ops:***@" in out for out in outputs.values())


def test_no_command_prints_a_secret_when_everything_answers(
    tmp_path: Path, postgres_url: str
) -> None:
    # Given a real PostgreSQL that takes the password, and the embedded bus
    store = postgres_url.replace("://postgres@", f"://postgres:{SECRETS['store']}@")
    config = _config(tmp_path, store, f"sqlite:///{tmp_path}/bus.db")
    # When every command runs
    outputs = _every_command(tmp_path, config)
    # Then none printed a secret
    assert _leaks(outputs) == {}
