"""Logins, sessions and CSRF protection for the dashboard.

Passwords are stored as scrypt hashes (``scrypt$n$r$p$salt$hash``, PBKDF2
accepted too). Sessions live on the server: the cookie is a random id that
means something only while this process holds it, so logout revokes it at
once and a restart (the only way to change a password or ``session_ttl``)
revokes them all. CSRF tokens are ``HMAC(secret, session id)``: bound to the
session, not to a cookie another port of the same host could set. Before a
login, the login form's token is bound to a random per-browser cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
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
    "session_binding",
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
    """A logged-in user until ``expires`` (Unix time); ``id`` is the cookie's value."""

    id: str
    user: str
    expires: float


class Authenticator:
    """Checks credentials, holds the sessions, and makes and checks CSRF tokens."""

    def __init__(
        self, users: dict[str, str], secret: str | None, ttl: float, max_sessions: int = 10_000
    ) -> None:
        self._users = dict(users)
        self._key = hashlib.sha256((secret or secrets.token_hex(32)).encode()).digest()
        self.ttl = ttl
        self._max = max_sessions
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    @property
    def has_users(self) -> bool:
        return bool(self._users)

    def check(self, user: str, password: str) -> bool:
        """True when ``user`` exists and ``password`` matches its hash."""
        encoded = self._users.get(user)
        ok = verify_password(password, encoded or _DUMMY)
        return ok and encoded is not None

    def issue(self, user: str, now: float | None = None) -> str:
        """A new session for ``user``; returns the cookie value (a fresh random id)."""
        session = Session(secrets.token_urlsafe(32), user, (now or time.time()) + self.ttl)
        self._sessions[session.id] = session
        while len(self._sessions) > self._max:  # the oldest logins go first
            self._sessions.popitem(last=False)
        return session.id

    def session(self, cookie: str | None, now: float | None = None) -> Session | None:
        """The session a cookie names, or None if absent, unknown, expired or revoked."""
        found = self._sessions.get(cookie) if cookie else None
        if found is None:
            return None
        if found.expires < (now or time.time()) or found.user not in self._users:
            self._sessions.pop(found.id, None)
            return None
        return found

    def revoke(self, cookie: str | None) -> None:
        """End the session ``cookie`` names: a copy of the cookie stops working too."""
        if cookie:
            self._sessions.pop(cookie, None)

    @staticmethod
    def new_csrf_cookie() -> str:
        return secrets.token_urlsafe(24)

    def csrf_token(self, binding: str) -> str:
        """The token a form must echo: for a session, pass ``session_binding(session)``;
        before a login, the browser's CSRF cookie."""
        return _b64(hmac.new(self._key, b"csrf:" + binding.encode(), hashlib.sha256).digest())

    def csrf_ok(self, binding: str | None, token: str | None) -> bool:
        if not binding or not token:
            return False
        return hmac.compare_digest(token, self.csrf_token(binding))


def session_binding(session: Session) -> str:
    """What a logged-in user's CSRF token is bound to (distinct from any cookie value)."""
    return "session:" + session.id
