"""What a killed campaign leaves behind, and how the next campaign removes it.

A campaign undoes what it builds when it ends, fails or is interrupted (SIGINT,
SIGTERM). A campaign killed with SIGKILL (by hand, by the OOM killer, by a test
harness that timed out) undoes nothing, and what it made outlives it until the
machine reboots: the sites' namespaces and bridge (whose 10.77.X.0/24 stays
taken), the tmpfs over each site's archive, the RabbitMQ node and its epmd, the
PostgreSQL server and its files, and the demo's programs (``stalwart up`` runs
in a session of its own). Killed campaigns left 24 namespaces, 24 mounts and 5
RabbitMQ nodes on one test machine in a morning.

So each campaign keeps a record of what it makes, a :class:`Claim`: a JSON file
in :func:`records_dir` named after the campaign's tag, with its pid and its
process's start time, written *before* it makes each thing and deleted when its
teardown is done. A campaign starting calls :func:`reap`: a record whose owner
is gone (no such pid, a zombie, or a process started at another time: the pid
was reused) is a killed campaign's, and what it lists is removed, best effort,
then the record. A record whose owner lives is never touched, so campaigns may
run side by side. A record is locked (``flock``) while it is reaped, so that two
campaigns starting at once do not both reap it. Each name, path and process is
checked to be a campaign's before it is removed, so a damaged record cannot
make the reaper delete something else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psutil

from stalwart.dev.rabbitmq import ClusterState, RabbitCluster

__all__ = ["Claim", "Record", "owner_alive", "reap", "records_dir"]

BROKER_PREFIX: Final = "stalwart-chaos-rmq-"  # HubBroker's home: tempfile.mkdtemp(prefix=...)
POSTGRES_PREFIX: Final = "stalwart-chaos-pg-"  # PrivatePostgres's root
DISK_SOURCE: Final = "chaos-"  # SiteDisks' tmpfs source names: chaos-<site>
_SAME_START: Final = 0.005  # seconds: start times are in clock ticks (10 ms)
_WAIT: Final = 15.0  # seconds a stopped process may take to exit


def records_dir() -> Path:
    """Where campaigns keep their records: /run/stalwart-chaos as root (gone at reboot,
    as what they list is), else a directory of the user's own under the temp dir."""
    if os.geteuid() == 0:
        return Path("/run/stalwart-chaos")
    return Path(tempfile.gettempdir()) / f"stalwart-chaos-{os.geteuid()}"


def _start_time(pid: int) -> float:
    return float(psutil.Process(pid).create_time())


