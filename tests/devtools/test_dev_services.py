"""dev's services file: private, whole, and trusted only while the dev that wrote it runs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sensor_billing.devtools.dev_services import (
    LOCK_FILE_NAME,
    SERVICES_FILE_NAME,
    find_running_dev,
    remove_services,
    services_now,
    write_services,
)
from sensor_billing.devtools.embedded import DataDirLock

SETTINGS = {
    "DATABASE_URL": "postgresql://postgres@/sensor_billing?host=/tmp/x",
    "STRIPE_WEBHOOK_SECRET": "whsec_from_dev",
}


@pytest.fixture
def running_dev(tmp_path: Path) -> Iterator[Path]:
    """The folder of a dev that runs: this process holds its lock, as dev does."""
    lock = DataDirLock(tmp_path / LOCK_FILE_NAME)
    lock.acquire()
    yield tmp_path
    lock.release()


def test_the_file_is_readable_by_its_owner_only_and_leaves_no_partial_copy(
    running_dev: Path,
) -> None:
    write_services(running_dev, services_now(SETTINGS, ["banner line"]))
    write_services(running_dev, services_now(SETTINGS, ["banner line"]))  # replaced at once

    path = running_dev / SERVICES_FILE_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    assert {p.name for p in running_dev.iterdir()} == {LOCK_FILE_NAME, SERVICES_FILE_NAME}
    assert json.loads(path.read_text())["settings"] == SETTINGS


def test_a_running_devs_file_is_used(running_dev: Path) -> None:
    write_services(running_dev, services_now(SETTINGS, ["banner line"]))

    lookup = find_running_dev(running_dev)

    assert lookup.unused_because is None
    assert lookup.services is not None
    assert lookup.services.pid == os.getpid()
    assert lookup.services.settings == SETTINGS
    assert lookup.services.banner == ["banner line"]


def test_a_file_whose_dev_is_gone_is_not_trusted(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE_NAME).write_text("4242\n")  # a dev killed with SIGKILL: lock free
    write_services(tmp_path, services_now(SETTINGS, []))

    lookup = find_running_dev(tmp_path)

    assert lookup.services is None
    assert lookup.unused_because == (
        f"the sensor-billing dev that wrote {SERVICES_FILE_NAME} (pid {os.getpid()}) is not running"
    )


def test_a_file_left_before_the_dev_now_starting_is_not_trusted(running_dev: Path) -> None:
    stale = services_now(SETTINGS, [])
    write_services(running_dev, type(stale)(pid=4242, started_at=stale.started_at, settings={}))

    lookup = find_running_dev(running_dev)

    assert lookup.services is None
    assert lookup.unused_because == (
        f"the sensor-billing dev there (pid {os.getpid()}) is not ready yet"
    )


def test_a_folder_no_dev_ever_ran_in_says_nothing(tmp_path: Path) -> None:
    lookup = find_running_dev(tmp_path)

    assert lookup.services is None
    assert lookup.unused_because is None


def test_after_dev_stops_the_folder_says_so(tmp_path: Path) -> None:
    lock = DataDirLock(tmp_path / LOCK_FILE_NAME)
    lock.acquire()
    write_services(tmp_path, services_now(SETTINGS, []))
    remove_services(tmp_path)
    lock.release()

    assert find_running_dev(tmp_path).unused_because == "no sensor-billing dev is running there"


@pytest.mark.parametrize(
    "content", ["{", "[]", '{"pid": "12", "startedAt": "x", "settings": {}}', '{"pid": 1}']
)
def test_a_damaged_file_is_not_used(running_dev: Path, content: str) -> None:
    (running_dev / SERVICES_FILE_NAME).write_text(content)

    lookup = find_running_dev(running_dev)

    assert lookup.services is None
    assert lookup.unused_because == f"{SERVICES_FILE_NAME} is not a file sensor-billing dev wrote"
