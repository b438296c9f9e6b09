"""Every command is registered where ``main`` looks for it, and documents itself."""

from __future__ import annotations

from typing import Any

import pytest
import typer.main

from stalwart.cli import COMMANDS, build_app


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
    command = typer.main.get_command(build_app([COMMANDS[name]]))
    assert _is_group(command) and name in command.commands


def test_every_command_has_help_with_an_example(root: Any) -> None:
    missing = [
        path
        for path, cmd in _walk(root)
        if path and not _is_group(cmd) and "Example:" not in (cmd.help or "")
    ]
    assert missing == []
