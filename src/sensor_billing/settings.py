"""Typed settings, read from the environment and an optional `.env` file.

Every variable of the contract (docs: DESIGN.md "Contract") is here. `load_settings()` turns a
pydantic validation error into a `ConfigurationError` whose message names the environment
variable, so a malformed value stops start-up with a line a person can act on.

Precedence: the environment, then `.env`, then the fallback values a caller installed with
`use_fallback()` (the CLI: what a running `sensor-billing dev` serves), then the defaults.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sensor_billing.errors import ConfigurationError

# Used when DATABASE_URL / REDIS_URL are unset: the services this project's machines start on
# loopback (docs: DESIGN.md "Services on this machine type").
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
# Where `stripe trigger` sends events unless --url says otherwise: `serve`'s and `dev`'s default.
DEFAULT_API_URL = "http://127.0.0.1:8000"
ENV_FILE = Path(".env")

SECONDS_PER_DAY = 86_400
# OPS_TOKEN and OPS_SESSION_SECRET: at least this many characters (e.g. `openssl rand -hex 32`).
OPS_SECRET_MIN_LENGTH = 16
# METER_WORKER_CONCURRENCY and `worker --concurrency`: each job in flight holds a PostgreSQL
# connection, so the bound keeps one worker well under a server's max_connections.
MAX_WORKER_CONCURRENCY = 500


def to_asyncpg_url(url: str) -> str:
    """Return the SQLAlchemy URL for the asyncpg driver of a `postgres(ql)://` URL."""
    scheme, rest = url.split("://", 1)
    return f"postgresql+asyncpg://{rest}" if scheme.startswith("postgres") else url


def _check_port(url: str) -> None:
    """Raise ValueError when the URL's port is not a number in 1-65535 (the message never
    repeats the URL: it may carry a password)."""
    try:
        port = urlsplit(url).port
    except ValueError:  # not a number, or outside 0-65535
        port = 0
    if port == 0:
        raise ValueError("the port must be a number from 1 to 65535")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    database_url: str = Field(default=DEFAULT_DATABASE_URL)
    redis_url: str = Field(default=DEFAULT_REDIS_URL)
    stripe_api_key: SecretStr | None = None
    # Comma-separated: during a secret roll Stripe signs with every active secret (docs: webhooks).
    stripe_webhook_secret: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    stripe_api_base: str = "https://api.stripe.com"
    stripe_meter_events_base: str = "https://meter-events.stripe.com"
    # The running API, for the commands that talk to it (`stripe trigger`).
    api_url: str = DEFAULT_API_URL
    # Meter ids as `sensor-billing stripe setup` prints them. Optional: meter events go by event
    # name; when set, `reconcile` reads these meters (checking their event name) instead of
    # finding the active meter of each name.
    stripe_meter_active_sensors: str | None = None
    stripe_meter_temperature_readings: str | None = None
    # How long `GET /v1/organizations/{id}/usage` waits for Stripe's invoice preview before it
    # answers with the ledger's figures alone (the preview marked unavailable): the product's
    # page waits on this answer.
    stripe_preview_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    meter_window_seconds: int = 3600
    # A window closes this long after it ends, so readings still in flight are counted.
    meter_grace_seconds: int = Field(default=120, ge=0, le=3600)
    # First run: close windows from here instead of from the earliest reading within Stripe's
    # 35-day limit; older windows are recorded as skipped, not sent.
    meter_backfill_start: datetime | None = None
    # Account-wide meter event calls per second, shared by all workers. Stripe allows 1,000/s
    # in live mode (docs: rate-limits); test mode allows far fewer.
    meter_rate_limit_per_second: float = 100.0
    meter_close_interval_seconds: int = Field(default=300, ge=10, le=86_400)
    meter_worker_concurrency: int = Field(default=20, ge=1, le=MAX_WORKER_CONCURRENCY)
    # bullmq job lock: a worker that dies mid-job leaves its jobs locked this long before
    # another worker takes them over (bullmq lockDuration and stalledInterval).
    meter_job_lock_seconds: int = Field(default=30, ge=1, le=600)
    # A pending backlog larger than this goes through the v2 meter event stream.
    meter_stream_threshold: int = Field(default=1000, ge=1)
    # Connections each API or worker process keeps open; mind PostgreSQL's max_connections
    # (100 by default) times the number of processes.
    database_pool_size: int = Field(default=20, ge=1, le=500)
    # How long an API request waits for a free connection before it fails (500, so Stripe
    # delivers again): a bound on a pool that is busy, not on one that lost its connections
    # (those waiting reconnect at once: db/pool.py).
    database_pool_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    # An organization whose subscription is past_due stays entitled this many days from its
    # first failed payment (billing/entitlement.py), while Stripe retries the payment.
    past_due_grace_days: float = Field(default=7.0, ge=0, le=90)
    log_level: str = "INFO"
    # `json`: one JSON object per line (time, level, logger, message, extra fields).
    log_format: Literal["text", "json"] = "text"
    # The worker serves its Prometheus metrics on this port; 0 serves none.
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    # The operations pages (/ops): unset, they are not served at all (404). The token is what a
    # person signs in with (or a script sends as `Authorization: Bearer`); long enough that
    # guessing it over HTTP is hopeless.
    ops_token: SecretStr | None = None
    # Signs the /ops session cookie. Unset: derived from OPS_TOKEN, so every API replica agrees
    # and changing the token signs everyone out. Set it to end sessions without a new token.
    ops_session_secret: SecretStr | None = None

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"postgres", "postgresql", "postgresql+asyncpg"}:
            raise ValueError(
                "expected postgresql://user@host:port/database (or postgres://), "
                f"got scheme {parts.scheme or 'none'!r}"
            )
        if not parts.path.strip("/") and not parts.query:
            raise ValueError("the URL names no database (…/DBNAME)")
        _check_port(value)
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"redis", "rediss", "unix"}:
            raise ValueError(
                f"expected redis://host:port/db, got scheme {parts.scheme or 'none'!r}"
            )
        _check_port(value)
        # redis-py drops a database part that is not a number (db 0, another tenant's data)
        # and reads `/1/2` as db 12; only `/N` or nothing is what the operator meant.
        database = parts.path.removeprefix("/")
        if parts.scheme != "unix" and database and not database.isdecimal():
            raise ValueError("the database number after host:port/ must be a whole number")
        return value

    @field_validator("stripe_webhook_secret", mode="before")
    @classmethod
    def _split_secrets(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("stripe_webhook_secret")
    @classmethod
    def _webhook_secrets(cls, value: list[SecretStr]) -> list[SecretStr]:
        for secret in value:
            if not secret.get_secret_value().startswith("whsec_"):
                raise ValueError("each secret must start with whsec_ (Stripe endpoint secret)")
        return value

    @field_validator("stripe_api_base", "stripe_meter_events_base", "api_url")
    @classmethod
    def _http_base(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"expected an http(s) base URL, got {value!r}")
        return value.rstrip("/")

    @field_validator("meter_window_seconds")
    @classmethod
    def _window(cls, value: int) -> int:
        # Windows are UTC-aligned; a length that does not divide a day would drift across days.
        if value <= 0 or SECONDS_PER_DAY % value != 0:
            raise ValueError("must be a positive number of seconds that divides a day (86400)")
        return value

    @field_validator("meter_rate_limit_per_second")
    @classmethod
    def _rate_limit(cls, value: float) -> float:
        if not 0 < value <= 1000:
            raise ValueError("must be above 0 and at most 1000 (Stripe's live-mode limit)")
        return value

    @field_validator("meter_backfill_start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_validator("ops_token", "ops_session_secret", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("ops_token", "ops_session_secret")
    @classmethod
    def _ops_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < OPS_SECRET_MIN_LENGTH:
            raise ValueError(
                f"must be at least {OPS_SECRET_MIN_LENGTH} characters (e.g. openssl rand -hex 32)"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def async_database_url(self) -> str:
        return to_asyncpg_url(self.database_url)

    @property
    def ops_session_key(self) -> bytes | None:
        """The key that signs /ops session cookies; None when /ops is off."""
        if self.ops_token is None:
            return None
        if self.ops_session_secret is not None:
            return self.ops_session_secret.get_secret_value().encode()
        token = self.ops_token.get_secret_value().encode()
        return hmac.new(token, b"sensor-billing ops session key v1", hashlib.sha256).digest()

    @property
    def past_due_grace(self) -> timedelta:
        return timedelta(days=self.past_due_grace_days)

    @property
    def webhook_secrets(self) -> list[str]:
        return [secret.get_secret_value() for secret in self.stripe_webhook_secret]

    @property
    def configured_meter_ids(self) -> dict[str, str]:
        """Meter ids set in the settings, by event name."""
        ids = {
            "active_sensors": self.stripe_meter_active_sensors,
            "temperature_readings": self.stripe_meter_temperature_readings,
        }
        return {name: meter_id for name, meter_id in ids.items() if meter_id}


def describe_validation_error(error: ValidationError) -> str:
    """One line per bad variable, named as the environment spells it; never the value."""
    lines = []
    for item in error.errors():
        name = str(item["loc"][0]).upper() if item["loc"] else "settings"
        message = str(item["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}: {message}")
    return "; ".join(lines)


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, or raise `ConfigurationError` naming each malformed variable."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        raise ConfigurationError(
            f"invalid configuration: {describe_validation_error(error)}"
        ) from None


def configured_variables(env_file: Path = ENV_FILE) -> set[str]:
    """Names set (non-empty) in the environment or `.env`, upper-cased as Settings reads them."""
    names = {name.upper() for name, value in os.environ.items() if value}
    if env_file.is_file():
        names |= {name.upper() for name, value in dotenv_values(env_file).items() if value}
    return names


# Given the variables the environment and `.env` set, the values to use for the others (by
# variable name); called once, when the settings are first read.
Fallback = Callable[[set[str]], Mapping[str, str]]
_fallback: Fallback | None = None


def use_fallback(fallback: Fallback | None) -> None:
    """Install (or, with None, remove) values that rank below the environment and `.env`."""
    global _fallback
    _fallback = fallback
    get_settings.cache_clear()


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    if _fallback is None:
        return load_settings()
    configured = configured_variables()
    values = _fallback(configured)
    # Unset and empty variables alike take the fallback, as `dev` treats them.
    return load_settings(
        **{name.lower(): value for name, value in values.items() if name.upper() not in configured}
    )
