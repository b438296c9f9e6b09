"""Password hashes, signed sessions and CSRF tokens."""

from __future__ import annotations

import base64
import hashlib

import pytest

from stalwart.dashboard.auth import Authenticator, hash_password, verify_password
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


def test_a_session_cookie_round_trips_until_it_expires(auth: Authenticator) -> None:
    # Given a cookie issued at t=1000
    cookie = auth.issue("ops", now=1000.0)
    # Then it is valid before its expiry and not after
    session = auth.session(cookie, now=1030.0)
    assert session is not None and session.user == "ops"
    assert auth.session(cookie, now=1061.0) is None


def test_forged_or_foreign_cookies_are_refused(auth: Authenticator) -> None:
    cookie = auth.issue("ops", now=1000.0)
    _, _, sig = cookie.partition(".")
    forged = base64.urlsafe_b64encode(b'{"u":"ops","e":99999999999}').rstrip(b"=").decode()
    assert auth.session(f"{forged}.{sig}", now=1000.0) is None
    other = Authenticator({"ops": "scrypt$x"}, "another secret", ttl=60.0)
    assert other.session(cookie, now=1000.0) is None
    assert auth.session("garbage", now=1000.0) is None
    assert auth.session(None) is None


def test_a_removed_user_loses_the_session() -> None:
    cookie = Authenticator({"ops": "scrypt$x"}, "k", 60.0).issue("ops", now=0.0)
    assert Authenticator({}, "k", 60.0).session(cookie, now=1.0) is None


def test_csrf_tokens_bind_to_the_browser_cookie(auth: Authenticator) -> None:
    # Given two browsers' CSRF cookies
    mine, theirs = auth.new_csrf_cookie(), auth.new_csrf_cookie()
    # Then my token passes with my cookie only
    assert auth.csrf_ok(mine, auth.csrf_token(mine))
    assert not auth.csrf_ok(theirs, auth.csrf_token(mine))
    assert not auth.csrf_ok(mine, None)
    assert not auth.csrf_ok(None, auth.csrf_token(mine))
