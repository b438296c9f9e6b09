"""Every command is registered where ``main`` looks for it, and documents itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

import stalwart
from stalwart.cli import COMMANDS, build_app, lazy_app


def _is_group(command: Any) -> bool:
    return hasattr(command, "commands")


def _walk(command: Any, path: str = "") -> list[tuple[str, Any]]:
    found = [(path, command)]
    if _is_group(command):
        for name, sub in command.commands.items():
            found += _walk(sub, f"{path} {name}".strip())
    return found


@pytest.fixture(scope="module")
def root() -> Any:
    command = typer.main.get_command(build_app())
    assert _is_group(command)
    return command


def test_command_table_matches_what_modules_register(root: Any) -> None:
    assert sorted(root.commands) == sorted(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_command_lives_in_the_module_the_table_names(name: str) -> None:
    # Given only that module registered, the command exists (so `main` finds it)
    command = typer.main.get_command(build_app([COMMANDS[name].module]))
    assert _is_group(command) and name in command.commands


def test_the_table_says_which_commands_are_groups(root: Any) -> None:
    # `stalwart --help` lists groups (that do nothing bare) apart from commands
    wrong = {
        name: entry.group
        for name, entry in COMMANDS.items()
        if entry.group
        != (_is_group(root.commands[name]) and not root.commands[name].invoke_without_command)
    }
    assert wrong == {}


def test_help_lists_commands_before_groups() -> None:
    result = CliRunner().invoke(lazy_app(), ["--help"], env={"COLUMNS": "200"})
    commands, groups = result.output.split("Command groups:")
    assert "integrity" in groups and "store" in groups and "integrity" not in commands
    assert "messages" in commands and "messages" not in groups


def test_every_command_has_help_with_an_example(root: Any) -> None:
    missing = [
        path
        for path, cmd in _walk(root)
        if path and not _is_group(cmd) and "Example:" not in (cmd.help or "")
    ]
    assert missing == []


def test_table_summaries_are_the_opening_words_of_each_commands_help(root: Any) -> None:
    # The command list of --help comes from the table: it must say what the command says
    drifted = {
        name: entry.summary
        for name, entry in COMMANDS.items()
        if not " ".join((root.commands[name].help or "").split()).startswith(entry.summary)
    }
    assert drifted == {}


def test_help_lists_every_command_with_its_summary() -> None:
    result = CliRunner().invoke(lazy_app(), ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for name, entry in COMMANDS.items():
        assert any(line.split() == [name, *entry.summary.split()] for line in lines), name


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(lazy_app(), ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"stalwart {stalwart.__version__}"


def test_a_command_runs_through_the_lazy_root() -> None:
    result = CliRunner().invoke(lazy_app(), ["token", "--help"])
    assert result.exit_code == 0 and "Example:" in result.output


_HEAVY = (
    "sqlalchemy",
    "aio_pika",
    "fastapi",
    "uvicorn",
    "pydantic",
    "jwt",
    "zfec",
    "rich.progress",
)


def _modules_after(argv: list[str], home: Path | None = None) -> list[str]:
    """The heavy libraries ``stalwart ARGV`` imported, in a fresh interpreter (it must succeed)."""
    probe = (
        "import json, sys\n"
        "from stalwart.cli import main\n"
        "code = 0\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit as exc:\n"
        "    code = exc.code or 0\n"
        f"loaded = [m for m in {_HEAVY!r} if m in sys.modules]\n"
        "print(json.dumps([code, loaded]), file=sys.stderr)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("STALWART_")}
    if home is not None:
        env["STALWART_HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=home,
        env=env,
    )
    code, loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert code == 0, done.stderr
    return list(loaded)


def test_help_imports_no_command_module_and_no_heavy_library() -> None:
    assert _modules_after(["--help"]) == []


@pytest.mark.parametrize(
    "argv", [["report", "-s", "batch", "calibrated"], ["send", "pipeline.done", "--json", "{}"]]
)
def test_report_and_send_load_only_what_they_need(argv: list[str], tmp_path: Path) -> None:
    # A batch tool runs them often: pydantic for settings and the envelope, nothing else heavy
    assert set(_modules_after(argv, tmp_path)) <= {"pydantic"}


def test_up_without_demo_does_not_build_the_demo() -> None:
    # The demo's services (a transfer service per site, ...) are built only for --demo
    probe = "import sys\nimport stalwart.cli.up\nprint('stalwart.demo.services' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False", done.stderr
