"""Every command is registered where ``main`` looks for it, and documents itself."""

from __future__ import annotations

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
