"""Signed tokens on the bus (JWT, HS256 or RS256) and role checks.

A token names a subject and its roles. Handlers may require roles; a message
whose token is missing, forged, expired or lacks the role is rejected before
it reaches the handler. Secrets are never logged or printed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from stalwart.config import SecuritySettings
from stalwart.errors import ConfigError, NotAuthorised

__all__ = ["TokenAuthority", "parse_ttl"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    """``90``, ``30s``, ``15m``, ``1h``, ``7d`` -> seconds."""
    text = text.strip().lower()
    try:
        value = float(text[:-1]) * _UNITS[text[-1]] if text and text[-1] in _UNITS else float(text)
    except ValueError:
        raise ConfigError(f"bad duration {text!r}: use e.g. 30s, 15m, 1h or 7d") from None
    if value <= 0:
        raise ConfigError(f"duration {text!r} must be positive")
    return value


class TokenAuthority:
    """Issues and verifies tokens with the keys from ``[security]``."""

    def __init__(self, settings: SecuritySettings) -> None:
        self._settings = settings
        self._signing_key: str | None = None
        self._verify_key: str | None = None
        if settings.algorithm == "HS256":
            self._signing_key = self._verify_key = settings.secret
        else:
            if settings.private_key_file:
                self._signing_key = settings.private_key_file.read_text()
            if settings.public_key_file:
                self._verify_key = settings.public_key_file.read_text()

    @property
    def configured(self) -> bool:
        return self._verify_key is not None

    def issue(self, subject: str, roles: Iterable[str], ttl: float) -> str:
        """A signed token for ``subject`` with ``roles``, valid for ``ttl`` seconds."""
        if self._signing_key is None:
            raise ConfigError(
                "no signing key: set [security] secret (HS256; or STALWART_JWT_SECRET) "
                "or private_key_file (RS256)"
            )
        import jwt  # PyJWT loads cryptography: only a process that signs or checks pays for it

        now = int(time.time())
        claims = {
            "sub": subject,
            "roles": sorted(set(roles)),
            "iat": now,
            "exp": now + int(ttl),
            "iss": self._settings.issuer,
        }
        return jwt.encode(claims, self._signing_key, algorithm=self._settings.algorithm)

    def verify(self, token: str | None, required: Iterable[str]) -> dict[str, Any]:
        """Claims of a valid token holding every ``required`` role, else NotAuthorised."""
        needed = set(required)
        if token is None:
            raise NotAuthorised(f"missing token; roles {sorted(needed)} required")
        if self._verify_key is None:
            raise NotAuthorised("this service cannot verify tokens: no key in [security]")
        import jwt

        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._verify_key,
                algorithms=[self._settings.algorithm],
                issuer=self._settings.issuer,
                options={"require": ["exp", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise NotAuthorised("token expired") from None
        except jwt.PyJWTError as exc:
            raise NotAuthorised(f"invalid token: {exc}") from None
        missing = needed - set(claims.get("roles", []))
        if missing:
            raise NotAuthorised(f"token of {claims['sub']!r} lacks role(s) {sorted(missing)}")
        return claims
