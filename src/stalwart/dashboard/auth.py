"""Logins, sessions and CSRF protection for the dashboard.

Passwords are stored as scrypt hashes (``scrypt$n$r$p$salt$hash``, PBKDF2
accepted too). A session is a signed, expiring cookie (HMAC-SHA256 over the
user name and expiry), so the server keeps no session table and a restart
with the same ``[dashboard] secret`` keeps people logged in. CSRF uses a
signed double submit: a random per-browser cookie, and forms and API actions
carry ``HMAC(secret, cookie)``, which a cross-site page cannot compute.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from stalwart.errors import ConfigError

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "CSRF_HEADER",
    "SESSION_COOKIE",
    "Authenticator",
    "Session",
    "hash_password",
    "verify_password",
]

SESSION_COOKIE = "stalwart_session"
CSRF_COOKIE = "stalwart_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"

_N, _R, _P = 2**14, 8, 1
# Verifying against this keeps the time of a login with an unknown user the same.
_DUMMY = "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 86


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    """A salted scrypt hash of ``password`` for the ``[dashboard.users]`` table."""
    if not password:
        raise ConfigError("the password is empty: choose a non-empty password")
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=64)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, encoded: str) -> bool:
    """True when ``password`` matches ``encoded`` (scrypt or pbkdf2_sha256); constant time."""
    try:
        scheme, *parts = encoded.split("$")
        if scheme == "scrypt":
            n, r, p, salt, want = parts
            got = hashlib.scrypt(
                password.encode(), salt=_unb64(salt), n=int(n), r=int(r), p=int(p), dklen=64
            )
        elif scheme == "pbkdf2_sha256":
            rounds, salt, want = parts
            got = hashlib.pbkdf2_hmac("sha256", password.encode(), _unb64(salt), int(rounds))
        else:
            return False
        return hmac.compare_digest(got, _unb64(want))
    except (ValueError, TypeError):
        return False


@dataclass(frozen=True, slots=True)
class Session:
    """A logged-in user until ``expires`` (Unix time)."""

    user: str
    expires: float


class Authenticator:
    """Checks credentials and signs/verifies session cookies and CSRF tokens."""

    def __init__(self, users: dict[str, str], secret: str | None, ttl: float) -> None:
        self._users = dict(users)
        self._key = hashlib.sha256((secret or secrets.token_hex(32)).encode()).digest()
        self.ttl = ttl

    @property
    def has_users(self) -> bool:
        return bool(self._users)

    def check(self, user: str, password: str) -> bool:
        """True when ``user`` exists and ``password`` matches its hash."""
        encoded = self._users.get(user)
        ok = verify_password(password, encoded or _DUMMY)
        return ok and encoded is not None

    def _sign(self, payload: bytes) -> str:
        return _b64(hmac.new(self._key, payload, hashlib.sha256).digest())

    def issue(self, user: str, now: float | None = None) -> str:
        """A session cookie value for ``user``."""
        expires = (now or time.time()) + self.ttl
        payload = json.dumps({"u": user, "e": expires}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{self._sign(payload)}"

    def session(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie carries, or None if absent, forged, expired or revoked."""
        if not cookie or "." not in cookie:
            return None
        body, _, signature = cookie.partition(".")
        try:
            payload = _unb64(body)
            if not hmac.compare_digest(signature, self._sign(payload)):
                return None
            data = json.loads(payload)
            user, expires = str(data["u"]), float(data["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if expires < (now or time.time()) or user not in self._users:
            return None
        return Session(user=user, expires=expires)

    @staticmethod
    def new_csrf_cookie() -> str:
        return secrets.token_urlsafe(24)

    def csrf_token(self, cookie: str) -> str:
        """The token forms must echo for the browser holding ``cookie``."""
        return self._sign(b"csrf:" + cookie.encode())

    def csrf_ok(self, cookie: str | None, token: str | None) -> bool:
        if not cookie or not token:
            return False
        return hmac.compare_digest(token, self.csrf_token(cookie))
