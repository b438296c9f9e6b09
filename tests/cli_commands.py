"""Every leaf command of ``stalwart``, found from the Typer app, and how to call it.

Tests that must cover every command (bad input, secrets) enumerate them here, so
a new command is covered the day it is added: a required parameter without a
sample value below makes those tests fail and say which one to add.
"""

from __future__ import annotations

import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main

from stalwart.cli import build_app

# A harmless value for each required parameter, by name; {file} is an existing file.
SAMPLES: dict[str, str] = {
    "topic": "a.b",
    "text": "hello",
    "target": "stalwart.demo.services:qa",
    "files": "{file}",
    "src": "{file}",
    "dst": "{home}/copy.dat",
    "message_id": "01930f4e",
    "key": "k",
    "subject": "qa",
    "older_than": "1d",
    "role": "service.x",
    "ous": "uid://A001/X1/Y1",
    "site": "eu",
    "outdir": "{home}/products",
}


def leaves() -> list[tuple[tuple[str, ...], Any]]:
    """(path, click command) for every command a user can run, groups run bare included."""
    found: list[tuple[tuple[str, ...], Any]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        if hasattr(command, "commands"):
            if path and getattr(command, "invoke_without_command", False):
                found.append((path, command))
            for name, sub in sorted(command.commands.items()):
                walk(sub, (*path, name))
        else:
            found.append((path, command))

    walk(typer.main.get_command(build_app()), ())
    return found


def annotation(param: Any) -> Any:
    """The parameter's Python type, with Optional and list unwrapped."""
    kind = param.type_descriptor.annotation
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    while typing.get_origin(kind) in (list, typing.Union) or type(kind).__name__ == "UnionType":
        kind = args[0]
        args = [a for a in typing.get_args(kind) if a is not type(None)]
    return kind


def sample(param: Any, home: Path) -> str:
    name = param.name
    if name not in SAMPLES:
        raise AssertionError(f"add a sample value for required parameter {name!r} to SAMPLES")
    return SAMPLES[name].format(file=home / "F.dat", home=home)


def invocation(
    path: tuple[str, ...], command: Any, home: Path, replace: tuple[Any, str] | None = None
) -> list[str]:
    """argv for ``path`` with every required parameter filled, ``replace`` = (param, value)."""
    argv = list(path)
    for param in command.params:
        chosen = replace is not None and param is replace[0]
        if not chosen and not param.required:
            continue
        value = replace[1] if chosen and replace is not None else sample(param, home)
        argv += [value] if param.param_type_name == "argument" else [param.opts[0], value]
    return argv


def commands_and_params() -> Iterator[tuple[tuple[str, ...], Any, Any]]:
    for path, command in leaves():
        for param in command.params:
            yield path, command, param
