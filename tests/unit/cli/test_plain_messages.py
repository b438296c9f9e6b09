"""Messages are printed as written: a ``[bus]`` in them is text, never rich markup."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stalwart import cli
from stalwart.cli import build_app
from stalwart.cli._common import fail, say
from stalwart.cli._integrity_view import print_rows
from stalwart.cli._integrity_view import say as say_integrity
from stalwart.errors import EX_CONFIG, ConfigError
from stalwart.redact import redact_url


def test_an_error_keeps_its_config_table_names(capsys: pytest.CaptureFixture[str]) -> None:
    # Given an error naming two tables, When it is printed
    raised = fail("set [bus] url, but [dashboard.users] is empty")
    # Then both names are there, on one line, and the exit status is 1
    err = capsys.readouterr().err
    assert err == "error: set [bus] url, but [dashboard.users] is empty\n"
    assert raised.exit_code == 1


def test_a_plain_line_keeps_its_brackets_and_masks_passwords(
    capsys: pytest.CaptureFixture[str],
) -> None:
    say("[bus] url = amqp://ops:s3cret@h:5672/ [/]")
    assert capsys.readouterr().out == "[bus] url = amqp://ops:***@h:5672/ [/]\n"


def test_a_command_error_names_the_table_to_set(tmp_path: Path) -> None:
    # Given no signing key configured, When a token is asked for
    result = CliRunner().invoke(
        build_app(["token"]),
        ["token", "issue", "--subject", "qa"],
        env={"STALWART_HOME": str(tmp_path), "STALWART_CONFIG": "", "COLUMNS": "300"},
    )
    # Then the advice names [security] secret rather than a blank where markup was eaten
    assert result.exit_code == EX_CONFIG
    assert "set [security] secret" in result.output


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("amqp://guest:guest@h:5672/", "amqp://guest:***@h:5672/"),
        ("amqp://a:b@h1:5672/,amqp://c:d@h2:5672/", "amqp://a:***@h1:5672/,amqp://c:***@h2:5672/"),
        (
            "cannot reach (postgresql://u:p%40w@h/db: refused)",
            "cannot reach (postgresql://u:***@h/db: refused)",
        ),
        ("sqlite:///home/bus.db and ops@host", "sqlite:///home/bus.db and ops@host"),
    ],
)
def test_every_url_password_in_a_text_is_masked(text: str, shown: str) -> None:
    assert redact_url(text) == shown


@pytest.mark.parametrize(
    ("error", "code", "said"),
    [
        (ConfigError("set [bus] url to a broker"), EX_CONFIG, "error: set [bus] url to a broker\n"),
        (FileNotFoundError(2, "No such file", "/x.toml"), 1, "error: /x.toml: No such file\n"),
        (KeyboardInterrupt(), 130, ""),
    ],
)
def test_the_root_turns_any_commands_error_into_one_line(
    error: BaseException, code: int, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a command that lets an error escape (no command handles its own)
    app = cli.build_app([])

    @app.command()
    def broken() -> None:
        raise error

    # When the stalwart command runs it, Then one line and its status, no traceback
    with pytest.raises(SystemExit) as stopped:
        app(["broken"], prog_name="stalwart")
    assert stopped.value.code == code
    assert capsys.readouterr().err == said


def test_the_dashboard_names_the_users_table_it_needs(tmp_path: Path) -> None:
    # Given no users, When the dashboard is asked to listen beyond loopback
    result = CliRunner().invoke(
        build_app(["dashboard"]),
        ["dashboard", "--bind", "0.0.0.0:0"],
        env={"STALWART_HOME": str(tmp_path), "STALWART_CONFIG": "", "COLUMNS": "300"},
    )
    # Then it refuses, naming the table, not "but  is empty"
    assert result.exit_code == EX_CONFIG
    assert "but [dashboard.users] is empty" in result.output


def test_integrity_lines_and_cells_mask_the_passwords_of_remote_urls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a transfer from a remote source whose URL carries a password
    say_integrity("sftp://ops:s3cret@archive/x.fits -> /data/x.fits", "transferred", "green")
    for as_json in (False, True):
        print_rows("repairs", [{"source": "sftp://ops:s3cret@archive/x.fits"}], ["source"], as_json)
    # Then neither the line, the table nor the JSON shows it
    out = capsys.readouterr().out
    assert "s3cret" not in out and out.count("sftp://ops:***@archive/x.fits") == 3
