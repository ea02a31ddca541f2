"""Every setting of the pipeline, read from the environment (and a `.env` file) once, at start-up.

Nothing here runs at import time: commands call `load_settings()` and pass the result down.
Secrets are `SecretStr`, so a settings object printed or logged shows `**********`.
"""

from __future__ import annotations

import json
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipeline.errors import ConfigError
from pipeline.warehouses import scheme_list, warehouse_for

__all__ = ["DEFAULT_ARDARY_BASE_URL", "Settings", "load_settings"]

DEFAULT_ARDARY_BASE_URL = "https://www.ardary-sms.com/api"


class Settings(BaseSettings):
    """The pipeline's configuration; field names are the environment variables, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    kafka_bootstrap_servers: str | None = None
    schema_registry_url: str | None = None
    pipeline_topic_prefix: str = "ardary."
    pipeline_callback_token: SecretStr | None = None
    pipeline_partitions: int = Field(default=6, ge=1, le=1000)
    ardary_base_url: str = DEFAULT_ARDARY_BASE_URL
    ardary_login: str | None = None
    ardary_access_key: SecretStr | None = None
    ardary_access_keys: SecretStr | None = None
    ardary_mode: Literal["test", "prod"] = "test"
    ardary_timezone: str = "Europe/Paris"
    outbound_rate_per_second: float = Field(default=10.0, gt=0)
    outbound_max_batch: int = Field(default=100, ge=1, le=10_000)
    warehouse_url: str = "duckdb:///./data/warehouse.duckdb"
    warehouse_pii: Literal["raw", "hash"] = "raw"
    warehouse_pii_key: SecretStr | None = None
    metrics_grace_seconds: int = Field(default=600, ge=0)
    lifecycle_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    # A request id is sent at most once while its state is kept: never shorter than the 7 days
    # sms.send-requests retains a request (a replay must still find its state).
    outbound_state_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=7 * 24 * 3600)
    outbound_http_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    outbound_max_attempts: int = Field(default=4, ge=1, le=20)
    outbound_max_concurrent: int = Field(default=16, ge=1, le=256)
    outbound_breaker_cooldown_seconds: float = Field(default=60.0, gt=0)

    @field_validator("ardary_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @field_validator("ardary_access_keys")
    @classmethod
    def _json_map(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        try:
            parsed = json.loads(value.get_secret_value())
        except ValueError:
            raise ValueError("must be a JSON object mapping login to access key") from None
        if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
        ):
            raise ValueError("must be a JSON object mapping login to access key")
        return value

    @field_validator("warehouse_url")
    @classmethod
    def _warehouse_scheme(cls, value: str) -> str:
        if warehouse_for(value) is None:
            raise ValueError(f"must start with {scheme_list()}")
        return value

    @model_validator(mode="after")
    def _pii_key(self) -> Settings:
        if self.warehouse_pii == "hash" and self.warehouse_pii_key is None:
            raise ValueError("WAREHOUSE_PII=hash needs WAREHOUSE_PII_KEY")
        return self

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.ardary_timezone)

    def access_key_for(self, login: str) -> str | None:
        """The access key of `login`: from ARDARY_ACCESS_KEYS, else ARDARY_ACCESS_KEY."""
        if self.ardary_access_keys is not None:
            keys: dict[str, str] = json.loads(self.ardary_access_keys.get_secret_value())
            if login in keys:
                return keys[login]
        if self.ardary_access_key is not None and (
            self.ardary_login is None or self.ardary_login == login
        ):
            return self.ardary_access_key.get_secret_value()
        return None

    def masked(self) -> dict[str, Any]:
        """The settings as a dict safe to log: secrets are masked, never revealed."""
        return {
            name: ("**********" if isinstance(value, SecretStr) else value)
            for name, value in self.model_dump().items()
        }


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; a bad value raises ConfigError naming the environment variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first.get("loc") or ("settings",)
        name = str(loc[0]).upper()
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        raise ConfigError(f"{name}: {message}") from None
