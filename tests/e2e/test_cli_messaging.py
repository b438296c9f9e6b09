"""The messaging commands as a user runs them: send, tail, dlq, token."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from stalwart.bus import open_transport
from waiting import until_sync


def bus_state(home: Path, queue: str) -> tuple[list[str], int]:
    """(queue names, dead letters of ``queue``) straight from the embedded bus."""

    async def look() -> tuple[list[str], int]:
        transport = open_transport(f"sqlite:///{home}/bus.db")
        await transport.start()
        try:
            names = await transport.queues()
            dead = len(await transport.dead_letters(queue)) if queue in names else 0
            return names, dead
        finally:
            await transport.close()

    return asyncio.run(look()) if (home / "bus.db").exists() else ([], 0)


def tail_declared(db: Path) -> bool:
    """A tail's queue is ephemeral, so not listed by queues(): look in the file."""
    if not db.exists():
        return False
    query = "SELECT count(*) FROM queues WHERE ephemeral = 1 AND name LIKE 'tail-%'"
    try:
        with sqlite3.connect(db) as conn:
            return bool(conn.execute(query).fetchone()[0])
    except sqlite3.OperationalError:  # the schema is being created
        return False


@pytest.fixture
def cli(tmp_path: Path):
    (tmp_path / "stalwart.toml").write_text(
        '[bus]\nmax_attempts = 1\n[security]\nsecret = "a-test-secret-of-at-least-32-bytes!"\n'
    )
    env = {
        **os.environ,
        "STALWART_CONFIG": str(tmp_path / "stalwart.toml"),
        "STALWART_HOME": str(tmp_path / "home"),
        "COLUMNS": "250",
    }

    def run(*args: str, wait: bool = True) -> subprocess.CompletedProcess[str] | subprocess.Popen:
        command = [sys.executable, "-m", "stalwart", *args]
        if not wait:
            return subprocess.Popen(
                command,
                cwd=tmp_path,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        return subprocess.run(
            command, cwd=tmp_path, env=env, text=True, capture_output=True, timeout=90
        )

    return run


def test_send_then_tail_shows_the_message_and_hides_the_token(cli, tmp_path: Path) -> None:
    # Given a tail waiting for two messages, its queue declared
    tail = cli("tail", "pipeline.#", "--count", "2", "--json", wait=False)
    until_sync(lambda: tail_declared(tmp_path / "home" / "bus.db"), 60.0, "the tail's queue")
    token = cli("token", "issue", "--subject", "ops", "--role", "operator", "--ttl", "5m")
    assert token.returncode == 0, token.stderr
    jwt = token.stdout.strip()
    assert jwt.count(".") == 2
    # When two messages are sent, one carrying the token
    sent = []
    for n, extra in enumerate([[], ["--token", jwt]]):
        done = cli(
            "send",
            "pipeline.process.jao",
            "--kind",
            "ProcessRequest",
            "--json",
            f'{{"ous": "uid://A{n}"}}',
            "--ttl",
            "600",
            *extra,
        )
        assert done.returncode == 0, done.stderr
        sent.append(done.stdout.strip())
    out, err = tail.communicate(timeout=60)
    assert tail.returncode == 0, err
    # Then the tail printed both whole envelopes, one per line, the token masked
    shown = [json.loads(line) for line in out.splitlines()]
    assert [e["id"] for e in shown] == sent
    assert all(e["topic"] == "pipeline.process.jao" for e in shown)
    assert shown[1]["token"] == "***" and jwt not in out


@pytest.mark.parametrize(
    ("flags", "shown"), [([], "pipeline.done"), (["--system"], "sys.report.info")]
)
def test_tail_hides_system_traffic_unless_asked(cli, tmp_path: Path, flags, shown) -> None:
    # Given a tail of everything that stops after one message
    tail = cli("tail", "--count", "1", *flags, wait=False)
    until_sync(lambda: tail_declared(tmp_path / "home" / "bus.db"), 60.0, "the tail's queue")
    # When a report (sys.report.info) and then an ordinary message are sent
    assert cli("report", "-s", "test", "calibrated").returncode == 0
    sent = cli("send", "pipeline.done", "--json", "{}")
    assert sent.returncode == 0, sent.stderr
    out, err = tail.communicate(timeout=60)
    # Then the one line printed is the ordinary message, or with --system the report
    assert tail.returncode == 0, err
    (line,) = out.splitlines()
    assert shown in line
    if not flags:  # and it carries the short id that `show` accepts
        assert sent.stdout.strip()[-8:] in line


@pytest.mark.parametrize(
    ("args", "message", "status"),
    [
        (["send", "Bad Topic", "--json", "{}"], "bad word", 1),
        (["send", "a.b", "--json", "{not json"], "not valid JSON", 1),
        (["send", "a.b"], "exactly one of --json", 1),
        (["token", "issue", "--subject", "x", "--ttl", "soon"], "bad duration", 2),
        (["dlq", "list", "--service", "nobody"], "no queue for service 'nobody'", 1),
    ],
)
def test_bad_input_is_one_line_of_advice_and_a_failure(cli, args, message, status) -> None:
    done = cli(*args)
    assert done.returncode == status
    assert message in done.stderr and "Traceback" not in done.stderr


def test_dead_letters_can_be_listed_retried_and_purged(cli, tmp_path: Path) -> None:
    # Given a message dead-lettered by a service whose handler always fails
    (tmp_path / "poison.py").write_text(
        "from stalwart.service import Service\n"
        "svc = Service('poison')\n"
        "@svc.handler('poison.item')\n"
        "async def fail(ctx, body):\n"
        "    raise RuntimeError('always fails')\n"
    )
    service = cli("run", "poison:svc", wait=False)
    home = tmp_path / "home"
    try:
        until_sync(
            lambda: bus_state(home, "poison"),
            60.0,
            "the poison queue",
            accept=lambda s: "poison" in s[0],
        )
        sent = cli("send", "poison.item", "--json", '{"n": 1}').stdout.strip()
        until_sync(
            lambda: bus_state(home, "poison"), 60.0, "the dead letter", accept=lambda s: s[1] == 1
        )
        listed = cli("dlq", "list", "--service", "poison")
        assert "always fails" in listed.stdout
        (letter,) = json.loads(cli("dlq", "list", "--service", "poison", "--json").stdout)
        assert letter["id"] == sent and "always fails" in letter["_dead"]["reason"]
        shown = cli("dlq", "show", sent, "--service", "poison")
        assert json.loads(shown.stdout)["id"] == sent
        # When it is retried, it fails again and comes back to the dead letters
        assert "requeued 1" in cli("dlq", "retry", "--service", "poison").stdout
        until_sync(
            lambda: bus_state(home, "poison"), 60.0, "the second death", accept=lambda s: s[1] == 1
        )
        # And purging removes it for good
        assert "purged 1" in cli("dlq", "purge", "--service", "poison", "--yes").stdout
        assert "no dead letters" in cli("dlq", "list", "--service", "poison").stdout
    finally:
        service.terminate()
        service.communicate(timeout=20)  # waits, and closes its pipes
