"""Refusals before any route runs: foreign Host names, cross-origin writes, NUL bytes.

- A Host header not on the allow-list gets 400: a page on a name the
  attacker controls that resolves to this host (DNS rebinding) reads nothing.
  IP literals are always accepted: a browser only sends one when the user
  typed that address, which no other site can arrange.
- A state-changing request (not GET/HEAD/OPTIONS) whose ``Origin`` is not
  this one, or whose ``Sec-Fetch-Site`` is not ``same-origin``/``none``, gets
  403, whatever cookies it carries: another port of the same host is another
  origin.
- A NUL byte in the path or query gets 400: no store takes it, and it is
  never meant.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from urllib.parse import unquote_to_bytes, urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["RequestGuard", "default_hosts", "host_name"]

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SAME_SITE = frozenset({"same-origin", "none"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})


def default_hosts(bind_host: str) -> frozenset[str]:
    """The names a browser may use for a dashboard bound on ``bind_host``: that
    address, the loopback names, and on a wildcard bind this machine's names."""
    names = {"localhost", "127.0.0.1", "::1", bind_host.lower()}
    if bind_host in _WILDCARDS:
        names.update({socket.gethostname().lower(), socket.getfqdn().lower()})
    return frozenset(names - {""})


def host_name(value: str) -> str:
    """``example.org:8321`` / ``[::1]:8321`` -> the name alone, lower case."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class RequestGuard:
    """Pure ASGI middleware applying the three refusals above."""

    def __init__(self, app: ASGIApp, allowed_hosts: frozenset[str]) -> None:
        self.app = app
        self.any_host = "*" in allowed_hosts
        self.allowed = frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail = refusal
        body = json.dumps({"detail": detail}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _refusal(self, scope: Scope) -> tuple[int, str] | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        name = host_name(host)
        if not self.any_host and name not in self.allowed and not _is_ip(name):
            return 400, (
                f"unknown Host {host[:100]!r}: open the dashboard by a name in "
                "[dashboard] allowed_hosts (add this one there if it is yours)"
            )
        if b"\0" in unquote_to_bytes(scope.get("raw_path") or b"") or b"\0" in unquote_to_bytes(
            scope.get("query_string", b"")
        ):
            return 400, "a NUL character is not allowed in the address: remove %00"
        if scope["method"] in _SAFE_METHODS:
            return None
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site not in _SAME_SITE:
            return 403, f"cross-site request refused (Sec-Fetch-Site: {fetch_site[:30]})"
        origin = headers.get("origin")
        if origin is not None and urlsplit(origin).netloc.lower() != host.lower():
            return 403, f"cross-origin request refused: origin {origin[:100]!r} is not {host!r}"
        return None
