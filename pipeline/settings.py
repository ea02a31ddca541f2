"""Every setting of the pipeline, read from the environment (and a `.env` file) once, at start-up.

Nothing here runs at import time: commands call `load_settings()` and pass the result down.
Secrets are `SecretStr`, so a settings object printed or logged shows `**********`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    Field,
    InstanceOf,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pipeline.errors import ConfigError
from pipeline.warehouses import scheme_list, warehouse_for
from pipeline.windowspec import DEFAULT_WINDOWS, SendingWindows, parse_sending_windows

__all__ = ["DEFAULT_ARDARY_BASE_URL", "Settings", "load_settings"]

DEFAULT_ARDARY_BASE_URL = "https://www.ardary-sms.com/api"


class Settings(BaseSettings):
    """The pipeline's configuration; field names are the environment variables, lower-cased."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    kafka_bootstrap_servers: str | None = None
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_file: Path | None = None
    kafka_ssl_cert_file: Path | None = None
    kafka_ssl_key_file: Path | None = None
    schema_registry_url: str | None = None
    schema_registry_username: str | None = None
    schema_registry_password: SecretStr | None = None
    schema_registry_ca_file: Path | None = None
    pipeline_replication_factor: int | None = Field(default=None, ge=1, le=32)
    ingress_spool_dir: Path | None = Path("data/ingress-spool")
    ingress_spool_max_bytes: int = Field(default=1 << 30, ge=1 << 16)
    ingress_publish_timeout_seconds: float = Field(default=2.0, gt=0, le=60)
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
    # Issue 17. JSON values are parsed by the validators below (NoDecode), so a bad one is a
    # ValidationError naming its entry, not a settings-source error.
    sending_windows: Annotated[InstanceOf[SendingWindows], NoDecode] = DEFAULT_WINDOWS
    outbound_rate_per_login: Annotated[dict[str, float], NoDecode] = Field(default_factory=dict)
    outbound_pacing_seconds: float = Field(default=0.25, ge=0, le=5)
    delivery_receipt_timeout_seconds: int = Field(default=48 * 3600, ge=1)
    sink_web_port: int = Field(default=8082, ge=1, le=65535)  # the sink's /healthz, /metrics

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

    @field_validator("sending_windows", mode="before")
    @classmethod
    def _windows(cls, value: Any) -> Any:
        if isinstance(value, dict):  # given as an object (tests, overrides) rather than JSON text
            value = json.dumps(value)
        return parse_sending_windows(value) if isinstance(value, str) else value

    @field_serializer("sending_windows")
    def _windows_shape(self, value: SendingWindows) -> dict[str, dict[str, str]]:
        return value.describe()  # the SENDING_WINDOWS shape, not the internal one

    @field_validator("outbound_rate_per_login", mode="before")
    @classmethod
    def _login_rates(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        try:
            parsed = json.loads(value) if value.strip() else {}
        except ValueError:
            raise ValueError("must be a JSON object mapping login to messages/s") from None
        if not isinstance(parsed, dict):
            raise ValueError("must be a JSON object mapping login to messages/s")
        for login, rate in parsed.items():
            if not login.strip():
                raise ValueError('entry "": a login cannot be empty')
            if (
                isinstance(rate, bool)
                or not isinstance(rate, int | float)
                or not (0 < rate < math.inf)
            ):
                raise ValueError(
                    f"entry {json.dumps(login)}: must be a number of messages/s above 0, "
                    f"not {json.dumps(rate)}"
                )
        return parsed

    @field_validator("warehouse_url")
    @classmethod
    def _warehouse_scheme(cls, value: str) -> str:
        if warehouse_for(value) is None:
            raise ValueError(f"must start with {scheme_list()}")
        return value

    @field_validator("ingress_spool_dir", mode="before")
    @classmethod
    def _empty_disables(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator(
        "kafka_ssl_ca_file",
        "kafka_ssl_cert_file",
        "kafka_ssl_key_file",
        "schema_registry_ca_file",
    )
    @classmethod
    def _readable_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        protocol = self.kafka_security_protocol
        if protocol.startswith("SASL_"):
            for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password"):
                if getattr(self, name) is None:
                    raise ValueError(f"{name.upper()} is required with {protocol}")
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together")
        if (self.schema_registry_username is None) != (self.schema_registry_password is None):
            raise ValueError("SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD go together")
        return self

    @model_validator(mode="after")
    def _pii_key(self) -> Settings:
        if self.warehouse_pii == "hash" and self.warehouse_pii_key is None:
            raise ValueError("WAREHOUSE_PII=hash needs WAREHOUSE_PII_KEY")
        return self

    @model_validator(mode="after")
    def _receipt_timeout(self) -> Settings:
        if self.delivery_receipt_timeout_seconds >= self.lifecycle_ttl_seconds:
            raise ValueError(
                "DELIVERY_RECEIPT_TIMEOUT_SECONDS must be shorter than LIFECYCLE_TTL_SECONDS "
                "(a lifecycle is forgotten after that, so it could never become overdue)"
            )
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
        loc = first.get("loc")
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        if not loc:  # a rule across settings: its message names the variables itself
            raise ConfigError(message) from None
        raise ConfigError(f"{str(loc[0]).upper()}: {message}") from None
