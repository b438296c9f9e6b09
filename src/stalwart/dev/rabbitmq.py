"""RabbitMQ nodes and a 3-node cluster on one host, for tests, the demo and local trials.

Debian's ``rabbitmq-server`` is enough: no container runtime. Every node has
its own loopback address (``127.X.Y.N``), AMQP and distribution ports, node
name, data and log directories, configuration and no plugins; the nodes of a
cluster share one Erlang cookie and an ``epmd`` of their own. The shared
broker on 5672 is never touched.

A node's own address is what makes a partition possible without a firewall:
:meth:`RabbitNode.isolate` adds a blackhole route for it (root only), which
cuts its peers and its clients off in both directions; :meth:`RabbitNode.heal`
removes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from operator import methodcaller
from pathlib import Path
from typing import Any, Final, TypeVar

import psutil

from stalwart.dev.ports import free_port, port_open, wait_port
from stalwart.dev.rabbitmq_config import (
    ADVANCED_CONFIG,
    DEV_PASSWORDS,
    JOIN_STEPS,
    definitions_json,
    rabbitmq_conf,
)
from stalwart.ha.queue_leaders import rabbitmqctl_leaders

__all__ = ["RABBITMQ_BIN", "ClusterState", "NodeSpec", "RabbitCluster", "RabbitNode"]

RABBITMQ_BIN: Final = Path("/usr/lib/rabbitmq/bin")
_EPMD: Final = "epmd"
_BOOT_TIMEOUT: Final = 180.0  # seconds; nodes boot slowly on a busy machine
_T = TypeVar("_T")


@dataclass(frozen=True)
class NodeSpec:
    """Where one node lives: enough to find it again from another process."""

    name: str  # Erlang node name without the host
    host: str  # its own loopback address
    amqp_port: int
    dist_port: int
    root: str  # its directory (configuration, data, logs, pid file)


class RabbitNode:
    """One RabbitMQ node: start, wait, stop gracefully, kill -9, isolate, run rabbitmqctl.

    ``cookie_home`` holds the Erlang cookie (``.erlang.cookie``): nodes of
    one cluster share it. ``conf`` is the node's ``rabbitmq.conf``; its
    ``advanced.config`` is :data:`~stalwart.dev.rabbitmq_config.ADVANCED_CONFIG`.
    """

    def __init__(
        self,
        spec: NodeSpec,
        *,
        cookie_home: Path,
        conf: str,
        epmd_port: int | None = None,
    ) -> None:
        if not (RABBITMQ_BIN / "rabbitmq-server").exists():
            raise FileNotFoundError(f"no RabbitMQ server at {RABBITMQ_BIN}/rabbitmq-server")
        self.spec = spec
        self.root = Path(spec.root)
        # The server this object started, reaped when it stops (a node started by
        # another process, `stalwart dev cluster up`, is found by its pid file).
        self._server: subprocess.Popen[bytes] | None = None
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "rabbitmq.conf").write_text(conf)
        (self.root / "advanced.config").write_text(ADVANCED_CONFIG)
        (self.root / "rabbitmq-env.conf").write_text("")
        (self.root / "enabled_plugins").write_text("[].\n")
        _ensure_cookie(cookie_home)
        erl_ip = "{" + spec.host.replace(".", ",") + "}"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(cookie_home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_USE_LONGNAME": "true",
            "RABBITMQ_NODE_IP_ADDRESS": spec.host,
            "RABBITMQ_NODE_PORT": str(spec.amqp_port),
            "RABBITMQ_DIST_PORT": str(spec.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.root / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.root / "log"),
            "RABBITMQ_PID_FILE": str(self.pid_file),
            "RABBITMQ_CONFIG_FILE": str(self.root / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.root / "advanced.config"),
            "RABBITMQ_CONF_ENV_FILE": str(self.root / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.root / "enabled_plugins"),
            # Distribution only on the node's own address, both ways, so that a
            # route to that address cuts it off from its peers.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                f"-kernel inet_dist_use_interface {erl_ip} "
                f"-kernel inet_dist_connect_options [{{ip,{erl_ip}}}]"
            ),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        if epmd_port is not None:
            self.env["ERL_EPMD_PORT"] = str(epmd_port)

    @property
    def node(self) -> str:
        return f"{self.spec.name}@{self.spec.host}"

    @property
    def pid_file(self) -> Path:
        return self.root / "node.pid"

    def amqp_url(self, user: str, password: str) -> str:
        return f"amqp://{user}:{password}@{self.spec.host}:{self.spec.amqp_port}/"

    # -- life-cycle ----------------------------------------------------------

    def launch(self) -> None:
        """Start the node's VM in its own session (it outlives this process); no wait."""
        if self.running():
            return
        with (self.root / "server.out").open("ab") as log:
            self._server = subprocess.Popen(
                [str(RABBITMQ_BIN / "rabbitmq-server")],
                env=self.env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = _BOOT_TIMEOUT) -> None:
        """Until the node accepts AMQP connections."""
        wait_port(self.spec.amqp_port, timeout, f"RabbitMQ node {self.node}", self.spec.host)

    def start(self, timeout: float = _BOOT_TIMEOUT) -> None:
        self.launch()
        self.wait_ready(timeout)

    def ready(self) -> bool:
        return port_open(self.spec.amqp_port, self.spec.host)

    def process(self) -> psutil.Process | None:
        """The node's Erlang VM, if it runs (checked by its node name, not only its pid)."""
        try:
            pid = int(self.pid_file.read_text().strip())
            proc = psutil.Process(pid)
            if proc.environ().get("RABBITMQ_NODENAME") == self.node:
                return proc
        except (OSError, ValueError, psutil.Error):
            pass
        return None

    def running(self) -> bool:
        return self.process() is not None

    def ctl(self, *args: str, timeout: float = 120.0) -> str:
        """``rabbitmqctl -n NODE ARGS``; its output, or RuntimeError with its error."""
        command = [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", self.node, *args]
        done = subprocess.run(command, env=self.env, capture_output=True, timeout=timeout)
        if done.returncode != 0:
            error = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} on {self.node} failed: {error}")
        return done.stdout.decode(errors="replace")

    def stop(self, timeout: float = 120.0) -> None:
        """Graceful shutdown (``rabbitmqctl stop``), waiting until the VM has exited."""
        if self.running():
            self.ctl("stop", str(self.pid_file), timeout=timeout)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the node's VM and its helpers: no clean shutdown."""
        proc = self.process()
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
            with contextlib.suppress(psutil.Error):
                proc.wait(30)
        self._reap()

    def _reap(self) -> None:
        """Collect the exit of the server this object started, once its VM is gone."""
        if self._server is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._server.wait(30)
                self._server = None

    def close(self) -> None:
        """Stop the node whatever its state (kill it if stopping fails); files stay."""
        self.heal()
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            self.stop(timeout=60.0)
        self.kill()

    # -- partition -----------------------------------------------------------

    def _route(self, action: str) -> subprocess.CompletedProcess[bytes]:
        if self.spec.host == "127.0.0.1":
            raise RuntimeError("a node on 127.0.0.1 cannot be isolated: give it its own address")
        command = ["ip", "route", action, "blackhole", f"{self.spec.host}/32", "table", "local"]
        return subprocess.run(command, capture_output=True, timeout=10)

    def isolate(self) -> None:
        """Cut the node off from its peers and clients (root: a blackhole route)."""
        done = self._route("add")
        if done.returncode != 0:
            raise RuntimeError(
                f"cannot isolate {self.node}: {done.stderr.decode().strip()} "
                "(needs root, or CAP_NET_ADMIN, and iproute2)"
            )

    def heal(self) -> None:
        """Undo :meth:`isolate` (nothing to do if the node is not isolated)."""
        if self.spec.host != "127.0.0.1":
            self._route("del")

    def isolated(self) -> bool:
        if self.spec.host == "127.0.0.1":
            return False
        command = ["ip", "route", "show", "table", "local", f"{self.spec.host}/32"]
        done = subprocess.run(command, capture_output=True, timeout=10)
        return b"blackhole" in done.stdout


