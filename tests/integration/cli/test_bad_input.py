"""Every command over a matrix of bad input: a usage error or a one-line error, never
a traceback, never success for nonsense.

Numbers, choices, durations, sizes, times and input files are checked by the
command line parser (exit 2, naming the option); a broken configuration is a
configuration error (exit 78) for every command.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli_commands import annotation, commands_and_params, invocation, leaves
from stalwart.cli import build_app
from stalwart.cli._params import nonblank
from stalwart.errors import EX_CONFIG

USAGE = 2
# Values no number option may take; "0" is a legitimate count for some.
BAD_INTS = ["-1", "abc", "1" + "0" * 30]
BAD_FLOATS = ["-1", "nan", "inf", "1e400", "abc"]
BAD_PARSED = ["bogus", "-5", ""]
# Path parameters that need not exist when given: outputs, or a missing file that
# the command itself reports as a finding.
NOT_INPUTS = {
    "config",  # a missing --config is a configuration error (78), tested below
    "dst",
    "export",
    "url_file",
    "parity_store",  # where ingest writes
    "paths",  # `verify` reports a missing replica as such
    "socket_path",  # `beat` says no watchdog listens there
    "directory",  # where `dev cluster` keeps its nodes
    "outdir",  # where `demo batch` writes its product
    "report",  # where `chaos` writes its report
}
MISSING = "{home}/absent/stalwart-test.json"  # under the test's own directory, whatever happens


def _bad_values(param: Any) -> list[str]:
    info = param.type_descriptor.parameter_info
    kind = annotation(param)
    if getattr(info, "parser", None) is nonblank:
        return ["", " "]
    if getattr(info, "parser", None) is not None:
        return BAD_PARSED
    if kind is bool:
        return []
    if kind is int:
        return BAD_INTS
    if kind is float:
        return BAD_FLOATS
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return ["bogus"]
    if kind is Path and param.name not in NOT_INPUTS:
        return [MISSING]
    return []


CASES = [
    pytest.param(path, command, param, bad, id=f"{' '.join(path)} {param.name}={bad!r}")
    for path, command, param in commands_and_params()
    for bad in _bad_values(param)
]


@pytest.fixture(scope="module")
def app() -> Any:
    return build_app()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "F.dat").write_bytes(b"some data\n")
    return tmp_path


def _env(home: Path, **more: str) -> dict[str, str]:
    return {"STALWART_HOME": str(home), "STALWART_CONFIG": "", "COLUMNS": "300", **more}


def _no_traceback(result: Any) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}"
    )
    assert "Traceback" not in result.output


@pytest.mark.parametrize(("path", "command", "param", "bad"), CASES)
def test_a_bad_value_is_a_usage_error_naming_the_option(
    app: Any, home: Path, path: tuple[str, ...], command: Any, param: Any, bad: str
) -> None:
    argv = invocation(path, command, home, replace=(param, bad.replace("{home}", str(home))))
    # A missing config makes a command that wrongly accepted the value stop at once (78)
    if param.name != "config" and any(p.name == "config" for p in command.params):
        argv += ["--config", str(home / "absent.toml")]
    result = CliRunner().invoke(app, argv, env=_env(home))
    _no_traceback(result)
    assert result.exit_code == USAGE, result.output
    assert "Invalid value" in result.output or "does not exist" in result.output


# Options whose text the parser must check: what the first hour at the CLI found.
NAMED = [
    ["send", "a.b", "--json", "{}", "--ttl", "-5"],
    ["send", "a.b", "--file", "/nonexistent.json"],
    ["integrity", "ingest", "--data", "-1", "{file}"],
    ["integrity", "ingest", "--parity", "-2", "{file}"],
    ["integrity", "ingest", "--block-size", "huge", "{file}"],
    ["reports", "--level", "bogus"],
    ["reports", "--since", "yesterday"],
    ["messages", "--state", "bogus"],
    ["messages", "--since", "99999999999d"],
    ["messages", "--until", "soon"],
    ["dlq", "list", "--limit", "-1"],
    ["up", "--units", "-1", "--interval", "-1"],
    ["token", "issue", "--subject", "qa", "--ttl", "nan"],
    ["token", "issue", "--subject", "qa", "--ttl", "1e400"],
    ["store", "prune", "--older-than", "bogus"],
    ["integrity", "scrub", "--rate", "fast"],
    ["integrity", "scrub", "--rate", "1"],
    ["report", " "],
    ["report", "--source", "", "calibrated"],
    ["token", "issue", "--subject", ""],
    ["integrity", "scrub", "--every", "0"],
    ["integrity", "catalog", "--limit", "0"],
]


@pytest.mark.parametrize("argv", NAMED, ids=[" ".join(a) for a in NAMED])
def test_named_nonsense_is_a_usage_error(app: Any, home: Path, argv: list[str]) -> None:
    args = [a.replace("{file}", str(home / "F.dat")) for a in argv]
    result = CliRunner().invoke(app, [*args, "--config", str(home / "absent.toml")], env=_env(home))
    _no_traceback(result)
    assert result.exit_code == USAGE, result.output
    assert "Invalid value" in result.output or "does not exist" in result.output


BAD_CONFIGS = {
    "not TOML": "[bus\nurl = 1\n",
    "unknown key": "[bus]\nurls = 'x'\n",
    "bus URL without scheme": "[bus]\nurl = 'localhost:5672'\n",
    "store URL of no database": "[store]\nurl = 'mongodb://h/db'\n",
    "malformed bus URL": "[bus]\nurl = 'amqp://[::1'\n",
    "store URL with a word for a port": "[store]\nurl = 'postgresql://h:five/db'\n",
    "short token secret": "[security]\nsecret = 'abcdef'\n",
    "unknown log level": "log_level = 'LOUD'\n",
    "negative size": "[bus]\nmax_message_size = -1\n",
}


def _stops_with_78(app: Any, home: Path, argv: list[str], config: Path) -> None:
    result = CliRunner().invoke(app, [*argv, "--config", str(config)], env=_env(home), input="pw\n")
    _no_traceback(result)
    assert result.exit_code == EX_CONFIG, result.output
    assert result.output.count("error:") == 1


# Settings are checked in one place; what each command must do is load them first.
@pytest.mark.parametrize(
    ("path", "command"), [pytest.param(p, c, id=" ".join(p)) for p, c in leaves()]
)
def test_a_broken_configuration_stops_every_command_with_78(
    app: Any, home: Path, path: tuple[str, ...], command: Any
) -> None:
    config = home / "stalwart.toml"
    config.write_text(BAD_CONFIGS["not TOML"])
    _stops_with_78(app, home, invocation(path, command, home), config)


@pytest.mark.parametrize("problem", sorted(BAD_CONFIGS))
@pytest.mark.parametrize(
    "argv", [["status"], ["send", "a.b", "--json", "{}"], ["token", "issue", "--subject", "qa"]]
)
def test_each_configuration_problem_is_a_configuration_error(
    app: Any, home: Path, argv: list[str], problem: str
) -> None:
    config = home / "stalwart.toml"
    config.write_text(BAD_CONFIGS[problem])
    _stops_with_78(app, home, argv, config)


@pytest.mark.parametrize("argv", [["ha", "status"], ["ha", "step-down", "r"]])
def test_a_broken_table_of_a_part_is_a_configuration_error(
    app: Any, home: Path, argv: list[str]
) -> None:
    config = home / "stalwart.toml"
    config.write_text("[ha]\nstore_url = 'postgresql://h:five/db'\n")
    _stops_with_78(app, home, argv, config)


@pytest.mark.parametrize(
    ("path", "command"), [pytest.param(p, c, id=" ".join(p)) for p, c in leaves()]
)
@pytest.mark.parametrize("where", ["missing", "directory"])
def test_a_config_file_that_is_not_one_is_a_configuration_error(
    app: Any, home: Path, path: tuple[str, ...], command: Any, where: str
) -> None:
    config = home / "absent.toml" if where == "missing" else home
    _stops_with_78(app, home, invocation(path, command, home), config)


# Values only the command can judge: still one line, and a failure.
RUNTIME = [
    (["store", "upgrade", "--revision", "bogus"], "revision"),
    (["show", "no-such-id"], "no message"),
    (["send", "Bad Topic", "--json", "{}"], "bad word"),
    (["send", "a.b", "--json", "{not json"], "not valid JSON"),
    (["send", "a.b", "--json", "1", "--file", "{file}"], "exactly one of"),
    (["report", "--ref", "novalue", "x"], "KEY=VALUE"),
    (["run", "no_such_module:svc"], "no_such_module"),
    (["run", "stalwart.demo.services:nothing"], "nothing"),
    (["dashboard", "--bind", "nonsense"], "host:port"),
    (["dashboard", "--bind", "127.0.0.1:99999"], "host:port"),
    (["integrity", "ingest", "--name", "x", "{file}", "{file}"], "one file"),
    (["integrity", "ingest", "--algorithm", "rot13", "{file}"], "rot13"),
    (["integrity", "transfer", "/nonexistent/src.dat", "{home}/dst.dat"], "src.dat"),
]


@pytest.mark.parametrize(("argv", "says"), RUNTIME, ids=[" ".join(a) for a, _ in RUNTIME])
def test_nonsense_only_the_command_can_judge_fails_on_one_line(
    app: Any, home: Path, argv: list[str], says: str
) -> None:
    args = [a.replace("{file}", str(home / "F.dat")) for a in argv]
    result = CliRunner().invoke(app, args, env=_env(home))
    _no_traceback(result)
    assert result.exit_code not in (0, None), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0], result.output
