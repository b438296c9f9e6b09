"""Passwords out of everything printed or logged: one rule for every URL.

A URL's password (``scheme://user:password@host``) becomes ``***`` wherever it
appears: a single URL, a comma-separated list of broker URLs, or an error
message quoting one. A regular expression rather than a URL parser, because
the text is often not one URL (``amqp://a:b@h1,amqp://c:d@h2`` or a driver's
message) and a parser would have to give up on it.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["redact_url"]

_CREDENTIALS: Final = re.compile(
    r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):(?P<password>[^@\s/]*)@"
)


def redact_url(text: str) -> str:
    """``text`` with the password of every URL in it replaced by ``***``."""
    return _CREDENTIALS.sub(r"\g<head>:***@", text)
