"""What ``stalwart up`` runs: every part as its own supervised process.

The persistence subscriber, the dashboard, the services named in
``stalwart.toml`` and, with ``--demo``, the demonstration services, each as a
watchdog program: a crash is restarted, a hang (no heartbeat: the services
and the persister send them) is halted and restarted, a runaway pipeline step
is stopped. The demo's dispatcher runs as an HA pair (one active, one on
standby); its retention sweeper keeps its disk use bounded.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from stalwart.cli._dashboard_watch import PROGRAM, url_file
from stalwart.config import Settings
from stalwart.service import load_service
from stalwart.store import PERSIST_QUEUE
from stalwart.watchdog import ProgramSettings, WatchdogSettings

__all__ = ["data_dirs", "stack"]

_PY = sys.executable
_DEMO = "stalwart.demo.services"


def _program(name: str, command: list[str], **options: Any) -> ProgramSettings:
    defaults: dict[str, Any] = {"restart": "always", "stop_grace": 10.0}
    return ProgramSettings(name=name, command=command, **{**defaults, **options})


def _beating(name: str, command: list[str], service: str, **options: Any) -> ProgramSettings:
    """A program supervised by its heartbeats (sent as ``service``) as well as its exit."""
    return _program(
        name, command, service=service, heartbeat_timeout=15.0, startup_time=20.0, **options
    )


def _service(
    name: str, target: str, service: str, replicas: int = 1, **options: Any
) -> ProgramSettings:
    """A service (``stalwart run``), supervised by its heartbeats."""
    return _beating(
        name, [_PY, "-m", "stalwart", "run", target], service, replicas=replicas, **options
    )


def _demo_programs() -> list[ProgramSettings]:
    from stalwart.demo import services as demo  # built on demand: `up` without --demo needs none

    programs = [
        _program(
            "dispatcher",
            [_PY, "-m", "stalwart", "run", "--ha", f"{_DEMO}:dispatcher"],
            replicas=2,
        ),
        _service("calibration", f"{_DEMO}:calibration", demo.calibration.name),
        _service("qa", f"{_DEMO}:qa", demo.qa.name),
        _service("delivery", f"{_DEMO}:delivery", demo.delivery.name),
        _service("tracker", f"{_DEMO}:tracker", demo.tracker.name),
        _program("retention", [_PY, "-m", "stalwart", "demo", "retention"]),
    ]
    for site, service in demo.transfers.items():
        programs.append(_service(f"transfer-{site}", f"{_DEMO}:transfer_{site}", service.name))
    for site, service in demo.pipelines.items():
        programs.append(
            _service(
                f"pipeline-{site}",
                f"{_DEMO}:pipeline_{site}",
                service.name,
                max_memory="512MiB",
                check_interval=1.0,
            )
        )
    return programs


def data_dirs(settings: Settings) -> list[Path]:
    """Where this host's data grows: home (demo products), the outbox and the
    embedded bus and store files; the watchdog warns before their disks fill."""
    dirs = [Path(settings.home), Path(settings.bus.outbox).parent]
    for url in (settings.bus.url, settings.store.url):
        try:
            parsed = make_url(url)
        except ArgumentError:
            continue  # a broker list (amqp://a,amqp://b) or a URL its client checks
        if parsed.get_backend_name() == "sqlite" and parsed.database:
            dirs.append(Path(parsed.database).parent)
    return list(dict.fromkeys(d.absolute() for d in dirs))


def stack(settings: Settings, *, demo_workflow: bool, dashboard: bool) -> WatchdogSettings:
    """The watchdog table that runs the whole system, plus the user's own programs."""
    # The persister beats as its queue: a frozen one would block every writer of a SQLite store.
    programs = [_beating("persist", [_PY, "-m", "stalwart", "store", "persist"], PERSIST_QUEUE)]
    if dashboard:
        command = [_PY, "-m", "stalwart", "dashboard", "--url-file", str(url_file(settings.home))]
        programs.append(_program(PROGRAM, command))
    for entry in settings.services:
        service = load_service(entry.target)
        programs.append(_service(service.name, entry.target, service.name, entry.instances))
    if demo_workflow:
        programs.extend(_demo_programs())
    own = settings.section("watchdog", WatchdogSettings)
    disk = own.disk
    if not disk.paths:
        disk = disk.model_copy(update={"paths": data_dirs(settings)})
    return own.model_copy(update={"programs": [*programs, *own.programs], "disk": disk})
