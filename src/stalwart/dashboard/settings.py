"""The ``[dashboard]`` table of ``stalwart.toml``.

Read with ``settings.section("dashboard", DashboardSettings)``. Users carry
password hashes (``stalwart dashboard hash-password``), never plain text.
"""

from __future__ import annotations

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from stalwart.dashboard.guard import host_name

__all__ = ["DEFAULT_BIND", "DashboardSettings"]

DEFAULT_BIND = "127.0.0.1:8321"
MIN_SECRET = 32
# Placeholders seen in examples: refused whatever their length.
_PLACEHOLDERS = ("change me", "changeme", "change-me", "example", "placeholder")


class DashboardSettings(BaseModel):
    """How the dashboard binds, who may log in, and how hard it may be hit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bind: str = DEFAULT_BIND
    users: dict[str, str] = Field(default_factory=dict, repr=False)
    secret: str | None = Field(default=None, repr=False)
    allowed_hosts: list[str] = Field(default_factory=list)
    login_for_reads: bool | None = None
    session_ttl: float = Field(default=8 * 3600.0, gt=0)
    rate_limit: float = Field(default=50.0, gt=0)
    rate_burst: int = Field(default=200, ge=1)
    login_rate_limit: float = Field(default=0.2, gt=0)
    login_burst: int = Field(default=5, ge=1)
    live_queue: int = Field(default=256, ge=1)
    live_per_client: int = Field(default=16, ge=1)
    live_batch_interval: float = Field(default=0.1, gt=0)
    traffic_window: float = Field(default=900.0, gt=0)
    traffic_bucket: float = Field(default=30.0, gt=0)
    cache_ttl: float = Field(default=1.0, ge=0)
    bus_retry_initial: float = Field(default=0.5, gt=0)
    bus_retry_max: float = Field(default=15.0, gt=0)

    @field_validator("users")
    @classmethod
    def _hashed(cls, users: dict[str, str]) -> dict[str, str]:
        for name, value in users.items():
            if not value.startswith(("scrypt$", "pbkdf2_sha256$")):
                raise ValueError(
                    f"user {name!r} has no password hash: store the output of "
                    "`stalwart dashboard hash-password`, never the plain password"
                )
        return users

    @field_validator("allowed_hosts")
    @classmethod
    def _names(cls, hosts: list[str]) -> list[str]:
        """Names as the Host check compares them: ``dash.example.org:8321`` and
        ``[::1]:8321`` become ``dash.example.org`` and ``::1`` (any port matches)."""
        for entry in hosts:
            if not host_name(entry) or "/" in entry:
                raise ValueError(
                    f"allowed_hosts entry {entry!r} is not a host name: write the name alone "
                    'or with its port, e.g. "dash.example.org" (no scheme, no path)'
                )
        return [host_name(entry) for entry in hosts]

    @field_validator("secret")
    @classmethod
    def _strong(cls, secret: str | None) -> str | None:
        if secret is None:
            return None
        lowered = secret.lower()
        if (
            len(secret) < MIN_SECRET
            or len(set(secret)) < 8
            or any(word in lowered for word in _PLACEHOLDERS)
        ):
            raise ValueError(
                f"secret is too weak (at least {MIN_SECRET} random characters, no placeholder): "
                "set [dashboard] secret to the output of `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`, or remove it"
            )
        return secret

    @model_validator(mode="after")
    def _retry_bounds(self) -> Self:
        if self.bus_retry_max < self.bus_retry_initial:
            raise ValueError(
                f"bus_retry_max ({self.bus_retry_max}) is below bus_retry_initial "
                f"({self.bus_retry_initial}): raise bus_retry_max"
            )
        return self
