"""Simulated sites: one Linux network namespace per site, joined by a bridge.

Each site ``s`` gets a namespace ``<tag>-s`` whose ``eth0`` is one end of a
veth pair; the other end (``<tag>-s``, in the root namespace) is enslaved to
the bridge ``<tag>-br``, which holds the hub address (``10.77.X.1``, every
site's gateway), one address per broker node (``10.77.X.3`` and up) and the
store's (``10.77.X.2``): every site reaches them over its own link. Network
distance is modelled as a star: ``DISTANCE[s]`` ms one way between site ``s``
and the hub, put on both ends of its link with ``tc netem`` (with 0.5 % loss),
so that jao<->eu is 60 + 60 = 120 ms one way. A kernel without ``sch_netem``
gets the links without the distance (:attr:`Sites.distance_note` says so).

:meth:`Sites.cut` takes a site's link down (a WAN cut), :meth:`Sites.mend`
brings it back; :meth:`Sites.isolate` takes a broker node's address off the
bridge (no site and no other node reaches it), :meth:`Sites.restore` gives it
back. :meth:`Sites.close` deletes everything it made. Root only.
"""

from __future__ import annotations

import contextlib
import os
import random
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

__all__ = ["DISTANCE", "Sites", "SitesUnavailable"]

DISTANCE: Final = {"jao": 60, "eu": 60, "na": 40, "ea": 50}  # ms one way to the hub
_LOSS: Final = "0.5%"


class SitesUnavailable(Exception):
    """Namespaces cannot be made here; the message says why."""


def _ip(*args: str, netns: str | None = None) -> str:
    command = ["ip", *(["-n", netns] if netns else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise SitesUnavailable(f"`{' '.join(command)}` failed: {done.stderr.strip()}")
    return done.stdout


def _netem(device: str, delay_ms: int, netns: str | None = None) -> bool:
    command = [
        *(["ip", "netns", "exec", netns] if netns else []),
        "tc",
        "qdisc",
        "replace",
        "dev",
        device,
        "root",
        "netem",
        "delay",
        f"{delay_ms}ms",
        "loss",
        _LOSS,
    ]
    return subprocess.run(command, capture_output=True, timeout=20).returncode == 0


def _free_subnet() -> str:
    """A ``10.77.X`` /24 that no interface of this host uses (campaigns may run side by side)."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    free = [x for x in range(1, 255) if f" 10.77.{x}." not in used]
    return f"10.77.{random.choice(free or [1])}"


class Sites:
    """The namespaces, links and bridge of one campaign (see the module doc)."""

    def __init__(self, sites: Sequence[str], tag: str | None = None, brokers: int = 3) -> None:
        self.tag = tag or f"ch{random.randrange(16**4):04x}"
        self.subnet = _free_subnet()
        self.sites = list(sites)
        self.brokers = brokers
        self.made: list[str] = []  # namespaces made, for close()
        self.bridge: str | None = None
        self.distance_note: str | None = None

    @staticmethod
    def why_not() -> str | None:
        if os.geteuid() != 0:
            return "needs root for network namespaces (run as root)"
        return None

    @property
    def hub(self) -> str:
        """The root namespace's first address on the bridge: the sites' gateway."""
        return f"{self.subnet}.1"

    @property
    def store_address(self) -> str:
        """The root-namespace address on the bridge where the store's PostgreSQL listens."""
        return f"{self.subnet}.2"

    @property
    def broker_addresses(self) -> list[str]:
        """One root-namespace address on the bridge per broker node, each partitioned
        on its own (:meth:`isolate`)."""
        return [f"{self.subnet}.{3 + n}" for n in range(self.brokers)]

    @property
    def bridge_name(self) -> str:
        return f"{self.tag}-br"

    def netns(self, site: str) -> str:
        return f"{self.tag}-{site}"

    def address(self, site: str) -> str:
        return f"{self.subnet}.{10 + self.sites.index(site)}"

    def build(self) -> None:
        """Make the bridge, then each site's namespace and link; close() on failure."""
        if why := self.why_not():
            raise SitesUnavailable(why)
        try:
            bridge = self.bridge_name
            _ip("link", "add", bridge, "type", "bridge")
            self.bridge = bridge
            # The other addresses must outlive a broker node's (removed by isolate()).
            promote = Path("/proc/sys/net/ipv4/conf") / bridge / "promote_secondaries"
            promote.write_text("1\n")
            for address in [self.hub, self.store_address, *self.broker_addresses]:
                _ip("addr", "add", f"{address}/24", "dev", bridge)
            _ip("link", "set", bridge, "up")
            for site in self.sites:
                self._site(site)
        except BaseException:
            self.close()
            raise

    def _site(self, site: str) -> None:
        ns, host = self.netns(site), self.netns(site)
        _ip("netns", "add", ns)
        self.made.append(ns)
        _ip("link", "set", "lo", "up", netns=ns)
        _ip("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("link", "set", host, "master", str(self.bridge), "up")
        _ip("addr", "add", f"{self.address(site)}/24", "dev", "eth0", netns=ns)
        _ip("link", "set", "eth0", "up", netns=ns)
        _ip("route", "add", "default", "via", self.hub, netns=ns)
        delay = DISTANCE.get(site, 50)
        if not (_netem(host, delay) and _netem("eth0", delay, netns=ns)):
            self.distance_note = (
                "no network distance: this kernel has no tc netem (sch_netem); "
                "the sites' links are fast and lossless"
            )

    def cut(self, site: str) -> None:
        """The site's WAN link goes down: it reaches neither the hub nor other sites."""
        _ip("link", "set", self.netns(site), "down")

    def mend(self, site: str) -> None:
        _ip("link", "set", self.netns(site), "up")

    def isolate(self, address: str) -> None:
        """A broker node's address leaves the bridge: no site and no other node reaches
        it (packets to it are dropped) until :meth:`restore`."""
        _ip("addr", "del", f"{address}/24", "dev", str(self.bridge))

    def restore(self, address: str) -> None:
        with contextlib.suppress(SitesUnavailable):  # already there: nothing to restore
            _ip("addr", "add", f"{address}/24", "dev", str(self.bridge))

    def close(self) -> None:
        """Delete every namespace (their veth pairs go with them) and the bridge."""
        for ns in self.made:
            with contextlib.suppress(SitesUnavailable):
                _ip("netns", "del", ns)
        self.made.clear()
        if self.bridge is not None:
            with contextlib.suppress(SitesUnavailable):
                _ip("link", "del", self.bridge)
            self.bridge = None
