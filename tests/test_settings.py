"""Settings: the contract's variables, and a clear stop on a malformed value."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from sensor_billing.cli import app
from sensor_billing.errors import ConfigurationError
from sensor_billing.settings import load_settings


def test_postgres_urls_of_both_spellings_get_the_asyncpg_driver(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://app@db.internal:5432/billing")
    assert load_settings().async_database_url == "postgresql+asyncpg://app@db.internal:5432/billing"
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db.internal/billing")
    assert load_settings().async_database_url == "postgresql+asyncpg://app@db.internal/billing"


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("DATABASE_URL", "foo", "expected postgresql://"),
        ("DATABASE_URL", "mysql://root@localhost/db", "got scheme 'mysql'"),
        ("DATABASE_URL", "postgresql://localhost", "names no database"),
        ("DATABASE_URL", "postgresql://app@db.internal:notaport/billing", "port"),
        ("DATABASE_URL", "postgresql://app@db.internal:99999/billing", "port"),
        ("REDIS_URL", "localhost:6379", "expected redis://"),
        ("REDIS_URL", "redis://127.0.0.1:notaport/0", "port"),
        ("REDIS_URL", "redis://127.0.0.1:6379/abc", "database number"),
        ("REDIS_URL", "redis://127.0.0.1:6379/1/2", "database number"),
        ("STRIPE_API_BASE", "api.stripe.com", "http(s) base URL"),
        ("API_URL", "127.0.0.1:8000", "http(s) base URL"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_a,not-a-secret", "must start with whsec_"),
        ("METER_WINDOW_SECONDS", "7000", "divides a day"),
        ("METER_WINDOW_SECONDS", "0", "divides a day"),
        ("METER_WINDOW_SECONDS", "hourly", "valid integer"),
    ],
)
def test_malformed_value_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert f"{variable}: " in str(caught.value)
    assert reason in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379",
        "redis://127.0.0.1:6379/",
        "redis://127.0.0.1/3",
        "rediss://:secret@cache.internal:6380/12",
        "unix:///run/redis.sock?db=2",
    ],
)
def test_redis_urls_with_or_without_a_database_number_are_accepted(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("REDIS_URL", url)
    assert load_settings().redis_url == url


def test_secret_values_never_appear_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_keepme,oops_leaked")
    with pytest.raises(ConfigurationError) as caught:
        load_settings()
    assert "keepme" not in str(caught.value)
    assert "leaked" not in str(caught.value)


def test_webhook_secrets_are_comma_separated_for_a_secret_roll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_old, whsec_new")
    assert load_settings().webhook_secrets == ["whsec_old", "whsec_new"]


def test_defaults_without_any_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABASE_URL", "REDIS_URL", "STRIPE_API_KEY", "METER_WINDOW_SECONDS", "API_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.meter_window_seconds == 3600
    assert settings.api_url == "http://127.0.0.1:8000"
    assert settings.stripe_api_base == "https://api.stripe.com"
    assert settings.stripe_meter_events_base == "https://meter-events.stripe.com"
    assert settings.stripe_api_key is None


def test_dotenv_file_is_read(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    folder = Path(str(tmp_path))
    (folder / ".env").write_text("METER_WINDOW_SECONDS=900\n")
    monkeypatch.delenv("METER_WINDOW_SECONDS", raising=False)
    monkeypatch.chdir(folder)
    assert load_settings().meter_window_seconds == 900


def test_cli_stops_on_a_malformed_setting_with_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "foo")
    result = CliRunner().invoke(app, ["db", "current"])
    assert result.exit_code == 2
    assert "DATABASE_URL" in result.output
    assert "Traceback" not in result.output


def test_cli_says_when_postgresql_does_not_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:1/nothing")
    result = CliRunner().invoke(app, ["db", "upgrade"])
    assert result.exit_code == 3
    assert "PostgreSQL at DATABASE_URL does not answer" in result.output


def test_an_ops_token_shorter_than_16_characters_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="OPS_TOKEN: must be at least 16 characters"):
        load_settings(ops_token="short")


def test_a_blank_ops_token_leaves_ops_off() -> None:
    assert load_settings(ops_token="  ").ops_token is None


def test_the_ops_session_key_is_derived_from_the_token_unless_set() -> None:
    derived = load_settings(ops_token="a" * 16).ops_session_key
    assert derived is not None
    assert derived != b"a" * 16
    assert load_settings(ops_token="b" * 16).ops_session_key != derived
    assert load_settings(ops_token="a" * 16, ops_session_secret="s" * 16).ops_session_key == (
        b"s" * 16
    )
    assert load_settings().ops_session_key is None