def _ensure_cookie(home: Path) -> None:
    cookie = home / ".erlang.cookie"
    if not cookie.exists():
        home.mkdir(parents=True, exist_ok=True)
        cookie.write_text(secrets.token_hex(20))
        cookie.chmod(0o400)


@dataclass(frozen=True)
class ClusterState:
    """What ``state.json`` keeps, so that ``down`` and ``status`` find the cluster."""

    root: str
    epmd_port: int
    nodes: tuple[NodeSpec, ...]

    def save(self) -> None:
        path = Path(self.root) / "state.json"
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, root: Path) -> ClusterState | None:
        path = root / "state.json"
        if not path.exists():
            return None
        data: dict[str, Any] = json.loads(path.read_text())
        nodes = tuple(NodeSpec(**node) for node in data["nodes"])
        return cls(root=data["root"], epmd_port=int(data["epmd_port"]), nodes=nodes)


def _new_state(root: Path, size: int) -> ClusterState:
    # A /24 of the loopback range of its own, so that isolating one of its nodes
    # touches nothing else on the host.
    prefix = f"127.{random.randint(100, 254)}.{random.randint(0, 255)}"
    nodes = tuple(
        NodeSpec(
            name=f"stalwart-{n}",
            host=f"{prefix}.{n}",
            amqp_port=free_port(),
            dist_port=free_port(),
            root=str(root / f"node-{n}"),
        )
        for n in range(1, size + 1)
    )
    return ClusterState(root=str(root), epmd_port=free_port(), nodes=nodes)


