"""What ``stalwart run`` loads: a service takes only the libraries its handlers need.

Resident memory is mostly the modules a process has imported, so an idle
service on the embedded bus with no idempotent handler must not load the
store (SQLAlchemy), the other transports, the web stack, the HA and integrity
parts or PyJWT. Each case runs the real command in a fresh interpreter, stops
it once the service has started, and lists what it had imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

_HEAVY = (
    "sqlalchemy",
    "alembic",
    "aio_pika",
    "aiormq",
    "nats",
    "fastapi",
    "uvicorn",
    "jwt",
    "cryptography",
    "zfec",
    "fsspec",
    "stalwart.store",
    "stalwart.ha",
    "stalwart.integrity",
    "stalwart.dashboard",
    "stalwart.watchdog",
)

_SERVICE = '''
from pydantic import BaseModel

from stalwart.service import Context, Service


class Ping(BaseModel):
    n: int


plain = Service("plain")
once = Service("once")


@plain.handler("probe.plain", body=Ping)
async def on_plain(ctx: Context, ping: Ping) -> None:
    """Nothing to remember: no claim in the store."""


@once.handler("probe.once", body=Ping, idempotent=True)
async def on_once(ctx: Context, ping: Ping) -> None:
    """Claimed in the store before it runs."""
'''

# `stalwart run MODULE:SERVICE`, stopped by its own SIGTERM once the service has
# started; then the heavy modules it had imported, as JSON on stderr's last line.
_PROBE = """
import json, logging, os, signal, sys

class _StopWhenStarted(logging.Handler):
    def emit(self, record):
        if "started patterns=" in record.getMessage():
            os.kill(os.getpid(), signal.SIGTERM)

logging.getLogger("stalwart.service").addHandler(_StopWhenStarted())
from stalwart.cli import main
code = 0
try:
    main(["run", sys.argv[1]])
except SystemExit as exc:
    code = exc.code or 0
loaded = sorted(m for m in json.loads(sys.argv[2]) if m in sys.modules)
print(json.dumps([code, loaded]), file=sys.stderr)
"""


def _loaded_by_run(target: str, home: Path) -> list[str]:
    """The heavy modules ``stalwart run TARGET`` had imported once its service started."""
    (home / "probe_services.py").write_text(_SERVICE)
    (home / "stalwart.toml").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STALWART_")}
    env.update(
        STALWART_HOME=str(home),
        STALWART_CONFIG=str(home / "stalwart.toml"),
        STALWART_LOG_LEVEL="INFO",
    )
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, target, json.dumps(_HEAVY)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=home,
        env=env,
    )
    code, loaded = json.loads(done.stderr.strip().splitlines()[-1])
    assert code == 0, done.stderr
    return list(loaded)


def test_a_plain_service_on_the_embedded_bus_loads_no_heavy_library(tmp_path: Path) -> None:
    assert _loaded_by_run("probe_services:plain", tmp_path) == []


def test_the_benchmarked_demo_service_loads_neither_store_nor_integrity(tmp_path: Path) -> None:
    # What benchmarks/bench_idle_service.py measures
    assert _loaded_by_run("stalwart.demo.services:calibration", tmp_path) == []


def test_an_idempotent_service_loads_the_store_for_its_claims(tmp_path: Path) -> None:
    # The other side of the guard: the probe sees a lazily imported store
    loaded = _loaded_by_run("probe_services:once", tmp_path)
    assert {"sqlalchemy", "stalwart.store"} <= set(loaded)
    assert not {"aio_pika", "nats", "fastapi", "stalwart.integrity"} & set(loaded)