def owner_alive(pid: int, started: float) -> bool:
    """Whether the process that wrote a record (``pid``, started at ``started``) runs."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(proc.create_time() - started) < _SAME_START
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.Error:  # cannot tell: leave it alone
        return True


@dataclass
class Record:
    """What one campaign made (or was about to make), and who it is."""

    tag: str
    pid: int
    started: float  # the owner's start time (seconds since the epoch)
    config: str | None = None  # the demo's STALWART_CONFIG: its processes carry it
    namespaces: list[str] = field(default_factory=list)
    bridge: str | None = None
    mounts: list[str] = field(default_factory=list)
    broker: str | None = None  # the RabbitMQ node's home (state.json, pid file)
    postgres: str | None = None  # the PostgreSQL root (data/, socket)

    def dumps(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    @classmethod
    def loads(cls, text: str) -> Record:
        data: dict[str, Any] = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})


class Claim:
    """This process's record: :meth:`note` writes each change before the thing is made,
    :meth:`release` deletes the record once all of it is undone."""

    def __init__(self, directory: Path | None = None, config: Path | None = None) -> None:
        self.directory = directory or records_dir()
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        pid = os.getpid()
        started = _start_time(pid)
        scratch = self.directory / f".new-{pid}"
        while True:  # a tag no other campaign holds (nor one killed before records were kept)
            tag = f"ch{random.randrange(16**4):04x}"
            if Path("/sys/class/net", f"{tag}-br").exists():
                continue
            self.record = Record(tag, pid, started, str(config) if config else None)
            scratch.write_text(self.record.dumps())
            try:
                os.link(scratch, self.path)  # all or nothing, and never over another's
                break
            except FileExistsError:
                continue
            finally:
                scratch.unlink()

    @property
    def tag(self) -> str:
        return self.record.tag

    @property
    def path(self) -> Path:
        return self.directory / f"{self.record.tag}.json"

    def note(self, **changes: Any) -> None:
        """Add to the record (fields of :class:`Record`) and write it at once."""
        self.record = dataclasses.replace(self.record, **changes)
        scratch = self.directory / f".new-{self.record.pid}"
        scratch.write_text(self.record.dumps())
        os.replace(scratch, self.path)

    def release(self) -> None:
        self.path.unlink(missing_ok=True)


def reap(directory: Path | None = None) -> list[str]:
    """Remove what each killed campaign's record lists, then the record; one line per
    campaign reaped, saying what was removed."""
    directory = directory or records_dir()
    reaped = []
    for path in sorted(directory.glob("*.json")):
        with contextlib.suppress(FileNotFoundError), path.open() as held:
            try:
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # another campaign is reaping it
                continue
            if os.fstat(held.fileno()).st_nlink == 0:  # reaped while we waited
                continue
            try:
                record = Record.loads(held.read())
            except (ValueError, TypeError):
                continue
            if owner_alive(record.pid, record.started):
                continue
            removed = undo(record)
            path.unlink(missing_ok=True)
            reaped.append(f"{record.tag} (pid {record.pid}): {', '.join(removed) or 'nothing'}")
    for scratch in directory.glob(".new-*"):  # a record being written when its owner died
        pid = scratch.name.removeprefix(".new-")
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            scratch.unlink(missing_ok=True)
    return reaped


def undo(record: Record) -> list[str]:
    """Remove, best effort, what ``record`` lists; say what was there and removed.

    The demo's processes go first (a namespace lives as long as a process in it),
    then the broker and PostgreSQL, the namespaces and the bridge, the disks.
    """
    removed = []
    if record.config and (killed := _kill_demo(record.config)):
        removed.append(f"{killed} demo processes")
    if record.broker and _stop_broker(Path(record.broker)):
        removed.append("RabbitMQ node")
    if record.postgres and _stop_postgres(Path(record.postgres)):
        removed.append("PostgreSQL")
    prefix = f"{record.tag}-"
    gone = [ns for ns in record.namespaces if ns.startswith(prefix) and _del_netns(ns)]
    if gone:
        removed.append(f"namespaces {' '.join(gone)}")
    if record.bridge and record.bridge.startswith(prefix) and _del_link(record.bridge):
        removed.append(f"bridge {record.bridge}")
    mounted = _chaos_mounts()
    unmounted = [m for m in record.mounts if m in mounted and _umount(m)]
    if unmounted:
        removed.append(f"{len(unmounted)} disks")
    return removed


def _kill_demo(config: str) -> int:
    """SIGKILL every process of the demo whose settings are ``config``."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("STALWART_CONFIG") == config:
                found.append(proc)
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(found, timeout=_WAIT)
    return len(found)


def _stop_broker(home: Path) -> bool:
    """Kill the node and its epmd (found from the node's home), delete the home."""
    if not (home.is_absolute() and home.name.startswith(BROKER_PREFIX) and home.is_dir()):
        return False
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        state = ClusterState.load(home)
        if state is not None:
            cluster = RabbitCluster(state)
            for node in cluster.nodes:
                node.kill()
            cluster.down()
    shutil.rmtree(home, ignore_errors=True)
    return True


def _stop_postgres(root: Path) -> bool:
    """Stop the server at once (SIGQUIT to the postmaster, checked to be this cluster's
    by its working directory, SIGKILL if it lingers), delete its files."""
    if not (root.is_absolute() and root.name.startswith(POSTGRES_PREFIX) and root.is_dir()):
        return False
    data = root / "data"
    with contextlib.suppress(OSError, ValueError, IndexError, psutil.Error):
        postmaster = psutil.Process(int((data / "postmaster.pid").read_text().split()[0]))
        if Path(postmaster.cwd()) == data.resolve():
            family = [postmaster, *postmaster.children(recursive=True)]
            postmaster.send_signal(signal.SIGQUIT)
            _, lingering = psutil.wait_procs(family, timeout=_WAIT)
            for proc in lingering:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            psutil.wait_procs(lingering, timeout=_WAIT)
    shutil.rmtree(root, ignore_errors=True)
    return True


def _command(*command: str) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _ip(*args: str) -> bool:
    return _command("ip", *args)


def _del_link(name: str) -> bool:
    return Path("/sys/class/net", name).exists() and _ip("link", "del", name)


def _del_netns(name: str) -> bool:
    """The namespace and its link's root end (same name; deleting it deletes the pair)."""
    _del_link(name)
    return Path("/run/netns", name).exists() and _ip("netns", "del", name)


def _unescape(text: str) -> str:
    """A path as /proc/self/mountinfo writes it (space as \\040) as it is."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def _chaos_mounts() -> set[str]:
    """Mount points of the campaigns' site disks (tmpfs named ``chaos-<site>``)."""
    found = set()
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            before, _, after = line.partition(" - ")
            fstype, source, *_ = [*after.split(), "", ""]
            if fstype == "tmpfs" and source.startswith(DISK_SOURCE):
                found.add(_unescape(before.split()[4]))
    return found


def _umount(path: str) -> bool:
    """Lazily: a process may still hold a file open there."""
    return _command("umount", "-l", path)
