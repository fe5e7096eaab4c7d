"""`sensor-billing dev`: the whole service from nothing, stopped cleanly, one per data folder."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sensor_billing.webhooks.signature import sign
from tests.support.dev_process import (
    COMMAND,
    die_with_parent,
    open_folder,
    start_dev,
    stop,
    wait_until_ready,
)
from tests.support.net import free_port

WEBHOOK_SECRET = "whsec_dev_mode_test_secret"


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with open_folder("sb-dev-") as folder:
        yield folder / "data"


@pytest.fixture
def dev_env(tmp_path: Path) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"DATABASE_URL", "REDIS_URL", "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"}
    }
    # 10-second windows closed 1 s after they end: usage reaches the stand-in within ~20 s.
    return {
        **env,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "METER_WINDOW_SECONDS": "10",
        "METER_GRACE_SECONDS": "1",
        "METER_CLOSE_INTERVAL_SECONDS": "10",
    }


def processes_mentioning(*needles: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(needle in cmdline for needle in needles):
            found.append(f"{entry.name}: {cmdline}")
    return found


def test_dev_runs_the_whole_loop_from_nothing_and_stops_without_leftovers(
    data_dir: Path, dev_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    log = tmp_path / "dev.log"
    process = start_dev(port, data_dir, dev_env, log, "--demo")
    redis_port = ""
    try:
        wait_until_ready(process, api, log)
        output = log.read_text()
        standin = re.search(r"Stripe stand-in\s+(http://\S+)", output)
        redis = re.search(r"Redis\s+redis://127\.0\.0\.1:(\d+)/", output)
        assert standin, output
        assert redis, output
        redis_port = redis.group(1)

        body = json.dumps(
            {
                "id": "evt_dev_mode_1",
                "object": "event",
                "type": "customer.created",
                "created": int(time.time()),
                "data": {"object": {"id": "cus_dev", "object": "customer"}},
            }
        ).encode()
        answer = httpx.post(
            f"{api}/webhooks/stripe",
            content=body,
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": sign(WEBHOOK_SECRET, int(time.time()), body),
            },
        )
        assert answer.status_code == 200, answer.text

        # The banner's key and curl lines read what the product reads, for a demo
        # organization subscribed through checkout.
        key = re.search(r"service key\s+(sbk_\S+)", output)
        curls = re.findall(r"curl -H \"Authorization: Bearer (sbk_\S+)\" (http://\S+)", output)
        assert key, output
        assert [url.rsplit("/", 1)[1] for _, url in curls] == ["billing", "usage"], output
        assert {secret for secret, _ in curls} == {key.group(1)}
        billing, usage = (
            httpx.get(url, headers={"Authorization": f"Bearer {key.group(1)}"}, timeout=10)
            for _, url in curls
        )
        assert billing.status_code == 200, billing.text
        assert billing.json()["entitlement"]["entitled"] is True
        assert usage.status_code == 200, usage.text
        assert usage.json()["period"]["current"] is True

        deadline = time.monotonic() + 40
        events: list[object] = []
        while not events and time.monotonic() < deadline:
            time.sleep(0.5)
            events = httpx.get(f"{standin.group(1)}/_standin/state").json()["events"]
        assert events, f"no meter event reached the stand-in:\n{log.read_text()}"
    finally:
        code = stop(process)
    assert code == 0, log.read_text()
    leftovers = processes_mentioning(str(data_dir), f"127.0.0.1:{redis_port or 'none'}")
    assert not leftovers, leftovers


def test_a_second_dev_on_the_same_data_folder_is_refused(
    data_dir: Path, dev_env: dict[str, str], tmp_path: Path
) -> None:
    log = tmp_path / "dev.log"
    port = free_port()
    first = start_dev(port, data_dir, dev_env, log)
    try:
        wait_until_ready(first, f"http://127.0.0.1:{port}", log)
        second = subprocess.run(
            [COMMAND, "dev", "--port", str(free_port()), "--data-dir", str(data_dir)],
            env=dev_env,
            cwd=tmp_path,
            capture_output=True,
            timeout=30,
            preexec_fn=die_with_parent,
        )
    finally:
        assert stop(first) == 0, log.read_text()
    assert second.returncode != 0
    assert b"in use by another sensor-billing dev" in second.stderr


def test_a_busy_port_is_refused_with_exit_2_before_anything_starts(
    data_dir: Path, dev_env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [COMMAND, "dev", "--port", str(port), "--data-dir", str(data_dir)],
            env=dev_env,
            cwd=tmp_path,
            capture_output=True,
            timeout=30,
            preexec_fn=die_with_parent,
        )
    assert result.returncode == 2
    assert f"port {port}".encode() in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not data_dir.exists()  # nothing was started or created


def banner_ports(log: Path) -> tuple[int, int]:
    """The ports of the last banner in the log: (Redis, stand-in)."""
    output = log.read_text()
    redis = re.findall(r"Redis\s+redis://127\.0\.0\.1:(\d+)/", output)
    standin = re.findall(r"Stripe stand-in\s+http://127\.0\.0\.1:(\d+)", output)
    assert redis, output
    assert standin, output
    return int(redis[-1]), int(standin[-1])


def test_a_restarted_dev_takes_its_ports_again_and_replaces_a_taken_one(
    data_dir: Path, dev_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = start_dev(port, data_dir, dev_env, first_log)
    try:
        wait_until_ready(first, api, first_log)
        redis_port, standin_port = banner_ports(first_log)
        assert (data_dir / "dev-services.json").stat().st_mode & 0o777 == 0o600
    finally:
        assert stop(first) == 0, first_log.read_text()
    assert not (data_dir / "dev-services.json").exists()
    assert first_log.read_text().count("Shutting down") == 1, first_log.read_text()

    with socket.socket() as squatter:  # someone else took the stand-in's port meanwhile
        squatter.bind(("127.0.0.1", standin_port))
        squatter.listen()
        second = start_dev(port, data_dir, dev_env, second_log)
        try:
            wait_until_ready(second, api, second_log)
            again_redis, again_standin = banner_ports(second_log)
        finally:
            assert stop(second) == 0, second_log.read_text()

    assert again_redis == redis_port
    assert again_standin != standin_port
    assert f"port {standin_port} of the last run is taken" in second_log.read_text()


def test_a_demo_restarted_on_its_data_folder_keeps_its_subscriptions_and_a_new_key(
    data_dir: Path, dev_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    api = f"http://127.0.0.1:{port}"
    keys = []
    for run in ("first", "second"):
        log = tmp_path / f"{run}.log"
        process = start_dev(port, data_dir, dev_env, log, "--demo")
        try:
            wait_until_ready(process, api, log)
            output = log.read_text()
            key = re.search(r"service key\s+(sbk_\S+)", output)
            subscribed = re.search(r"subscribed\s+(\d+) demo organization", output)
            assert key, output
            assert subscribed, output
            keys.append(key.group(1))
            billing_url = re.search(r"curl -H \"[^\"]+\" (http://\S+/billing)", output)
            assert billing_url, output
            billing = httpx.get(
                billing_url.group(1), headers={"Authorization": f"Bearer {key.group(1)}"}
            )
            assert billing.json()["entitlement"]["entitled"] is True
        finally:
            assert stop(process) == 0, log.read_text()
        # The second start finds the subscriptions the first one made.
        assert subscribed.group(1) == ("3" if run == "first" else "0")
    assert keys[0] != keys[1]
