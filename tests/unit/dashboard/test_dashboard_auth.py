"""Password hashes, signed sessions and CSRF tokens."""

from __future__ import annotations

import base64
import hashlib

import pytest

from stalwart.dashboard.auth import (
    Authenticator,
    hash_password,
    session_binding,
    verify_password,
)
from stalwart.errors import ConfigError

FAST = {"n": 2**10}


def test_a_password_verifies_against_its_hash_and_nothing_else() -> None:
    # Given a hash of a password
    encoded = hash_password("s3cret!", **FAST)
    # Then the hash does not contain the password, and only that password matches
    assert "s3cret" not in encoded and encoded.startswith("scrypt$")
    assert verify_password("s3cret!", encoded)
    assert not verify_password("s3cret", encoded)
    assert not verify_password("", encoded)


def test_two_hashes_of_one_password_differ_by_salt() -> None:
    assert hash_password("same", **FAST) != hash_password("same", **FAST)


def test_pbkdf2_hashes_are_accepted() -> None:
    salt = b"0123456789abcdef"
    digest = hashlib.pbkdf2_hmac("sha256", b"pw", salt, 1000)
    enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()  # noqa: E731
    assert verify_password("pw", f"pbkdf2_sha256$1000${enc(salt)}${enc(digest)}")


@pytest.mark.parametrize("bad", ["", "plain", "scrypt$x", "md5$a$b", "scrypt$1$2$3$!!$??"])
def test_malformed_hashes_never_verify(bad: str) -> None:
    assert not verify_password("anything", bad)


def test_an_empty_password_cannot_be_hashed() -> None:
    with pytest.raises(ConfigError, match="empty"):
        hash_password("")


@pytest.fixture
def auth() -> Authenticator:
    return Authenticator({"ops": hash_password("pw", **FAST)}, "secret", ttl=60.0)


def test_credentials_are_checked(auth: Authenticator) -> None:
    assert auth.check("ops", "pw")
    assert not auth.check("ops", "nope")
    assert not auth.check("nobody", "pw")


def test_a_session_holds_until_it_expires(auth: Authenticator) -> None:
    # Given a session issued at t=1000
    cookie = auth.issue("ops", now=1000.0)
    # Then it is valid before its expiry and not after
    session = auth.session(cookie, now=1030.0)
    assert session is not None and session.user == "ops" and session.id == cookie
    assert auth.session(cookie, now=1061.0) is None


def test_a_revoked_session_is_gone_and_others_stay(auth: Authenticator) -> None:
    mine, theirs = auth.issue("ops", now=1000.0), auth.issue("ops", now=1000.0)
    auth.revoke(mine)
    assert auth.session(mine, now=1001.0) is None
    assert auth.session(theirs, now=1001.0) is not None


def test_sessions_are_held_by_the_process_that_issued_them(auth: Authenticator) -> None:
    # Given a session of one dashboard
    cookie = auth.issue("ops", now=1000.0)
    # Then another one with the same secret (a restart) does not know it, nor guesses
    same_secret = Authenticator({"ops": hash_password("pw", **FAST)}, "secret", ttl=60.0)
    assert same_secret.session(cookie, now=1001.0) is None
    assert auth.session("garbage", now=1000.0) is None
    assert auth.session(None) is None


def test_the_session_table_is_bounded() -> None:
    auth = Authenticator({"ops": "scrypt$x"}, "k", 60.0, max_sessions=3)
    cookies = [auth.issue("ops", now=0.0) for _ in range(5)]
    assert [auth.session(c, now=1.0) is not None for c in cookies] == [False] * 2 + [True] * 3


def test_a_removed_user_loses_the_session() -> None:
    auth = Authenticator({"ops": "scrypt$x"}, "k", 60.0)
    cookie = auth.issue("ops", now=0.0)
    auth._users.clear()
    assert auth.session(cookie, now=1.0) is None


def test_csrf_tokens_bind_to_the_session_not_to_a_cookie(auth: Authenticator) -> None:
    # Given two sessions and a browser's CSRF cookie
    mine = auth.session(auth.issue("ops"))
    theirs = auth.session(auth.issue("ops"))
    assert mine is not None and theirs is not None
    cookie = auth.new_csrf_cookie()
    # Then my token passes for my session only, and a cookie's token for no session
    assert auth.csrf_ok(session_binding(mine), auth.csrf_token(session_binding(mine)))
    assert not auth.csrf_ok(session_binding(theirs), auth.csrf_token(session_binding(mine)))
    assert not auth.csrf_ok(session_binding(mine), auth.csrf_token(cookie))
    assert not auth.csrf_ok(session_binding(mine), None)
    assert not auth.csrf_ok(None, auth.csrf_token(cookie))
