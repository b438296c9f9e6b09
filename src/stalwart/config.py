"""Typed settings from ``stalwart.toml`` and ``STALWART_*`` environment variables.

Core settings live here. Each part (watchdog, ha, integrity, dashboard, ...)
declares its own pydantic model and reads its table of the file through
:meth:`Settings.section`, so this module never imports the parts.

Precedence, highest first: explicit overrides, ``STALWART_*`` environment
variables, the TOML file, defaults. Nothing is read at import time.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from stalwart.errors import ConfigError
from stalwart.redact import redact_url

__all__ = [
    "DEFAULT_HOME",
    "DURATION",
    "DURATION_UNITS",
    "BusSettings",
    "Duration",
    "SecuritySettings",
    "ServiceEntry",
    "Settings",
    "SizeError",
    "StoreSettings",
    "StoreUrl",
    "describe_home",
    "load_settings",
    "parse_seconds",
    "parse_size",
]

DEFAULT_HOME = Path(".stalwart")

_Section = TypeVar("_Section", bound=BaseModel)
_SIZE_UNITS: Final = {"": 1, "b": 1} | {
    prefix + suffix: (1024 if suffix == "ib" else 1000) ** power
    for power, prefix in enumerate("kmgt", start=1)
    for suffix in ("", "b", "ib")
}


class SizeError(ConfigError, ValueError):
    """A size setting is not a positive number of bytes.

    Also a ValueError, so that a pydantic validator using :func:`parse_size`
    reports it as a validation error of that field.
    """


def parse_size(text: str | int) -> int:
    """``"4MiB"``, ``"200MB"``, ``"200MB/s"``, ``"65536"`` or an int -> bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        value: float = text
    else:
        raw = str(text).strip().lower().removesuffix("/s")
        number = raw.rstrip("abcdefghijklmnopqrstuvwxyz ")
        try:
            value = float(number) * _SIZE_UNITS[raw[len(number) :].strip()]
        except (ValueError, KeyError):
            raise SizeError(
                f"cannot read size {text!r}: write bytes or e.g. 4MiB, 512MiB, 2GB"
            ) from None
    if not value > 0:
        raise SizeError(f"size {text!r} must be positive")
    if not math.isfinite(value) or value >= 2**63:
        raise SizeError(f"size {text!r} is too large: write bytes or e.g. 4MiB, 512MiB, 2GB")
    return int(value)


DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION: Final = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_seconds(value: object) -> object:
    """``"90s"``, ``"10m"``, ``"24h"``, ``"3d"``, ``"1w"`` -> seconds; numbers pass as they are.

    For pydantic fields of durations (:data:`Duration`): anything else is
    left for the field's own validation to reject.
    """
    if isinstance(value, str) and (match := DURATION.match(value)):
        return float(match.group(1)) * DURATION_UNITS[match.group(2)]
    return value


Duration = Annotated[float, BeforeValidator(parse_seconds), Field(ge=0)]
"""Seconds in settings, written as a number or with a unit (``"24h"``)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _url_problem(url: str, schemes: frozenset[str]) -> str | None:
    """Why ``url`` cannot be used, or None: checked here so that no client library
    fails later with a traceback of its own parser."""
    scheme, sep, _ = url.partition("://")
    scheme = scheme.split("+", 1)[0].lower()
    if not sep or scheme not in schemes:
        return f"is not a URL of {', '.join(sorted(schemes))}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (reading it checks it)
    except ValueError as exc:
        return f"cannot be read ({exc})"
    if scheme.startswith("amqp") and not parts.hostname:
        return "names no host"
    if scheme == "sqlite" and parts.path.strip("/") in ("", ":memory:"):
        return "names no file (an in-memory database is not shared between processes)"
    return None


def _url_of(schemes: frozenset[str], example: str) -> Any:
    """A validator: every comma-separated URL is a usable URL of one of ``schemes``."""

    def check(url: str) -> str:
        for one in url.split(","):
            problem = _url_problem(one.strip(), schemes)
            if problem is not None:
                raise ValueError(f"{redact_url(one.strip())!r} {problem}; write e.g. {example}")
        return url

    return AfterValidator(check)


_BusUrl = Annotated[
    str,
    _url_of(
        frozenset({"sqlite", "amqp", "amqps", "nats"}),
        "sqlite:///.stalwart/bus.db or amqp://host:5672/",
    ),
]
StoreUrl = Annotated[
    str,
    _url_of(
        frozenset({"sqlite", "postgresql"}), "sqlite:///.stalwart/store.db or postgresql://host/db"
    ),
]
"""A store URL (sqlite:///file or postgresql://...), checked when the settings are read."""

_LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
    BeforeValidator(lambda value: value.upper() if isinstance(value, str) else value),
]
_HS256_MIN_SECRET = 32  # bytes: RFC 7518 3.2, a key at least as long as the hash


class BusSettings(_Strict):
    """Where the bus is and how messages are bounded."""

    url: _BusUrl = f"sqlite:///{DEFAULT_HOME}/bus.db"
    max_message_size: int = Field(default=1024 * 1024, gt=0)
    exchange: str = "stalwart"
    queue_type: Literal["quorum", "classic"] = "quorum"
    durability: Literal["full", "normal"] = "full"
    outbox: str = f"{DEFAULT_HOME}/outbox.db"
    max_attempts: int = Field(default=5, ge=1)
    retry_initial: float = Field(default=0.5, gt=0)
    retry_max: float = Field(default=60.0, gt=0)
    lease: float = Field(default=30.0, gt=0)


