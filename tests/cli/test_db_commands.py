"""`sensor-billing db ...` against a real, empty database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from sensor_billing.cli import app
from sensor_billing.db import migrate
from tests.conftest import ADMIN_DATABASE_URL
from tests.support.databases import create_database, drop_database, fetch, run_in_thread


@pytest.fixture
def empty_database_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = create_database(ADMIN_DATABASE_URL, "sb_cli")
    monkeypatch.setenv("DATABASE_URL", url)
    yield url
    drop_database(ADMIN_DATABASE_URL, url)


def invoke(*args: str) -> tuple[int, str]:
    result = run_in_thread(CliRunner().invoke, app, list(args))
    return result.exit_code, result.output


def test_db_upgrade_current_and_downgrade(empty_database_url: str) -> None:
    code, output = invoke("db", "current")
    assert code == 0
    assert "base (empty)" in output

    code, output = invoke("db", "upgrade")
    head = migrate.heads(empty_database_url)[0]
    assert code == 0
    assert head in output
    assert fetch(empty_database_url, "SELECT count(*) FROM stripe_events") == [(0,)]

    code, output = invoke("db", "current")
    assert code == 0
    assert f"{head}: up to date" in output

    code, output = invoke("db", "downgrade", "base")
    assert code == 0
    assert "base (empty)" in output
    assert fetch(
        empty_database_url,
        "SELECT count(*) FROM pg_tables"
        " WHERE schemaname = 'public' AND tablename <> 'alembic_version'",
    ) == [(0,)]


@pytest.mark.parametrize("command", ["upgrade", "downgrade"])
def test_an_unknown_revision_is_refused_in_one_line_and_nothing_is_migrated(
    empty_database_url: str, command: str
) -> None:
    code, output = invoke("db", command, "nosuchrev")
    assert code == 2
    assert "nosuchrev" in output
    assert "Traceback" not in output
    assert migrate.current_revision(empty_database_url) is None
