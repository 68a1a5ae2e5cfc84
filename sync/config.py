"""One settings model for every command: read from a TOML file, then the environment.

`REDCAP_API_URL` and `REDCAP_API_TOKEN` override the file. The token is a `SecretStr` so that it
never appears in a log line, a ledger row or an exception message by accident.
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sync.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("ecrf.toml")


class Settings(BaseSettings):
    """What the sync, deploy and export commands need to know about one REDCap project."""

    model_config = SettingsConfigDict(env_prefix="", extra="forbid", populate_by_name=True)

    redcap_api_url: str = Field(default="http://127.0.0.1:8080/api/",
                                validation_alias="REDCAP_API_URL")
    redcap_api_token: SecretStr = Field(default=SecretStr(""), validation_alias="REDCAP_API_TOKEN")
    dictionary_path: Path = Path("data_dictionary.csv")
    redcap_dir: Path = Path("redcap")
    state_path: Path | None = None  # None: one file per project in the user's state directory
    batch_size: int = Field(default=500, ge=1)
    full_reconcile_days: int = Field(default=7, ge=0)
    """A full pull at least this often (REDCap log days), whatever the log says."""
    timeout_seconds: float = Field(default=60.0, gt=0)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    retry_budget_seconds: float = Field(default=300.0, ge=0)
    insecure: bool = False
    allow_url_credentials: bool = False
    api_user: str = ""
    """The REDCap user the token belongs to, named in a cut's manifest (the API cannot tell)."""
    deidentify_salt: SecretStr = Field(default=SecretStr(""), validation_alias="ECRF_DEIDENTIFY_SALT")
    i3_respiratory_reading: Literal["any", "all"] = "any"
    rule_hold_share: float = Field(default=0.5, gt=0, le=1)
    rule_hold_min_records: int = Field(default=10, ge=1)
    steroid_limit_mg_per_day: float = Field(default=80.0, gt=0)
    log_format: Literal["text", "json"] = "text"

    @field_validator("redcap_api_url")
    @classmethod
    def _url_ends_with_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"


def load_settings(path: Path | None = None, **overrides: object) -> Settings:
    """Read settings from `path` (or `ecrf.toml` if present), the environment, then overrides."""
    file_values: dict[str, object] = {}
    source = path or (DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.exists() else None)
    if source is not None:
        try:
            file_values = tomllib.loads(Path(source).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{source}: configuration file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    values = {**file_values, **{k: v for k, v in overrides.items() if v is not None}}
    try:
        return Settings(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{source or 'settings'}: {problems}") from None