class StoreSettings(_Strict):
    """The relational message store.

    ``forget_after``: seconds (or ``"24h"``) after which an instance that
    stopped sending heartbeats, or a supervised program that stopped, is no
    longer listed (``stalwart status``, ``watchdog status``, the dashboard);
    ``stalwart store prune`` deletes them.
    """

    url: StoreUrl = f"sqlite:///{DEFAULT_HOME}/store.db"
    # How long idempotent services remember a processed message id: longer
    # than any redelivery can take (seconds; 7 days).
    claims_retention: float = Field(default=7 * 86400.0, gt=0)
    forget_after: Duration = Field(default=24 * 3600.0, gt=0)


class SecuritySettings(_Strict):
    """Signed tokens on the bus (JWT)."""

    algorithm: Literal["HS256", "RS256"] = "HS256"
    secret: str | None = Field(default=None, repr=False)
    private_key_file: Path | None = None
    public_key_file: Path | None = None
    issuer: str = "stalwart"

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, secret: str | None, info: ValidationInfo) -> str | None:
        hs256 = info.data.get("algorithm") == "HS256"
        if hs256 and secret is not None and len(secret.encode()) < _HS256_MIN_SECRET:
            raise ValueError(
                f"the secret is {len(secret.encode())} bytes; HS256 needs at least "
                f"{_HS256_MIN_SECRET}: generate one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return secret


class ServiceEntry(_Strict):
    """A service that ``stalwart up`` starts: ``module:attribute`` of a Service."""

    target: str
    instances: int = Field(default=1, ge=1)


class Settings(_Strict):
    """The whole configuration. Unknown top-level tables are kept for the parts."""

    model_config = ConfigDict(extra="allow", frozen=True)

    site: str = "local"
    home: Path = DEFAULT_HOME
    log_level: _LogLevel = "INFO"
    log_format: Literal["text", "json"] = "text"
    bus: BusSettings = BusSettings()
    store: StoreSettings = StoreSettings()
    security: SecuritySettings = SecuritySettings()
    services: list[ServiceEntry] = []

    def section(self, name: str, model: type[_Section]) -> _Section:
        """Parse the ``[name]`` table with the part's own model (defaults if absent)."""
        raw = (self.model_extra or {}).get(name, {})
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(f"invalid [{name}] settings: {_one_line(exc)}") from None


_ENV_MAP: dict[str, tuple[str, ...]] = {
    "STALWART_SITE": ("site",),
    "STALWART_HOME": ("home",),
    "STALWART_LOG_LEVEL": ("log_level",),
    "STALWART_BUS_URL": ("bus", "url"),
    "STALWART_STORE_URL": ("store", "url"),
    "STALWART_MAX_MESSAGE_SIZE": ("bus", "max_message_size"),
    "STALWART_JWT_SECRET": ("security", "secret"),
}


def _one_line(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
    )


def _set(tree: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def load_settings(
    path: str | Path | None = None,
    *,
    env: dict[str, str] | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Read settings; ``path`` defaults to ``$STALWART_CONFIG`` then ``./stalwart.toml``.

    A missing default file is fine (embedded defaults); a missing named file is
    an error.
    """
    environ = os.environ if env is None else env
    named = path or environ.get("STALWART_CONFIG")
    file = Path(named) if named else Path("stalwart.toml")
    data: dict[str, Any] = {}
    if file.exists():
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file} is not valid TOML: {exc}; fix the file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config file {file}: {exc}; pass a TOML file") from None
    elif named:
        raise ConfigError(f"config file {file} not found; pass an existing --config path")
    home = environ.get("STALWART_HOME") or data.get("home")
    if home:
        _rebase_defaults(data, Path(home))
    for var, keys in _ENV_MAP.items():
        if var in environ:
            _set(data, keys, environ[var])
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set(data, tuple(dotted.split(".")), value)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            f"invalid settings in {_sources(exc, file, environ)}: {_one_line(exc)}"
        ) from None


def _sources(exc: ValidationError, file: Path, environ: Mapping[str, str]) -> str:
    """Where the refused values came from: the file, and the variables that override it."""
    locs = [tuple(str(p) for p in err["loc"]) for err in exc.errors()]
    variables = [
        var
        for var, keys in _ENV_MAP.items()
        if var in environ and any(loc[: len(keys)] == keys for loc in locs)
    ]
    return f"{file} with {', '.join(variables)}" if variables else str(file)


def describe_home(settings: Settings) -> str:
    """Where the home is, and how it was chosen, for messages about files under it:
    the default home is relative to the working directory, a frequent surprise."""
    where = f"stalwart home {Path(settings.home).absolute()}"
    if Path(settings.home) == DEFAULT_HOME:
        where += (
            " (the default: .stalwart in the working directory; run where your "
            "stalwart.toml is, or pass --config or STALWART_HOME)"
        )
    return where


def _rebase_defaults(data: dict[str, Any], home: Path) -> None:
    """Put the embedded files under ``home`` unless their URLs are set explicitly."""
    data["home"] = str(home)
    bus = data.setdefault("bus", {})
    bus.setdefault("url", f"sqlite:///{home}/bus.db")
    bus.setdefault("outbox", f"{home}/outbox.db")
    data.setdefault("store", {}).setdefault("url", f"sqlite:///{home}/store.db")
