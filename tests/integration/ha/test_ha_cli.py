"""``stalwart ha``: status, step-down and one-shot probes against a real SQLite store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from stalwart.cli import build_app
from stalwart.ha import Lease
from stalwart.store.engine import make_engine

runner = CliRunner()


def _config(tmp_path: Path, monitors: str = "") -> Path:
    path = tmp_path / "stalwart.toml"
    path.write_text(
        f'[bus]\nurl = "sqlite:///{tmp_path}/bus.db"\n'
        f'[store]\nurl = "sqlite:///{tmp_path}/store.db"\n'
        f"[ha]\nlease = 30.0\n{monitors}"
    )
    return path


def _hold(tmp_path: Path, role: str) -> int:
    async def acquire() -> int:
        engine = make_engine(f"sqlite:///{tmp_path}/store.db")
        try:
            lease = Lease(engine, role, ttl=30.0, holder="node-1-abc")
            assert await lease.acquire()
            return lease.token or 0
        finally:
            await engine.dispose()

    return asyncio.run(acquire())


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(build_app(["ha"]), list(args))
    return result.exit_code, result.output


def test_status_before_anything_ran(tmp_path: Path) -> None:
    code, out = _invoke("ha", "status", "-c", str(_config(tmp_path)))
    assert code == 0, out
    assert "no leases yet" in out


def test_status_shows_the_holder_as_json(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _hold(tmp_path, "service.dispatcher")
    code, out = _invoke("ha", "status", "--json", "-c", str(config))
    assert code == 0, out
    shown = json.loads(out)
    assert [(x["role"], x["holder"], x["token"], x["live"]) for x in shown["leases"]] == [
        ("service.dispatcher", "node-1-abc", 1, True)
    ]


def test_step_down_of_a_held_role_and_of_a_free_one(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _hold(tmp_path, "service.dispatcher")
    code, out = _invoke("ha", "step-down", "service.dispatcher", "--wait", "0", "-c", str(config))
    assert code == 0, out
    assert "step-down requested from token 1" in out
    code, out = _invoke("ha", "status", "--json", "-c", str(config))
    assert json.loads(out)["leases"][0]["stepdown_requested"] is True
    # A role nobody holds is an error that says where to look
    code, out = _invoke("ha", "step-down", "service.nothing", "-c", str(config))
    assert code == 1
    assert "nobody holds 'service.nothing'" in out


def test_monitor_once_reports_each_url_and_fails_if_one_is_down(tmp_path: Path) -> None:
    up = tmp_path / "up"
    up.touch()
    monitors = (
        "[[ha.monitors]]\n"
        'name = "archive"\nkind = "command"\n'
        f'urls = ["test -e {up}", "test -e {tmp_path / "missing"}"]\n'
    )
    code, out = _invoke("ha", "monitor", "--once", "-c", str(_config(tmp_path, monitors)))
    assert code == 1
    assert "ok" in out and "down" in out


def test_monitor_without_monitors_explains_what_to_add(tmp_path: Path) -> None:
    code, out = _invoke("ha", "monitor", "-c", str(_config(tmp_path)))
    assert code == 1
    assert "no monitors configured" in out


def test_status_reads_at_80_columns(tmp_path: Path) -> None:
    # Given a role held by a long-named replica
    config = _config(tmp_path)
    _hold(tmp_path, "service.archive-replication.eu")
    # When the status is shown on an 80-column terminal
    result = runner.invoke(
        build_app(["ha"]), ["ha", "status", "-c", str(config)], env={"COLUMNS": "80"}
    )
    # Then no line is longer and the role reads whole on one line
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any("service.archive-replication.eu" in line and "held" in line for line in lines)


def test_run_ha_with_several_instances_says_how_to_run_replicas() -> None:
    # Given `stalwart run --ha` asked for two instances in one process
    result = runner.invoke(
        build_app(), ["run", "--ha", "--instances", "2", "stalwart.demo.services:dispatcher"]
    )
    # Then it refuses, and says that replicas are processes started by a supervisor
    assert result.exit_code == 2
    assert "an HA replica is one process" in result.output
    assert "replicas = N" in result.output
