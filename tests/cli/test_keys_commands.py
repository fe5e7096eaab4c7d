"""`sensor-billing keys create/list/revoke`: the secret once, then only its last four."""

from __future__ import annotations

import json
import uuid

import pytest

from sensor_billing.db import SessionFactory
from tests.cli.conftest import UNREACHABLE_DATABASE_URL, run_cli


def create_key(name: str) -> dict[str, str]:
    outcome = run_cli("keys", "create", "--name", name, "--json")
    assert outcome.exit_code == 0, outcome.stderr
    created: dict[str, str] = json.loads(outcome.stdout)
    return created


def test_keys_create_prints_the_secret_once_and_list_shows_only_its_last_four(
    cli_env: SessionFactory,
) -> None:
    created = run_cli("keys", "create", "--name", "saas-backend")
    listed = run_cli("keys", "list")

    assert created.exit_code == 0, created.stderr
    secret = next(line for line in created.stdout.splitlines() if line.startswith("sbk_"))
    assert "not shown again" in created.stdout
    assert listed.exit_code == 0, listed.stderr
    assert "saas-backend" in listed.stdout
    assert f"sbk_...{secret[-4:]}" in listed.stdout
    assert secret not in listed.stdout


def test_keys_list_as_json_names_every_key_and_no_secret(cli_env: SessionFactory) -> None:
    first = create_key("backend-2026-11")
    second = create_key("backend-2026-12")

    outcome = run_cli("keys", "list", "--json")

    assert outcome.exit_code == 0, outcome.stderr
    listed = json.loads(outcome.stdout)
    assert [(k["id"], k["name"], k["revoked_at"]) for k in listed] == [
        (first["id"], "backend-2026-11", None),
        (second["id"], "backend-2026-12", None),
    ]
    assert first["secret"] not in outcome.stdout
    assert second["secret"] not in outcome.stdout


def test_keys_revoke_leaves_the_other_keys_active(cli_env: SessionFactory) -> None:
    old = create_key("backend-2026-11")
    new = create_key("backend-2026-12")

    revoked = run_cli("keys", "revoke", old["id"])
    again = run_cli("keys", "revoke", old["id"])
    active = json.loads(run_cli("keys", "list", "--active", "--json").stdout)

    assert revoked.exit_code == 0, revoked.stderr
    assert f"revoked {old['id']} (backend-2026-11)" in revoked.stdout
    assert again.exit_code == 0
    assert "already revoked" in again.stdout
    assert [k["id"] for k in active] == [new["id"]]


def test_keys_revoke_refuses_an_id_that_is_not_a_key(cli_env: SessionFactory) -> None:
    malformed = run_cli("keys", "revoke", "backend-2026-11")
    unknown_id = str(uuid.uuid4())
    unknown = run_cli("keys", "revoke", unknown_id)

    assert malformed.exit_code == 2
    assert "is not a key id" in malformed.stderr
    assert unknown.exit_code == 2
    assert f"no service key with id {unknown_id}" in unknown.stderr


def test_keys_create_refuses_a_blank_name(cli_env: SessionFactory) -> None:
    outcome = run_cli("keys", "create", "--name", "   ")

    assert outcome.exit_code == 2
    assert "--name must be 1 to 100 characters" in outcome.stderr
    assert json.loads(run_cli("keys", "list", "--json").stdout) == []


def test_keys_list_without_a_database_exits_3(
    cli_env: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", UNREACHABLE_DATABASE_URL)

    outcome = run_cli("keys", "list")

    assert outcome.exit_code == 3
    assert "PostgreSQL" in outcome.stderr
