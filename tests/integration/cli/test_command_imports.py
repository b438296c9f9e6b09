"""What a command imports, measured in a fresh interpreter: help and the batch
commands stay light, and `up` builds the demo only for --demo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