class RabbitCluster:
    """Three (``size``) nodes joined into one cluster under ``root``.

    Users, permissions and the quorum-queue policy come from
    :mod:`stalwart.dev.rabbitmq_config` (imported by every node at boot). A
    cluster started by one process is found again by another from
    ``root/state.json``.
    """

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        self.root = Path(state.root)
        self._epmd_server: subprocess.Popen[bytes] | None = None  # reaped by down()
        definitions = self.root / "definitions.json"
        self.nodes = [
            RabbitNode(
                spec,
                cookie_home=self.root,
                conf=rabbitmq_conf(f"{spec.host}:{spec.amqp_port}", str(definitions)),
                epmd_port=state.epmd_port,
            )
            for spec in state.nodes
        ]

    @classmethod
    def create(cls, root: Path, size: int = 3) -> RabbitCluster:
        """A new cluster's files under ``root`` (nothing started yet)."""
        root.mkdir(parents=True, exist_ok=True)
        state = _new_state(root.resolve(), size)
        (root / "definitions.json").write_text(definitions_json())
        state.save()
        return cls(state)

    @classmethod
    def find(cls, root: Path) -> RabbitCluster | None:
        state = ClusterState.load(root)
        return cls(state) if state is not None else None

    def urls(self, user: str = "stalwart", first: RabbitNode | None = None) -> str:
        """The ``[bus] url`` list: every node, ``user`` with its development password.

        Clients connect to the first node that answers: ``first`` puts one node
        at the head of the list.
        """
        nodes = sorted(self.nodes, key=lambda node: node is not first)
        return ",".join(node.amqp_url(user, DEV_PASSWORDS[user]) for node in nodes)

    # -- life-cycle ----------------------------------------------------------

    def _each(self, work: Callable[[RabbitNode], _T], nodes: list[RabbitNode]) -> list[_T]:
        with ThreadPoolExecutor(max_workers=len(nodes) or 1) as pool:
            return list(pool.map(work, nodes))

    def _epmd(self) -> None:
        """This cluster's epmd, on every node's address (lookups go to a node's host)."""
        port = self.state.epmd_port
        if port_open(port):
            return
        addresses = ",".join(["127.0.0.1", *(n.spec.host for n in self.nodes)])
        with (self.root / "epmd.out").open("ab") as log:
            self._epmd_server = subprocess.Popen(
                [_EPMD, "-port", str(port), "-address", addresses],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_port(port, 30.0, "epmd")

    def up(self, timeout: float = _BOOT_TIMEOUT) -> None:
        """Start every node at once, then join the others to the first (first start only)."""
        self._epmd()
        self._each(lambda node: node.start(timeout), self.nodes)
        first, *others = self.nodes
        joined = self.root / "joined"
        if joined.exists():
            return
        for step in JOIN_STEPS:
            args = [arg.format(first=first.node) for arg in step]
            if step[0] == "join_cluster":  # one at a time: each joins the cluster as it is
                for node in others:
                    node.ctl(*args)
            else:
                self._each(methodcaller("ctl", *args), others)
        self._each(lambda node: node.wait_ready(timeout), others)
        joined.write_text(first.node + "\n")

    def down(self) -> None:
        """Stop every node (kill those that do not stop) and the cluster's epmd."""
        self._each(lambda node: node.close(), self.nodes)
        for proc in psutil.process_iter(["name", "cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if proc.info["name"] == _EPMD and str(self.state.epmd_port) in cmdline:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        if self._epmd_server is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._epmd_server.wait(30)
                self._epmd_server = None

    def destroy(self) -> None:
        """:meth:`down`, then delete the cluster's files."""
        self.down()
        shutil.rmtree(self.root, ignore_errors=True)

    def node(self, name: str) -> RabbitNode:
        """A node by its node name (``stalwart-2@127.X.Y.2``) or short name (``stalwart-2``)."""
        for node in self.nodes:
            if name in (node.node, node.spec.name):
                return node
        known = ", ".join(n.node for n in self.nodes)
        raise KeyError(f"no node {name!r} in this cluster; its nodes are {known}")

    # -- inspection ----------------------------------------------------------

    def _answering(self, exclude: RabbitNode | None = None) -> Iterator[RabbitNode]:
        for node in self.nodes:
            if node is not exclude and node.ready() and not node.isolated():
                yield node

    def ctl_any(self, *args: str, exclude: RabbitNode | None = None) -> str:
        """``rabbitmqctl`` on the first node that answers."""
        errors = []
        for node in self._answering(exclude):
            try:
                return node.ctl(*args, timeout=60.0)
            except (RuntimeError, subprocess.SubprocessError) as exc:
                errors.append(str(exc))
        raise RuntimeError("no node of the cluster answers: " + "; ".join(errors or ["none up"]))

    def members(self) -> dict[str, list[str]]:
        """``running`` and ``disc`` (every member) node names, as a node sees them."""
        status = json.loads(self.ctl_any("cluster_status", "--formatter", "json"))
        return {
            "running": list(status.get("running_nodes", [])),
            "disc": list(status.get("disk_nodes", [])),
        }

    def queues(self, exclude: RabbitNode | None = None) -> list[dict[str, Any]]:
        """Every queue's ``name``, ``type``, ``leader`` and ``members``."""
        out = self.ctl_any(
            "list_queues",
            "name",
            "type",
            "leader",
            "members",
            "--formatter",
            "json",
            "--quiet",
            exclude=exclude,
        )
        rows: list[dict[str, Any]] = json.loads(out or "[]")
        return rows

    def leader(self, queue: str, exclude: RabbitNode | None = None) -> str | None:
        """The node leading quorum queue ``queue`` now (asked of a node other than ``exclude``)."""
        for row in self.queues(exclude):
            if row.get("name") == queue:
                leader = row.get("leader")
                return str(leader) if leader else None
        return None

    async def leaders(self) -> dict[str, str]:
        """``{queue: leader}`` from the first node that answers (a :data:`LeaderReader`)."""
        commands = [
            [str(RABBITMQ_BIN / "rabbitmqctl"), "-n", node.node] for node in self._answering()
        ]
        return await rabbitmqctl_leaders(commands, self.nodes[0].env)

    def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                if check():
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.5)
