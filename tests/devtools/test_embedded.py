"""The data folder's lock: one dev per folder, and a probe that tells whether dev runs."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from pathlib import Path

import pytest

from sensor_billing.devtools.embedded import DataDirLock
from sensor_billing.errors import DataDirInUseError


def test_the_lock_names_the_dev_holding_it_and_no_one_once_released(tmp_path: Path) -> None:
    path = tmp_path / "dev.lock"
    lock = DataDirLock(path)
    assert DataDirLock.holder(path) is None

    lock.acquire()
    held_by = DataDirLock.holder(path)
    lock.release()

    assert held_by == os.getpid()
    assert DataDirLock.holder(path) is None


def test_a_dev_starting_while_the_cli_probes_the_lock_still_takes_it(tmp_path: Path) -> None:
    path = tmp_path / "dev.lock"
    path.write_text("")
    probing = threading.Event()

    def probe() -> None:  # a CLI's probe, held far longer than a real one
        with path.open() as handle:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
            probing.set()
            time.sleep(0.2)

    prober = threading.Thread(target=probe)
    prober.start()
    probing.wait(5)
    lock = DataDirLock(path)
    try:
        lock.acquire()
        assert DataDirLock.holder(path) == os.getpid()
    finally:
        lock.release()
        prober.join()


def test_a_second_dev_on_a_held_folder_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "dev.lock"
    first = DataDirLock(path)
    first.acquire()
    try:
        with pytest.raises(DataDirInUseError, match=f"pid {os.getpid()}"):
            DataDirLock(path).acquire()
    finally:
        first.release()
