"""Commands use a running dev's services for what the environment and `.env` leave unset,
and say so once on stderr; dev, serve and worker never do."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensor_billing.cli.dev_services import running_dev_fallback
from sensor_billing.devtools.dev_services import LOCK_FILE_NAME, services_now, write_services
from sensor_billing.devtools.embedded import DataDirLock
from sensor_billing.settings import (
    DEFAULT_DATABASE_URL,
    DEFAULT_REDIS_URL,
    get_settings,
    use_fallback,
)
from tests.cli.conftest import run_cli

DEV_SETTINGS = {
    "DATABASE_URL": "postgresql://postgres:@/sensor_billing?host=/tmp/sb-dev/.data/postgres",
    "REDIS_URL": "redis://127.0.0.1:50123/0",
    "STRIPE_WEBHOOK_SECRET": "whsec_from_dev",
    "API_URL": "http://127.0.0.1:8123",
    "METER_WINDOW_SECONDS": "60",
}


@pytest.fixture
def dev_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """`.data` in the working directory of a dev that runs (this process holds its lock)."""
    for name in (*DEV_SETTINGS, "STRIPE_API_KEY", "STRIPE_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / ".data"
    folder.mkdir()
    lock = DataDirLock(folder / LOCK_FILE_NAME)
    lock.acquire()
    write_services(folder, services_now(DEV_SETTINGS, []))
    yield folder
    lock.release()


def note_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("note:")]


@pytest.mark.usefixtures("dev_folder")
def test_devs_values_fill_what_is_unset_and_the_note_lists_them_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_fallback(running_dev_fallback(Path(".data")))

    settings = get_settings()
    get_settings()

    assert settings.database_url == DEV_SETTINGS["DATABASE_URL"]
    assert settings.redis_url == DEV_SETTINGS["REDIS_URL"]
    assert settings.webhook_secrets == ["whsec_from_dev"]
    assert settings.api_url == "http://127.0.0.1:8123"
    assert settings.meter_window_seconds == 60
    captured = capsys.readouterr()
    assert captured.out == ""
    assert note_lines(captured.err) == [
        f"note: using the services of sensor-billing dev in .data (pid {os.getpid()}) for "
        "API_URL, DATABASE_URL, METER_WINDOW_SECONDS, REDIS_URL, STRIPE_WEBHOOK_SECRET"
    ]


@pytest.mark.usefixtures("dev_folder")
def test_the_environment_wins_over_dev_and_the_note_says_which(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:6386/3")
    use_fallback(running_dev_fallback(Path(".data")))

    settings = get_settings()

    assert settings.redis_url == "redis://127.0.0.1:6386/3"
    assert settings.database_url == DEV_SETTINGS["DATABASE_URL"]
    [note] = note_lines(capsys.readouterr().err)
    assert note.endswith("; the environment or .env sets REDIS_URL")
    assert "for API_URL, DATABASE_URL, METER_WINDOW_SECONDS, STRIPE_WEBHOOK_SECRET;" in note


def test_dotenv_wins_over_dev(dev_folder: Path) -> None:
    (dev_folder.parent / ".env").write_text("DATABASE_URL=postgresql://app@db.internal/billing\n")
    use_fallback(running_dev_fallback(Path(".data")))

    settings = get_settings()

    assert settings.database_url == "postgresql://app@db.internal/billing"
    assert settings.redis_url == DEV_SETTINGS["REDIS_URL"]


def test_a_file_whose_dev_is_gone_leaves_the_defaults_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in DEV_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    (tmp_path / LOCK_FILE_NAME).write_text("4242\n")
    write_services(tmp_path, services_now(DEV_SETTINGS, []))
    use_fallback(running_dev_fallback(tmp_path))

    settings = get_settings()

    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.redis_url == DEFAULT_REDIS_URL
    [note] = note_lines(capsys.readouterr().err)
    assert note == (
        f"note: {tmp_path}: the sensor-billing dev that wrote dev-services.json "
        f"(pid {os.getpid()}) is not running; the settings come from the environment, .env "
        "and the defaults"
    )


def test_an_operator_command_reads_the_folder_given_with_data_dir(dev_folder: Path) -> None:
    run_cli("--data-dir", str(dev_folder), "status", "--help")

    assert get_settings().database_url == DEV_SETTINGS["DATABASE_URL"]


@pytest.mark.usefixtures("dev_folder")
@pytest.mark.parametrize("command", ["dev", "serve", "worker"])
def test_the_services_own_commands_never_use_devs_file(command: str) -> None:
    run_cli("status", "--help")  # a command that does; then one of the service's own
    run_cli(command, "--help")

    assert get_settings().database_url == DEFAULT_DATABASE_URL
