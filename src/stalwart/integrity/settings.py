"""The ``[integrity]`` table of stalwart.toml.

Example::

    [integrity]
    block_size = "4MiB"
    data_blocks = 10
    parity_blocks = 2
    algorithm = "blake3"
    extra_algorithms = ["md5"]
    scrub_rate = "200MB"

    [integrity.sites.eu]
    root = "/archive/eu"
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from stalwart.config import Settings, parse_size
from stalwart.errors import ConfigError
from stalwart.integrity.ingest import IngestOptions
from stalwart.integrity.transfer import TransferOptions

__all__ = ["IntegritySettings", "SiteSettings", "integrity_settings"]

_Options = TypeVar("_Options", bound=BaseModel)


class SiteSettings(BaseModel):
    """One site's archive root (scrub looks for dark files under it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    root: Path


class IntegritySettings(IngestOptions):
    """Defaults for ingest (the inherited keys), transfer and scrub; command-line
    options override them."""

    retries: int = Field(default=3, ge=0, le=20)
    backoff_initial: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=30.0, ge=0)
    verify_from_disk: bool = True
    scrub_rate: int | None = None
    sites: dict[str, SiteSettings] = {}

    @field_validator("scrub_rate", mode="before")
    @classmethod
    def _rate(cls, value: object) -> object:
        return parse_size(value) if isinstance(value, str) else value

    def ingest_options(self, **overrides: object) -> IngestOptions:
        base = self.model_dump(include=set(IngestOptions.model_fields))
        base.update({k: v for k, v in overrides.items() if v is not None})
        return _validated(IngestOptions, base)

    def transfer_options(self, **overrides: object) -> TransferOptions:
        base: dict[str, object] = {
            "retries": self.retries,
            "backoff_initial": self.backoff_initial,
            "backoff_max": self.backoff_max,
            "verify_from_disk": self.verify_from_disk,
            "ingest": self.ingest_options(),
        }
        base.update({k: v for k, v in overrides.items() if v is not None})
        return _validated(TransferOptions, base)

    def root_of(self, site: str) -> Path | None:
        entry = self.sites.get(site)
        return entry.root if entry is not None else None


def _validated(model: type[_Options], values: dict[str, object]) -> _Options:
    """``values`` as ``model``; a bad value (of the settings or an option) is one
    ConfigError line naming the option and its limit."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])).replace('_', '-')}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"invalid integrity option {problems}; see `--help`") from None


def integrity_settings(settings: Settings) -> IntegritySettings:
    """The ``[integrity]`` table of ``settings`` (defaults when absent)."""
    return settings.section("integrity", IntegritySettings)
